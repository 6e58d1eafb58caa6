"""lenssr.training: config loading/validation, losses, schedule, EMA, init weights, CLI."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml

from lenssr.cli import main
from lenssr.errors import ConfigError
from lenssr.models import create_model
from lenssr.training import DEFAULTS, load_config
from lenssr.training.losses import SRLoss, downsample_to, pyramid_loss, ssim_torch
from lenssr.training.optim import EMA, lr_factor
from lenssr.training.tasks.supervised import load_init_weights

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def _write(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


def test_load_config_fills_defaults_and_applies_overrides(tmp_path: Path) -> None:
    p = _write(
        tmp_path / "c.yaml",
        {"model": {"name": "edsr", "num_feat": 8}, "budget": {"steps": 5}, "optim": {"lr": 1e-3}},
    )
    cfg = load_config(p, ["optim.lr=5e-4", "data.augment=false", "model.num_block=2"])
    assert cfg["optim"]["lr"] == pytest.approx(5e-4)
    assert cfg["data"]["augment"] is False
    assert cfg["model"] == {"name": "edsr", "num_feat": 8, "num_block": 2}
    assert cfg["optim"]["betas"] == DEFAULTS["optim"]["betas"]
    assert cfg["budget"] == {"steps": 5, "minutes": None}


def test_unknown_key_is_named(tmp_path: Path) -> None:
    p = _write(tmp_path / "c.yaml", {"optim": {"lrr": 1e-3}, "budget": {"steps": 5}})
    with pytest.raises(ConfigError, match=r"unknown config key 'optim.lrr'") as exc:
        load_config(p)
    assert "\n" not in str(exc.value)
    p = _write(tmp_path / "d.yaml", {"optimiser": {}, "budget": {"steps": 5}})
    with pytest.raises(ConfigError, match="'optimiser'"):
        load_config(p)
    with pytest.raises(ConfigError, match="'schedule.cosine'"):
        load_config(_write(tmp_path / "e.yaml", {"budget": {"steps": 5}}), ["schedule.cosine=1"])


@pytest.mark.parametrize(
    ("override", "match"),
    [
        ("loss.type=huber", "loss.type"),
        ("optim.lr=-1", "optim.lr"),
        ("amp=maybe", "amp"),
        ("data.batch_size=2.5", "data.batch_size"),
        ("ema.decay=1.5", "ema.decay"),
        ("budget.steps=null", "budget needs steps or minutes"),
        ("optim", "key=value"),
    ],
)
def test_bad_values_raise_config_error(tmp_path: Path, override: str, match: str) -> None:
    p = _write(tmp_path / "c.yaml", {"budget": {"steps": 5}})
    with pytest.raises(ConfigError, match=match):
        load_config(p, [override])


def test_defaults_include_and_shipped_configs(tmp_path: Path) -> None:
    _write(
        tmp_path / "base.yaml", {"data": {"batch_size": 4, "patch_size": 8}, "budget": {"steps": 7}}
    )
    child = tmp_path / "child.yaml"
    child.write_text("defaults: base.yaml\nmodel: {name: srcnn}\ndata: {batch_size: 2}\n")
    cfg = load_config(child)
    assert cfg["data"]["batch_size"] == 2 and cfg["data"]["patch_size"] == 8
    assert cfg["budget"]["steps"] == 7 and cfg["model"]["name"] == "srcnn"
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")

    names = ("srcnn", "edsr", "lapsrn", "esrgan", "hybrid")
    shipped = {name: load_config(CONFIGS / f"{name}.yaml") for name in names}
    # one protocol: the same data block and budget for every baseline
    reference = shipped["hybrid"]
    for name, cfg in shipped.items():
        assert cfg["model"]["name"] == name
        assert cfg["data"] == reference["data"], name
        assert cfg["budget"] == reference["budget"], name
        assert cfg["data"]["train"] == "data/default-train.h5"
        kwargs = {k: v for k, v in cfg["model"].items() if k != "name"}
        assert create_model(name, **kwargs).scale == 2


def test_lr_schedule_warmup_then_cosine() -> None:
    assert lr_factor(0, 10, 0.0) == pytest.approx(0.1)
    assert lr_factor(9, 10, 0.09) == pytest.approx(1.0)
    assert lr_factor(50, 10, 0.5) == pytest.approx(0.5)
    assert lr_factor(100, 10, 1.0) == pytest.approx(0.0)
    assert lr_factor(100, 10, 1.0, min_ratio=0.1) == pytest.approx(0.1)
    values = [lr_factor(s, 10, s / 100) for s in range(10, 100)]
    assert all(a >= b for a, b in zip(values, values[1:], strict=False))


def test_ema_tracks_weights() -> None:
    model = torch.nn.Linear(2, 1)
    ema = EMA(model, decay=0.5)
    with torch.no_grad():
        model.weight.fill_(1.0)
    start = ema.module.weight.clone()
    for _ in range(50):
        ema.update(model)
    assert not torch.equal(start, ema.module.weight)
    assert torch.allclose(ema.module.weight, torch.ones_like(model.weight), atol=1e-6)
    assert not ema.module.weight.requires_grad


def test_pyramid_loss_uses_area_downsampled_targets() -> None:
    torch.manual_seed(0)
    hr = torch.rand(2, 1, 16, 16)
    down = F.avg_pool2d(hr, 2)
    assert torch.allclose(downsample_to(hr, (8, 8)), down)
    assert torch.allclose(downsample_to(hr, (8, 8))[0, 0, 0, 0], hr[0, 0, :2, :2].mean())
    outputs = [down.clone(), hr.clone()]
    assert pyramid_loss(outputs, hr, F.l1_loss).item() == pytest.approx(0.0, abs=1e-7)
    outputs[0] = outputs[0] + 0.3  # only the x2 level is wrong
    assert pyramid_loss(outputs, hr, F.l1_loss).item() == pytest.approx(0.15, rel=1e-5)
    assert pyramid_loss(outputs, hr, F.l1_loss, [3.0, 1.0]).item() == pytest.approx(0.225, rel=1e-5)
    # a level larger than the target has nothing to compare with and is skipped
    bigger = [hr.clone() + 0.2, F.interpolate(hr, scale_factor=2)]
    assert pyramid_loss(bigger, hr, F.l1_loss).item() == pytest.approx(0.2, rel=1e-5)
    with pytest.raises(ConfigError, match="pyramid_weights"):
        pyramid_loss(outputs, hr, F.l1_loss, [1.0])
    loss = SRLoss({"type": "mse", "pyramid": True, "pyramid_weights": None})
    assert loss(outputs, hr).item() == pytest.approx(0.09 / 2, rel=1e-5)


def test_pixel_losses_and_ssim() -> None:
    torch.manual_seed(0)
    x = torch.rand(3, 1, 20, 20)
    assert ssim_torch(x, x).tolist() == pytest.approx([1.0] * 3)
    noisy = x + 0.3 * torch.randn_like(x)
    assert (ssim_torch(noisy, x) < 0.9).all()
    for kind in ("l1", "mse", "charbonnier", "mse_ssim"):
        f = SRLoss({"type": kind, "ssim_weight": 0.5, "charbonnier_eps": 1e-3})
        assert f(x, x).item() == pytest.approx(1e-3 if kind == "charbonnier" else 0.0, abs=1e-6)
        assert f(noisy, x).item() > 0.05
    mse_ssim = SRLoss({"type": "mse_ssim", "ssim_weight": 0.5})(noisy, x).item()
    mse = F.mse_loss(noisy, x).item()
    assert mse_ssim > mse + 0.05


def test_ssim_matches_scikit_image() -> None:
    skm = pytest.importorskip("skimage.metrics")
    g = torch.Generator().manual_seed(1)
    hr = torch.rand(1, 1, 23, 30, generator=g) * 5 + 2
    sr = hr + torch.randn(1, 1, 23, 30, generator=g)
    a, b = hr[0, 0].double().numpy(), sr[0, 0].double().numpy()
    lo, hi = a.min(), a.max()
    ref = skm.structural_similarity((b - lo) / (hi - lo), (a - lo) / (hi - lo), data_range=1.0)
    assert ssim_torch(sr, hr).item() == pytest.approx(ref, abs=1e-4)


def _tiny_hybrid(**kw):
    from lenssr.models import create_model

    cfg = dict(num_feat=8, num_res_blocks=1, embed_dim=16, depth=1, num_heads=2, pos_grid=4)
    cfg.update(kw)
    return create_model("hybrid", **cfg)


def test_init_strict_mismatch_message_and_non_strict_load(tmp_path: Path) -> None:
    from lenssr.models import save_checkpoint

    torch.manual_seed(0)
    src = _tiny_hybrid(embed_dim=32)
    ckpt = save_checkpoint(tmp_path / "pre", src)
    dst = _tiny_hybrid()
    with pytest.raises(ConfigError) as exc:
        load_init_weights(dst, ckpt, strict=True)
    msg = str(exc.value)
    assert "does not match model 'hybrid'" in msg and "shape mismatches" in msg
    assert "init_strict: false" in msg and "\n" not in msg
    report = load_init_weights(dst, ckpt, strict=False)
    assert report["shape_mismatch"] and report["loaded"]
    key = report["loaded"][0]
    assert torch.equal(dst.state_dict()[key], src.state_dict()[key])
    # the same architecture loads strictly, also from a torch state dict with a DDP prefix
    same = _tiny_hybrid(embed_dim=32)
    torch.save(
        {"model": {f"module.{k}": v for k, v in src.state_dict().items()}}, tmp_path / "p.pt"
    )
    load_init_weights(same, tmp_path / "p.pt", strict=True)
    for k, v in src.state_dict().items():
        assert torch.equal(same.state_dict()[k], v)
    with pytest.raises(ConfigError, match="not found"):
        load_init_weights(same, tmp_path / "nothing.ckpt")


def test_cli_help_and_bad_config_path(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["train", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "--config" in out and "--resume" in out and "--init" in out and "--set" in out
    with pytest.raises(SystemExit) as exc:
        main(["train", "--config", str(tmp_path / "missing.yaml")])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: config file not found") and "\n" not in err
    bad = _write(tmp_path / "bad.yaml", {"budget": {"steps": 1}, "loss": {"kind": "l1"}})
    with pytest.raises(SystemExit) as exc:
        main(["train", "--config", str(bad)])
    assert exc.value.code == 2
    assert "unknown config key 'loss.kind'" in capsys.readouterr().err
