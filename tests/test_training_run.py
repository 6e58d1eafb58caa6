"""End-to-end training runs on a tiny synthetic HDF5 set: loss goes down, checkpoints load,
resume is exact, --init feeds the model, and the CLI trains from a YAML file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file

from lenssr.cli import main
from lenssr.errors import ConfigError
from lenssr.models import create_model, load_checkpoint, save_checkpoint
from lenssr.training import train
from lenssr.training.engine import Engine


def test_tiny_hybrid_pyramid_run_lowers_loss_and_writes_checkpoints(
    blob_pairs: Path, tmp_path: Path, train_config, tiny_hybrid
):
    out = tmp_path / "run"
    cfg = train_config(
        blob_pairs, out, steps=20, model=tiny_hybrid, loss={"type": "mse_ssim", "pyramid": True}
    )
    trainer = Engine("supervised", cfg, quiet=True)
    best = trainer.run()
    assert best == out / "best.safetensors" and best.exists()
    losses = trainer.losses
    assert len(losses) == 20
    assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:5]), losses
    best_step = max(trainer.history, key=lambda h: h["val_psnr"])["step"]
    for stem, step in (("best", best_step), ("last", 20), ("step-0000020", 20)):
        model, desc = load_checkpoint(out / stem)
        assert desc["arch"] == "hybrid" and model.scale == 2
        assert desc["training"]["step"] == step
        assert desc["training"]["config"]["loss"]["pyramid"] is True
        assert desc["training"]["data"]["train"] == str(blob_pairs)
        assert desc["normalization"] == {"kind": "minmax"}
    assert not (out / "step-0000010.safetensors").exists()  # keep_last: 1
    desc = json.loads((out / "best.json").read_text())
    assert desc["training"]["weights"] == "ema"
    assert desc["metrics"]["val_images"] == 4
    assert desc["training"]["best_val_psnr"] == pytest.approx(
        max(h["val_psnr"] for h in trainer.history)
    )
    assert [h["step"] for h in trainer.history] == [10, 20]
    # best holds the EMA weights, which differ from the raw training weights in last
    ema, raw = load_file(out / "best.safetensors"), load_file(out / "last.safetensors")
    if trainer.history[-1]["val_psnr"] >= trainer.history[0]["val_psnr"]:
        assert any(not torch.equal(ema[k], raw[k]) for k in raw)
    state = torch.load(out / "last.state.pt", weights_only=False)
    assert state["step"] == 20 and state["optimizers"]["model"]["state"]
    assert yaml.safe_load((out / "config.yaml").read_text())["model"]["name"] == "hybrid"
    # the loaded best model reproduces the validation PSNR the trainer reported
    model, _ = load_checkpoint(best)
    trainer_best_psnr = trainer.best
    trainer.ema.module.load_state_dict(model.state_dict())
    assert trainer.validate()["val_psnr"] == pytest.approx(trainer_best_psnr, abs=1e-4)
    with pytest.raises(ConfigError, match="already holds a training run"):
        train(cfg, quiet=True)


def test_resume_continues_exactly(blob_pairs: Path, tmp_path: Path, train_config) -> None:
    sched = {"warmup_steps": 2, "total_steps": 12}
    val = {"every_steps": 6, "max_images": 4}
    full = train_config(blob_pairs, tmp_path / "full", steps=12, schedule=sched, val=val)
    train(full, quiet=True)
    part = train_config(blob_pairs, tmp_path / "part", steps=6, schedule=sched, val=val)
    train(part, quiet=True)
    assert json.loads((tmp_path / "part/last.json").read_text())["training"]["step"] == 6
    resumed = Engine("supervised", {**part, "budget": {"steps": 12}}, resume=True, quiet=True)
    resumed.run()
    assert len(resumed.losses) == 6  # only the missing steps were run
    for stem in ("last", "best"):
        a = load_file(tmp_path / f"full/{stem}.safetensors")
        b = load_file(tmp_path / f"part/{stem}.safetensors")
        assert a.keys() == b.keys()
        for k in a:
            assert torch.equal(a[k], b[k]), (stem, k)
    sa = torch.load(tmp_path / "full/last.state.pt", weights_only=False)
    sb = torch.load(tmp_path / "part/last.state.pt", weights_only=False)
    assert sa["history"] == sb["history"] and sa["step"] == sb["step"] == 12
    with pytest.raises(ConfigError, match="--resume"):
        train(train_config(blob_pairs, tmp_path / "nothing"), resume=True, quiet=True)


def test_init_loads_pretrained_weights_and_reports_mismatch(
    blob_pairs: Path, tmp_path: Path, train_config, tiny_hybrid
):
    torch.manual_seed(3)
    kwargs = {k: v for k, v in tiny_hybrid.items() if k != "name"}
    pre = save_checkpoint(tmp_path / "pre", create_model("hybrid", **kwargs))
    cfg = train_config(
        blob_pairs, tmp_path / "run", steps=1, model=tiny_hybrid, ema={"decay": None}
    )
    trainer = Engine("supervised", cfg, init=pre, quiet=True)
    trainer.run()
    assert trainer.task.init_report == {
        "loaded": len(load_file(pre)),
        "missing": 0,
        "unexpected": 0,
        "shape_mismatch": 0,
    }
    # one small step from the pretrained weights: still close to them, far from a fresh init
    pre_w, got = load_file(pre), load_file(tmp_path / "run/last.safetensors")
    key = "conv_first.weight" if "conv_first.weight" in got else next(iter(got))
    assert (got[key] - pre_w[key]).abs().max() < 0.05
    other = {**tiny_hybrid, "embed_dim": 32}
    bad = train_config(blob_pairs, tmp_path / "bad", steps=1, model=other)
    with pytest.raises(ConfigError, match="shape mismatches.*init_strict: false"):
        train(bad, init=pre, quiet=True)
    loose = train_config(blob_pairs, tmp_path / "loose", steps=1, model=other, init_strict=False)
    trainer = Engine("supervised", loose, init=pre, quiet=True)
    trainer.run()
    assert trainer.task.init_report["shape_mismatch"] > 0 and trainer.task.init_report["loaded"] > 0


def test_cli_trains_from_yaml_with_overrides(
    blob_pairs: Path, tmp_path: Path, capsys, train_config
) -> None:
    cfg = train_config(blob_pairs, tmp_path / "ignored", steps=50)
    cfg["log"]["tensorboard"] = True
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "cli"
    args = ["train", "--config", str(path), "--set", "budget.steps=3", "--out", str(out)]
    args += ["--set", "model={name: srcnn, num_feat: 8, num_feat2: 4}", "--device", "cpu", "-q"]
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code == 0
    printed = capsys.readouterr().out.strip()
    assert printed == str(out / "best.safetensors")
    model, desc = load_checkpoint(printed)
    assert desc["arch"] == "srcnn" and desc["training"]["step"] == 3
    assert list((out / "tb").glob("events.out.tfevents.*"))
    assert not (tmp_path / "ignored").exists()


def test_minutes_budget_stops_on_time(blob_pairs: Path, tmp_path: Path, train_config) -> None:
    cfg = train_config(blob_pairs, tmp_path / "run", steps=20)
    cfg["budget"] = {"steps": 10_000, "minutes": 0.5 / 60}
    cfg["schedule"] = {"warmup_steps": 0}
    trainer = Engine("supervised", cfg, quiet=True)
    trainer.run()
    assert 1 <= trainer.step < 10_000
    assert trainer.elapsed() >= 0.5
    desc = json.loads((tmp_path / "run/last.json").read_text())
    assert desc["training"]["step"] == trainer.step


@pytest.mark.parametrize("clip", [None, 1e-3])
def test_grad_clip_bounds_the_gradient_norm_of_every_step(
    blob_pairs: Path, tmp_path: Path, train_config, grad_norms: list[float], clip
) -> None:
    cfg = train_config(blob_pairs, tmp_path / "run", steps=3, optim={"grad_clip": clip})
    Engine("supervised", cfg, quiet=True).run()
    assert len(grad_norms) == 3
    if clip is None:
        assert min(grad_norms) > 1e-2  # the unclipped norms the clip below must act on
    else:
        assert max(grad_norms) <= clip * (1 + 1e-4)


def test_grad_clip_changes_the_update(blob_pairs: Path, tmp_path: Path, train_config) -> None:
    weights = {}
    for clip in (None, 1e-6):
        out = tmp_path / str(clip)
        cfg = train_config(blob_pairs, out, steps=2, optim={"grad_clip": clip})
        Engine("supervised", cfg, quiet=True).run()
        weights[clip] = load_file(out / "last.safetensors")
    assert any(not torch.equal(weights[None][k], weights[1e-6][k]) for k in weights[None])


def test_resume_reads_the_state_file_of_the_trainer_before_the_engine(
    blob_pairs: Path, tmp_path: Path, train_config
) -> None:
    """A run interrupted under the older single-task trainer (one optimiser, raw weights in
    last.safetensors, the stream position as epoch and batch) resumes exactly."""
    sched, val = {"warmup_steps": 2, "total_steps": 8}, {"every_steps": 4, "max_images": 4}
    full = train_config(blob_pairs, tmp_path / "full", steps=8, schedule=sched, val=val)
    train(full, quiet=True)
    part = train_config(blob_pairs, tmp_path / "part", steps=4, schedule=sched, val=val)
    train(part, quiet=True)
    path = tmp_path / "part/last.state.pt"
    new = torch.load(path, weights_only=False)
    old = {
        "step": new["step"],
        "epoch": new["batches"]["epoch"],
        "batch_in_epoch": new["batches"]["batch_in_epoch"],
        "elapsed_s": new["elapsed_s"],
        "best_psnr": new["best"],
        "optimizer": new["optimizers"]["model"],
        "ema": new["ema"],
        "scaler": new["scalers"]["model"],
        "rng": new["rng"],
        "world_size": 1,
        "history": new["history"],
    }
    torch.save(old, path)
    train({**part, "budget": {"steps": 8}}, resume=True, quiet=True)
    for stem in ("last", "best"):
        a = load_file(tmp_path / f"full/{stem}.safetensors")
        b = load_file(tmp_path / f"part/{stem}.safetensors")
        assert all(torch.equal(a[k], b[k]) for k in a), stem
