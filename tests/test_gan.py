"""GAN fine-tuning: discriminator shapes, adversarial losses and the per-sample WGAN-GP penalty,
the VGG-19 feature extractor with torchvision key names, a tiny run whose generator loads with
load_model, and the NaN guard that keeps the last good checkpoint."""

from __future__ import annotations

import copy
import hashlib
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml
from torch import nn

from lenssr.cli import main
from lenssr.errors import ConfigError, LenssrError
from lenssr.inference import load_model
from lenssr.models import create_model, load_checkpoint, save_checkpoint
from lenssr.training import load_task_config
from lenssr.training.adversarial import AdversarialLoss, critic_scores, gradient_penalty
from lenssr.training.discriminators import create_discriminator, list_discriminators
from lenssr.training.engine import Engine
from lenssr.training.perceptual import VGG19_CFG, EncoderFeatures, VGG19Features
from lenssr.training.tasks.gan import GanTask, validate_gan_config

TINY_PATCHGAN = {"name": "patchgan", "num_feat": 4, "num_layers": 2}
TINY_SRGAN = {"name": "srgan", "num_feat": 4, "num_blocks": 2, "dense_feat": 8}


def gan_engine(config: dict, **kwargs) -> Engine:
    """The engine running the GAN task on ``config``."""
    return Engine("gan", config, **kwargs)


def g_losses(engine: Engine) -> list[float]:
    return [log["g_total"] for log in engine.logs]


def d_losses(engine: Engine) -> list[float]:
    return [log["d_loss"] for log in engine.logs]


# ---------------------------------------------------------------------- discriminators


def test_registry_lists_both_and_rejects_unknown_names_and_keys():
    assert list_discriminators() == ["patchgan", "srgan"]
    with pytest.raises(ConfigError, match="unknown discriminator 'unet'"):
        create_discriminator("unet")
    with pytest.raises(ConfigError, match="num_blocks"):
        create_discriminator("patchgan", num_blocks=3)


def test_patchgan_gives_a_logit_map_that_grows_with_the_input():
    d = create_discriminator("patchgan", num_feat=4, num_layers=3)
    sizes = {}
    for h, w in ((32, 32), (64, 64), (75, 75), (64, 96)):
        out = d(torch.randn(2, 1, h, w))
        assert out.shape[:2] == (2, 1)
        assert out.shape[-2:] == (d.output_size(h), d.output_size(w))
        sizes[(h, w)] = out.shape[-2:]
    assert sizes[(64, 64)][0] > sizes[(32, 32)][0] and sizes[(64, 96)][1] > sizes[(64, 96)][0]
    assert d.receptive_field == 70  # the classic 70x70 PatchGAN
    with pytest.raises(LenssrError, match="at least"):
        d(torch.randn(1, 1, d.min_size - 1, 40))


@pytest.mark.parametrize("size", [(1, 1), (7, 7), (64, 64), (75, 75), (33, 50)])
def test_srgan_discriminator_gives_one_logit_per_image_for_any_size(size):
    d = create_discriminator("srgan", num_feat=4, num_blocks=3, dense_feat=8)
    assert d(torch.randn(3, 1, *size)).shape == (3, 1)


@pytest.mark.parametrize("spec", [TINY_PATCHGAN, TINY_SRGAN])
def test_batch_norm_is_switchable_and_depth_sets_the_strided_convs(spec):
    cfg = {k: v for k, v in spec.items() if k != "name"}
    with_bn = create_discriminator(spec["name"], batch_norm=True, **cfg)
    without = create_discriminator(spec["name"], batch_norm=False, **cfg)
    assert any(isinstance(m, nn.BatchNorm2d) for m in with_bn.modules())
    assert not any(isinstance(m, nn.BatchNorm2d) for m in without.modules())
    depth_key = "num_layers" if spec["name"] == "patchgan" else "num_blocks"
    deeper = create_discriminator(spec["name"], **{**cfg, depth_key: cfg[depth_key] + 1})

    def strided(m: nn.Module) -> int:
        return sum(isinstance(c, nn.Conv2d) and c.stride == (2, 2) for c in m.modules())

    assert strided(deeper) == strided(without) + 1 == cfg[depth_key] + 1


