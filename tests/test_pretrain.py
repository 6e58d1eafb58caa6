"""Denoising pretraining: noise statistics, the block-mean self-supervised target, a tiny run
that lowers the denoising loss, strict loading by `lenssr train --init`, and the NaN guard."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml

from lenssr.cli import main
from lenssr.errors import ConfigError, LenssrError
from lenssr.models import load_checkpoint
from lenssr.training import load_task_config, noise
from lenssr.training.engine import Engine
from lenssr.training.losses import make_pixel_loss
from lenssr.training.tasks.denoise import (
    DenoiseTask,
    self_supervised_loss,
    validate_pretrain_config,
)


def pretrainer(config: dict, **kwargs) -> Engine:
    """The engine running the denoising task on ``config``."""
    return Engine("denoise", config, **kwargs)


@pytest.fixture(scope="session")
def pretrain_config(model_section, train_config) -> Callable[..., dict]:
    """Factory `pretrain_config(data, out, steps=40, **sections)`: a denoising-pretraining config
    of the tiny hybrid on `data`; a keyword section is merged into the section of that name."""

    def build(data: Path, out: Path, steps: int = 40, **sections) -> dict:
        cfg = train_config(data, out, steps, model=model_section("hybrid"), val={"max_images": 6})
        cfg["checkpoint"] = {"dir": str(out)}
        for key, value in sections.items():
            cfg[key] = {**cfg.get(key, {}), **value} if isinstance(value, dict) else value
        return cfg

    return build


# ------------------------------------------------------------------------------ noise


def _flat(value: float = 0.5, n: int = 200_000) -> torch.Tensor:
    return torch.full((4, 1, n // 400, 100), value)


def test_gaussian_noise_has_the_stated_mean_and_std():
    g = torch.Generator().manual_seed(0)
    x = _flat()
    r = noise.gaussian(x, 0.07, g) - x
    assert abs(float(r.mean())) < 1e-3
    assert float(r.std()) == pytest.approx(0.07, rel=0.01)


def test_uniform_noise_is_bounded_with_std_a_over_sqrt3():
    g = torch.Generator().manual_seed(1)
    x = _flat()
    r = noise.uniform(x, 0.12, g) - x
    assert float(r.abs().max()) <= 0.12 + 1e-6
    assert float(r.abs().max()) > 0.119  # it really spans the interval
    assert float(r.std()) == pytest.approx(0.12 / math.sqrt(3), rel=0.01)
    assert abs(float(r.mean())) < 1e-3


def test_salt_and_pepper_hits_the_stated_fraction_with_zeros_and_ones():
    g = torch.Generator().manual_seed(2)
    x = _flat(0.3)
    y = noise.salt_pepper(x, 0.1, g)
    changed = y != x
    assert float(changed.float().mean()) == pytest.approx(0.1, rel=0.03)
    assert set(torch.unique(y[changed]).tolist()) == {0.0, 1.0}
    assert float((y == 0).float().mean()) == pytest.approx(0.05, rel=0.05)
    assert float((y == 1).float().mean()) == pytest.approx(0.05, rel=0.05)


def test_poisson_noise_keeps_the_mean_with_variance_x_over_peak():
    g = torch.Generator().manual_seed(3)
    x = _flat(0.5)
    y = noise.poisson(x, 100.0, g)
    assert float(y.mean()) == pytest.approx(0.5, rel=0.005)
    assert float(y.var()) == pytest.approx(0.5 / 100.0, rel=0.03)
    assert torch.allclose(y * 100, torch.round(y * 100), atol=1e-4)  # integer counts / peak
    brighter = noise.poisson(_flat(0.9), 100.0, g)
    assert float(brighter.var()) == pytest.approx(0.9 / 100.0, rel=0.03)  # signal-dependent


def test_sampler_draws_one_type_and_intensity_per_batch_within_ranges():
    sampler = noise.NoiseSampler(
        intensities={"gaussian": [0.02, 0.05], "poisson": 50}, probabilities=[1, 1, 1, 1]
    )
    g = torch.Generator().manual_seed(4)
    seen: dict[str, list[float]] = {}
    for _ in range(200):
        name, value = sampler.sample(g)
        seen.setdefault(name, []).append(value)
    assert set(seen) == {"gaussian", "uniform", "salt_pepper", "poisson"}
    assert all(0.02 <= v <= 0.05 for v in seen["gaussian"])
    assert set(seen["poisson"]) == {50.0}
    lo, hi = noise.DEFAULT_INTENSITY["uniform"]
    assert all(lo <= v <= hi for v in seen["uniform"])
    # one draw for the whole batch: a gaussian-only sampler with a fixed sigma gives that std
    only = noise.NoiseSampler(types=["gaussian"], intensities={"gaussian": 0.2})
    x = _flat()
    y, name, sigma = only(x, g)
    assert (name, sigma) == ("gaussian", 0.2)
    assert float((y - x).std()) == pytest.approx(0.2, rel=0.01)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"types": ["speckle"]}, "unknown noise type"),
        ({"intensities": {"gaussian": [0.2, 0.1]}}, "low <= high"),
        ({"intensities": {"poisson": 0}}, "must be > 0"),
        ({"types": ["gaussian"], "probabilities": [1, 2]}, "probabilities"),
    ],
)
def test_sampler_rejects_bad_settings(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        noise.NoiseSampler(**kwargs)


# ------------------------------------------------------------------ target and config


def test_block_mean_target_is_zero_for_any_upsampling_that_conserves_block_means():
    clean = torch.rand(2, 1, 9, 7, generator=torch.Generator().manual_seed(0))
    up = F.interpolate(clean, scale_factor=2, mode="nearest")
    wiggle = torch.tensor([[1.0, -1.0], [-1.0, 1.0]]).repeat(9, 7)  # zero mean per 2x2 block
    loss_fn = make_pixel_loss({"type": "mse_ssim", "ssim_weight": 0.1})
    assert float(self_supervised_loss([up + 0.1 * wiggle], clean, loss_fn)) < 1e-6
    x4 = F.interpolate(clean, scale_factor=4, mode="nearest")
    assert float(self_supervised_loss([up, x4], clean, loss_fn)) < 1e-6
    assert float(self_supervised_loss([up + 0.1], clean, loss_fn)) > 1e-3


def test_config_rejects_unknown_pretrain_keys_and_fills_defaults(
    blob_pairs: Path, tmp_path: Path, pretrain_config
):
    cfg = validate_pretrain_config(pretrain_config(blob_pairs, tmp_path))
    assert cfg["loss"]["type"] == "mse_ssim" and cfg["pretrain"]["target"] == "lr"
    with pytest.raises(ConfigError, match="pretrain.nosie"):
        validate_pretrain_config(
            {**pretrain_config(blob_pairs, tmp_path), "pretrain": {"nosie": 1}}
        )
    bad = pretrain_config(blob_pairs, tmp_path, pretrain={"target": "both"})
    with pytest.raises(ConfigError, match="target"):
        validate_pretrain_config(bad)
    with pytest.raises(ConfigError, match="unknown noise type"):
        validate_pretrain_config(
            pretrain_config(blob_pairs, tmp_path, pretrain={"noise": {"types": ["blur"]}})
        )


def test_repo_config_is_valid_and_matches_the_supervised_hybrid():
    root = Path(__file__).resolve().parents[1]
    cfg = load_task_config("denoise", root / "configs" / "pretrain-hybrid.yaml")
    assert cfg["pretrain"]["target"] == "lr"
    assert set(cfg["pretrain"]["noise"]["types"]) == set(noise.NOISE_FUNCTIONS)
    supervised = yaml.safe_load((root / "configs" / "hybrid-tuned.yaml").read_text())["model"]
    assert cfg["model"] == supervised  # so `lenssr train --init` passes the strict check


# ------------------------------------------------------------------------ tiny runs


@pytest.fixture(scope="module")
def pretrained(
    blob_pairs: Path, tmp_path_factory: pytest.TempPathFactory, pretrain_config
) -> Engine:
    out = tmp_path_factory.mktemp("pretrain-run")
    runner = pretrainer(pretrain_config(blob_pairs, out, steps=80), quiet=True)
    runner.result = runner.run()
    return runner


def test_tiny_pretraining_lowers_the_denoising_loss(pretrained: Engine):
    hist = pretrained.history
    assert [h["step"] for h in hist] == list(range(10, 81, 10))
    assert hist[-1]["val_loss"] < hist[0]["val_loss"]
    # the denoiser beats returning the noisy input (same noise draws)
    assert hist[-1]["val_loss"] < hist[-1]["val_noisy_loss"]
    assert all(math.isfinite(v) for v in pretrained.losses)


def test_pretrained_checkpoint_is_a_normal_hybrid_checkpoint(pretrained: Engine):
    path = pretrained.result
    assert path.name == "pretrained.safetensors" and path.with_suffix(".json").is_file()
    model, desc = load_checkpoint(path)
    assert desc["arch"] == "hybrid" and desc["training"]["kind"] == "pretrain"
    best = min(h["val_loss"] for h in pretrained.history)
    assert desc["metrics"]["val_loss"] == pytest.approx(best)
    assert model(torch.rand(1, 1, 11, 9)).shape == (1, 1, 22, 18)


def test_lenssr_train_init_loads_the_pretrained_weights_strictly(
    pretrained: Engine, blob_pairs: Path, tmp_path: Path, pretrain_config
):
    cfg = pretrain_config(blob_pairs, tmp_path / "ft", steps=1)
    cfg_path = tmp_path / "ft.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    trainer = Engine("supervised", cfg, init=pretrained.result, quiet=True)
    trainer.run()
    assert trainer.task.init_report == {"loaded": len(trainer.model.state_dict()), "missing": 0,
                                   "unexpected": 0, "shape_mismatch": 0}  # fmt: skip
    # the CLI path, and a clear message when the architecture does not match
    args = ["train", "--config", str(cfg_path), "--init", str(pretrained.result), "-q"]
    with pytest.raises(SystemExit) as exc:
        main([*args, "--out", str(tmp_path / "cli")])
    assert exc.value.code == 0
    assert (tmp_path / "cli" / "best.safetensors").is_file()
    wider = {**cfg, "model": {**cfg["model"], "num_feat": 12}}
    with pytest.raises(ConfigError, match="does not match model 'hybrid'"):
        Engine("supervised", wider, init=pretrained.result, out=tmp_path / "x", quiet=True).run()


def test_hr_target_pretraining_runs_on_pairs(blob_pairs: Path, tmp_path: Path, pretrain_config):
    cfg = pretrain_config(blob_pairs, tmp_path, steps=4, pretrain={"target": "hr"})
    runner = pretrainer(cfg, quiet=True)
    runner.run()
    assert runner.task.levels == 1 and len(runner.history) == 1
    _, desc = load_checkpoint(tmp_path / "pretrained.safetensors")
    assert desc["training"]["data"]["target"] == "hr"


def test_nan_loss_stops_with_one_line_and_keeps_the_last_good_checkpoint(
    blob_pairs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pretrain_config
):
    runner = pretrainer(pretrain_config(blob_pairs, tmp_path, steps=20), quiet=True)
    runner.cfg["val"]["every_steps"] = 3
    original = DenoiseTask.loss
    saved: dict[str, str] = {}

    def poisoned(self, model, batch, generator):
        loss = original(self, model, batch, generator)
        if model is self.model and self.engine.step == 7:
            saved["hash"] = hashlib.sha256((tmp_path / "last.safetensors").read_bytes()).hexdigest()
            return loss * float("nan")
        return loss

    monkeypatch.setattr(DenoiseTask, "loss", poisoned)
    with pytest.raises(LenssrError) as info:
        runner.run()
    message = str(info.value)
    assert "\n" not in message
    assert "nan at step 7" in message and "last good checkpoint kept" in message
    assert str(tmp_path / "last.safetensors") in message
    last = tmp_path / "last.safetensors"
    assert hashlib.sha256(last.read_bytes()).hexdigest() == saved["hash"]
    model, desc = load_checkpoint(last)
    assert desc["training"]["step"] == 6
    assert all(torch.isfinite(t).all() for t in model.state_dict().values())


def test_cli_pretrain_runs_from_yaml(blob_pairs: Path, tmp_path: Path, capsys, pretrain_config):
    cfg = pretrain_config(blob_pairs, tmp_path / "run", steps=3)
    path = tmp_path / "pre.yaml"
    path.write_text(yaml.safe_dump(cfg))
    with pytest.raises(SystemExit) as exc:
        main(["pretrain", "-c", str(path), "--set", "pretrain.noise.types=[poisson]", "-q"])
    assert exc.value.code == 0
    printed = capsys.readouterr().out.strip()
    assert printed.endswith("pretrained.safetensors") and Path(printed).is_file()
    saved = json.loads((tmp_path / "run" / "pretrained.json").read_text())
    assert saved["training"]["config"]["pretrain"]["noise"]["types"] == ["poisson"]


# ------------------------------------------------------------------ resume, hook, clipping


def _files_equal(a: Path, b: Path, stems: tuple[str, ...]) -> None:
    from safetensors.torch import load_file

    for stem in stems:
        wa, wb = load_file(a / f"{stem}.safetensors"), load_file(b / f"{stem}.safetensors")
        assert wa.keys() == wb.keys()
        for k in wa:
            assert torch.equal(wa[k], wb[k]), (stem, k)


def test_resume_continues_pretraining_exactly(blob_pairs: Path, tmp_path: Path, pretrain_config):
    sections = {"schedule": {"total_steps": 12}, "val": {"every_steps": 3}}
    full = pretrain_config(blob_pairs, tmp_path / "full", steps=12, **sections)
    pretrainer(full, quiet=True).run()
    part = pretrain_config(blob_pairs, tmp_path / "part", steps=6, **sections)
    pretrainer(part, quiet=True).run()
    with pytest.raises(ConfigError, match="--resume"):
        pretrainer({**part, "budget": {"steps": 12}}, quiet=True).run()
    resumed = pretrainer({**part, "budget": {"steps": 12}}, quiet=True, resume=True)
    resumed.run()
    assert len(resumed.losses) == 6 and resumed.step == 12  # only the missing steps ran
    _files_equal(tmp_path / "full", tmp_path / "part", ("last", "pretrained"))
    assert [h["step"] for h in resumed.history] == [3, 6, 9, 12]
    with pytest.raises(ConfigError, match="nothing to resume"):
        pretrainer(pretrain_config(blob_pairs, tmp_path / "none"), quiet=True, resume=True).run()


def test_on_validation_sees_every_validation_and_can_end_the_run(
    blob_pairs: Path, tmp_path: Path, pretrain_config
):
    seen: list[tuple[int, float]] = []

    def hook(step: int, metrics: dict[str, float]) -> None:
        seen.append((step, metrics["val_loss"]))
        if step == 6:
            raise KeyboardInterrupt("stop here")

    cfg = pretrain_config(blob_pairs, tmp_path, steps=20, val={"every_steps": 3})
    runner = pretrainer(cfg, quiet=True, on_validation=hook)
    with pytest.raises(KeyboardInterrupt, match="stop here"):
        runner.run()
    assert [s for s, _ in seen] == [3, 6] and runner.step == 6
    assert all(math.isfinite(v) for _, v in seen)
    assert (tmp_path / "last.state.pt").is_file()  # the ended run can be resumed


@pytest.mark.parametrize("clip", [None, 1e-3])
def test_grad_clip_bounds_the_gradient_norm_of_every_step(
    blob_pairs: Path, tmp_path: Path, pretrain_config, grad_norms: list[float], clip
):
    norms = grad_norms
    cfg = pretrain_config(blob_pairs, tmp_path, steps=4, optim={"grad_clip": clip})
    pretrainer(cfg, quiet=True).run()
    assert len(norms) == 4
    if clip is None:
        assert min(norms) > 1e-2  # the unclipped norms the clip below must act on
    else:
        assert max(norms) <= clip * (1 + 1e-4)


def test_cli_pretrain_resume(blob_pairs: Path, tmp_path: Path, capsys, pretrain_config):
    cfg = pretrain_config(blob_pairs, tmp_path / "run", steps=2, val={"every_steps": 2})
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(cfg))
    with pytest.raises(SystemExit) as exc:
        main(["pretrain", "-c", str(path), "-q"])
    assert exc.value.code == 0
    with pytest.raises(SystemExit) as exc:
        main(["pretrain", "-c", str(path), "-q", "--resume", "--set", "budget.steps=4"])
    assert exc.value.code == 0
    _, desc = load_checkpoint(tmp_path / "run" / "last.safetensors")
    assert desc["training"]["step"] == 4