# ---------------------------------------------------------------------- adversarial


class LinearCritic(nn.Module):
    """``f(x) = <w, x>`` per sample (output (B, 1)); gradient w for every sample."""

    def __init__(self, shape: tuple[int, ...], norm: float) -> None:
        super().__init__()
        w = torch.randn(shape)
        self.w = nn.Parameter(w / w.norm() * norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x * self.w).flatten(1).sum(1, keepdim=True)


def test_gradient_penalty_is_zero_for_a_unit_norm_linear_critic_per_sample():
    real, fake = torch.randn(4, 1, 8, 8), torch.randn(4, 1, 8, 8)
    # the batch-level gradient norm would be sqrt(4) = 2: only a per-sample norm gives 0
    gp = gradient_penalty(LinearCritic((1, 8, 8), 1.0), real, fake)
    assert float(gp.detach()) == pytest.approx(0.0, abs=1e-10)
    gp2 = gradient_penalty(LinearCritic((1, 8, 8), 2.0), real, fake)
    assert float(gp2.detach()) == pytest.approx(1.0, rel=1e-5)  # (2 - 1)^2


def test_gradient_penalty_matches_a_per_sample_computation():
    class Quadratic(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:  # grad of sum(x^2)/2 is x
            return 0.5 * (x**2).flatten(1).sum(1, keepdim=True)

    real, fake = torch.randn(5, 1, 6, 6), torch.randn(5, 1, 6, 6)
    gen = torch.Generator().manual_seed(0)
    gp = gradient_penalty(Quadratic(), real, fake, gen)
    eps = torch.rand((5, 1, 1, 1), generator=torch.Generator().manual_seed(0))
    x = eps * real + (1 - eps) * fake
    expected = ((x.flatten(1).norm(dim=1) - 1) ** 2).mean()
    assert float(gp.detach()) == pytest.approx(float(expected), rel=1e-5)
    assert float(gp.detach()) > 0


def test_penalty_trains_the_critic_and_uses_the_mean_of_patch_logits():
    d = create_discriminator("patchgan", num_feat=4, num_layers=2, batch_norm=False)
    real, fake = torch.randn(2, 1, 32, 32), torch.randn(2, 1, 32, 32)
    gp = gradient_penalty(d, real, fake)
    gp.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in d.parameters())
    logits = torch.randn(3, 1, 4, 5)
    assert torch.allclose(critic_scores(logits), logits.mean(dim=(1, 2, 3)))


def test_adversarial_losses_have_their_textbook_values():
    class Const(nn.Module):
        def __init__(self, value: float) -> None:
            super().__init__()
            self.value = value

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.full((x.shape[0], 1), self.value) + 0 * x.flatten(1)[:, :1]

    real, fake = torch.randn(4, 1, 8, 8), torch.randn(4, 1, 8, 8)
    d_loss, _ = AdversarialLoss("vanilla").discriminator_loss(Const(0.0), real, fake)
    assert float(d_loss) == pytest.approx(2 * math.log(2))
    g = AdversarialLoss("vanilla").generator_loss(Const(3.0), real, fake)
    assert float(g) == pytest.approx(F.softplus(torch.tensor(-3.0)).item())
    # relativistic: constant logits make real and fake indistinguishable -> log 2 per term
    d_ra, _ = AdversarialLoss("relativistic").discriminator_loss(Const(5.0), real, fake)
    assert float(d_ra) == pytest.approx(2 * math.log(2))
    w = AdversarialLoss("wgan-gp")
    assert float(w.generator_loss(Const(1.5), real, fake)) == pytest.approx(-1.5)
    with pytest.raises(ConfigError, match="hinge"):
        AdversarialLoss("hinge")


# ------------------------------------------------------------------------ perceptual


@pytest.fixture(scope="module")
def vgg_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A torchvision-format VGG-19 state dict (random tensors, real key names and shapes)."""
    state, ch, idx = {}, 3, 0
    for v in VGG19_CFG:
        if v == "M":
            idx += 1
            continue
        state[f"features.{idx}.weight"] = torch.randn(v, ch, 3, 3) * (2 / (9 * ch)) ** 0.5
        state[f"features.{idx}.bias"] = torch.zeros(v)
        ch, idx = v, idx + 2
    state["classifier.6.weight"] = torch.randn(10, 4)  # ignored (the real one is 1000x4096)
    path = tmp_path_factory.mktemp("vgg") / "vgg19-random.pth"
    torch.save(state, path)
    return path


def test_vgg19_loads_torchvision_keys_and_normalises_single_channel_input(vgg_file: Path):
    state = torch.load(vgg_file, weights_only=True)
    assert "features.34.weight" in state and state["features.34.weight"].shape == (512, 512, 3, 3)
    vgg = VGG19Features(vgg_file, layer=34)
    assert torch.equal(vgg.features[34].weight, state["features.34.weight"])
    assert not any(p.requires_grad for p in vgg.parameters())
    assert vgg(torch.rand(1, 1, 32, 40)).shape == (1, 512, 2, 2)  # 4 poolings before conv5_4
    first = VGG19Features(vgg_file, layer=0)
    x = torch.rand(2, 1, 9, 9)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    expected = F.conv2d((x.repeat(1, 3, 1, 1) - mean) / std, state["features.0.weight"], padding=1)
    assert torch.allclose(first(x), expected, atol=1e-5)


def test_vgg19_rejects_files_without_the_torchvision_names(tmp_path: Path, vgg_file: Path):
    state = torch.load(vgg_file, weights_only=True)
    renamed = {k.replace("features.", "body."): v for k, v in state.items()}
    torch.save(renamed, tmp_path / "bad.pth")
    with pytest.raises(ConfigError, match="not a torchvision VGG-19 state dict"):
        VGG19Features(tmp_path / "bad.pth")
    with pytest.raises(ConfigError, match="not found"):
        VGG19Features(tmp_path / "missing.pth")


def test_encoder_features_are_a_frozen_copy_of_the_hybrid_encoder(tiny_model):
    model = tiny_model("hybrid")
    feats = EncoderFeatures(model)
    x = torch.rand(2, 1, 10, 12)
    assert torch.allclose(feats(x), model.encode(x))
    with torch.no_grad():
        next(model.parameters()).add_(1.0)  # the copy does not follow the generator
    assert not torch.allclose(feats(x), model.encode(x))
    assert not any(p.requires_grad for p in feats.parameters())
    with pytest.raises(ConfigError, match="needs a hybrid"):
        EncoderFeatures(create_model("srcnn"))


# ------------------------------------------------------------------------------- runs


@pytest.fixture(scope="module")
def gan_data(
    tmp_path_factory: pytest.TempPathFactory, make_pairs, model_section
) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("gan")
    pairs = make_pairs(root / "pairs.h5", n=16, h=12)
    model = create_model(**model_section("hybrid"))
    init = save_checkpoint(root / "init", model)
    return pairs, init


def tiny_gan_config(pairs: Path, init: Path, out: Path, steps: int = 6, **gan) -> dict:
    return {
        "init": str(init),
        "data": {"train": str(pairs), "val_fraction": 0.25, "patch_size": 12, "batch_size": 4},
        "optim": {"lr": 1e-3},
        "schedule": {"warmup_steps": 1},
        "ema": {"decay": 0.9},
        "val": {"every_steps": 2, "max_images": 4},
        "log": {"tensorboard": True, "every_steps": 1},
        "checkpoint": {"dir": str(out)},
        "threads": 1,
        "budget": {"steps": steps},
        "gan": {"discriminator": dict(TINY_PATCHGAN), **gan},
    }


@pytest.mark.parametrize(
    "disc, adversarial",
    [(TINY_PATCHGAN, "vanilla"), (TINY_SRGAN, "wgan-gp"), (TINY_SRGAN, "relativistic")],
)
def test_tiny_gan_run_writes_a_hybrid_checkpoint_that_load_model_reads(
    gan_data, tmp_path: Path, disc, adversarial
):
    pairs, init = gan_data
    cfg = tiny_gan_config(pairs, init, tmp_path, discriminator=dict(disc), adversarial=adversarial)
    if adversarial == "wgan-gp":
        cfg["gan"]["d_steps"] = 2
    trainer = gan_engine(cfg, quiet=True)
    path = trainer.run()
    assert path == tmp_path / "generator.safetensors"
    assert len(g_losses(trainer)) == len(d_losses(trainer)) == 6
    assert all(math.isfinite(v) for v in g_losses(trainer) + d_losses(trainer))
    assert [h["step"] for h in trainer.history] == [2, 4, 6]
    assert all(math.isfinite(h["val_hallucination"]) for h in trainer.history)
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))
    sr = load_model(path, device="cpu")
    assert sr.descriptor["arch"] == "hybrid"
    assert sr.descriptor["training"]["adversarial"] == adversarial
    assert sr.descriptor["training"]["perceptual"] == "encoder"
    assert sr.upscale(torch.rand(11, 13).numpy() + 1.0).shape == (22, 26)
    start, _ = load_checkpoint(init)
    end, _ = load_checkpoint(path)
    assert not torch.equal(
        start.state_dict()["shallow.0.weight"], end.state_dict()["shallow.0.weight"]
    )


def test_nan_loss_stops_gan_training_and_keeps_the_last_good_checkpoint(
    gan_data, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    pairs, init = gan_data
    original = GanTask.generator_losses
    seen: dict[str, str] = {}

    def poisoned(self, lr, hr, cond=None):
        terms = original(self, lr, hr, cond)
        if self.engine.step == 5:
            seen["hash"] = hashlib.sha256((tmp_path / "last.safetensors").read_bytes()).hexdigest()
            terms["total"] = terms["total"] * float("nan")
        return terms

    monkeypatch.setattr(GanTask, "generator_losses", poisoned)
    with pytest.raises(LenssrError) as info:
        gan_engine(tiny_gan_config(pairs, init, tmp_path, steps=10), quiet=True).run()
    message = str(info.value)
    assert "\n" not in message
    assert "generator loss is nan at step 5" in message
    assert f"last good checkpoint kept: {tmp_path / 'last.safetensors'}" in message
    last = tmp_path / "last.safetensors"
    assert hashlib.sha256(last.read_bytes()).hexdigest() == seen["hash"]
    assert not (tmp_path / "generator.safetensors").exists()
    model = load_model(last, device="cpu")
    assert model.descriptor["training"]["step"] == 4
    assert all(torch.isfinite(t).all() for t in model.module.state_dict().values())


def test_config_checks(gan_data, tmp_path: Path):
    pairs, init = gan_data
    cfg = tiny_gan_config(pairs, init, tmp_path, adversarial="wgan-gp")
    full = validate_gan_config(cfg)
    assert full["gan"]["discriminator"]["batch_norm"] is False  # defaulted off for wgan-gp
    cfg["gan"]["discriminator"]["batch_norm"] = True
    with pytest.raises(ConfigError, match="batch_norm: false"):
        validate_gan_config(cfg)
    with pytest.raises(ConfigError, match="gan.weights.style"):
        validate_gan_config(tiny_gan_config(pairs, init, tmp_path, weights={"style": 1.0}))
    both = {**tiny_gan_config(pairs, init, tmp_path), "model": {"name": "hybrid", "num_feat": 8}}
    with pytest.raises(ConfigError, match="either init"):
        validate_gan_config(both)
    root = Path(__file__).resolve().parents[1]
    repo = load_task_config("gan", root / "configs" / "gan-hybrid.yaml")
    assert repo["init"] and repo["gan"]["discriminator"]["name"] == "patchgan"


def test_cli_gan_with_vgg_weights(gan_data, vgg_file: Path, tmp_path: Path, capsys):
    pairs, init = gan_data
    cfg = tiny_gan_config(pairs, init, tmp_path / "run", steps=2)
    cfg["log"]["tensorboard"] = False
    cfg["gan"]["perceptual"] = {"vgg_layer": 8}  # conv2_2 keeps the test fast
    path = tmp_path / "gan.yaml"
    path.write_text(yaml.safe_dump(cfg))
    with pytest.raises(SystemExit) as exc:
        main(["gan", "-c", str(path), "--vgg-weights", str(vgg_file), "-q"])
    assert exc.value.code == 0
    out = Path(capsys.readouterr().out.strip())
    assert out.name == "generator.safetensors"
    assert load_model(out, device="cpu").descriptor["training"]["perceptual"] == "vgg19"
    with pytest.raises(SystemExit) as exc:  # a user mistake is one line, exit status 2
        main(
            [
                "gan",
                "-c",
                str(path),
                "--vgg-weights",
                str(tmp_path / "no.pth"),
                "-o",
                str(tmp_path / "x"),
                "-q",
            ]
        )
    assert exc.value.code == 2
    assert "VGG weights not found" in capsys.readouterr().err


# ------------------------------------------------------------------ resume, hook, clipping


def test_resume_continues_gan_training_exactly(gan_data, tmp_path: Path):
    from safetensors.torch import load_file

    pairs, init = gan_data
    full = tiny_gan_config(pairs, init, tmp_path / "full", steps=8, adversarial="wgan-gp")
    full["schedule"]["total_steps"] = 8
    full["log"]["tensorboard"] = False
    gan_engine(full, quiet=True).run()
    part = copy.deepcopy(full)
    part["checkpoint"]["dir"] = str(tmp_path / "part")
    part["budget"]["steps"] = 4
    gan_engine(part, quiet=True).run()
    with pytest.raises(ConfigError, match="--resume"):
        gan_engine({**part, "budget": {"steps": 8}}, quiet=True).run()
    resumed = gan_engine({**part, "budget": {"steps": 8}}, quiet=True, resume=True)
    resumed.run()
    assert len(g_losses(resumed)) == 4 and resumed.step == 8
    assert [h["step"] for h in resumed.history] == [2, 4, 6, 8]
    for stem in ("last", "generator"):
        a = load_file(tmp_path / "full" / f"{stem}.safetensors")
        b = load_file(tmp_path / "part" / f"{stem}.safetensors")
        assert all(torch.equal(a[k], b[k]) for k in a), stem
    sa = torch.load(tmp_path / "full" / "last.state.pt", weights_only=False)
    sb = torch.load(tmp_path / "part" / "last.state.pt", weights_only=False)
    for k in sa["modules"]["discriminator"]:
        assert torch.equal(sa["modules"]["discriminator"][k], sb["modules"]["discriminator"][k]), k


def test_on_validation_ends_a_gan_run(gan_data, tmp_path: Path):
    pairs, init = gan_data
    seen: list[int] = []

    def hook(step: int, metrics: dict[str, float]) -> None:
        assert math.isfinite(metrics["val_psnr"])
        seen.append(step)
        if step == 4:
            raise KeyboardInterrupt("pruned")

    trainer = gan_engine(tiny_gan_config(pairs, init, tmp_path, steps=10), quiet=True)
    trainer.on_validation = hook
    with pytest.raises(KeyboardInterrupt, match="pruned"):
        trainer.run()
    assert seen == [2, 4] and trainer.step == 4
    assert not (tmp_path / "generator.safetensors").exists()


@pytest.mark.parametrize("clip", [None, 1e-3])
def test_grad_clip_bounds_generator_and_discriminator_gradients(
    gan_data, tmp_path: Path, grad_norms: list[float], clip
):
    pairs, init = gan_data
    norms = grad_norms
    cfg = tiny_gan_config(pairs, init, tmp_path, steps=3)
    cfg["optim"]["grad_clip"] = clip
    gan_engine(cfg, quiet=True).run()
    assert len(norms) == 6  # 3 discriminator and 3 generator steps
    if clip is None:
        assert min(norms) > 1e-2
    else:
        assert max(norms) <= clip * (1 + 1e-4)


def test_cli_gan_resume(gan_data, tmp_path: Path, capsys):
    pairs, init = gan_data
    cfg = tiny_gan_config(pairs, init, tmp_path / "run", steps=2)
    cfg["log"]["tensorboard"] = False
    path = tmp_path / "gan.yaml"
    path.write_text(yaml.safe_dump(cfg))
    with pytest.raises(SystemExit) as exc:
        main(["gan", "-c", str(path), "-q"])
    assert exc.value.code == 0
    with pytest.raises(SystemExit) as exc:
        main(["gan", "-c", str(path), "-q", "--resume", "--set", "budget.steps=4"])
    assert exc.value.code == 0
    assert (
        load_model(tmp_path / "run" / "generator", device="cpu").descriptor["training"]["step"] == 4
    )
