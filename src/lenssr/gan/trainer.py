"""GAN fine-tuning of the (pretrained) hybrid: ``train_gan(config) -> generator checkpoint``.

Generator: the checkpoint named by ``init`` (normally ``lenssr pretrain`` then ``lenssr train
--init`` output; its architecture comes from its descriptor), or a fresh ``model`` when
``init`` is null. Discriminator: ``gan.discriminator`` (``patchgan`` or ``srgan``, see
:mod:`lenssr.gan.discriminators`). Per generator step, ``gan.d_steps`` discriminator steps (each
on its own batch), then the generator loss::

    weights.pixel * loss.type(SR, HR)                      (l1 | mse | charbonnier | mse_ssim)
  + weights.perceptual * criterion(phi(SR), phi(HR))       (phi: VGG-19 with --vgg-weights,
                                                            else the frozen pretrained encoder)
  + weights.adversarial * adversarial generator loss       (vanilla | relativistic | wgan-gp)

The other sections (data, optim = the generator's optimiser, schedule, ema, val, checkpoint,
log, seed, threads, device, budget) are the supervised trainer's and are validated by it.
Guard rails: a NaN/inf loss stops training with a one-line :class:`LenssrError`, and
checkpoints are only written from finite weights, so the last good one is kept. Files in
``checkpoint.dir``::

    config.yaml                      the full, validated config
    last.safetensors / .json         EMA generator at the latest validation (hybrid checkpoint)
    generator.safetensors / .json    EMA generator at the end of the run (the result)
    last.state.pt                    raw generator, discriminator, optimisers, EMA and RNG
                                     states: what ``--resume`` needs to continue exactly
    tb/                              TensorBoard: g_loss and its parts, d_loss, val metrics

``on_validation(step, metrics)`` is called after each validation (after ``last.*`` is
written); an exception it raises (``optuna.TrialPruned``, ...) ends the run. ``optim.grad_clip``
clips the generator's and the discriminator's gradient norms.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import Tensor, nn
from torch.utils.data import DataLoader

from lenssr.errors import ConfigError, LenssrError
from lenssr.gan.losses import ADVERSARIAL_TYPES, AdversarialLoss
from lenssr.pretrain.pretrain import ValidationCallback, check_finite, weights_finite
from lenssr.pretrain.resume import (
    ResumableBatches,
    after_checkpoint,
    check_output_dir,
    load_state,
    loop_state,
    restore_loop_state,
)

#: The ``gan:`` section (all other sections are the supervised trainer's).
GAN_DEFAULTS: dict[str, Any] = {
    "discriminator": {"name": "patchgan"},  # other keys: the constructor's arguments
    "adversarial": "vanilla",  # vanilla (BCE) | relativistic | wgan-gp
    "gp_weight": 10.0,
    "d_steps": 1,  # discriminator steps per generator step
    "d_lr": 1.0e-4,
    "d_betas": [0.9, 0.99],
    "weights": {"pixel": 1.0, "perceptual": 1.0, "adversarial": 5.0e-3},
    "perceptual": {"vgg_weights": None, "vgg_layer": 34, "criterion": "l1"},
}

_SECTION_DEFAULTS: dict[str, Any] = {
    "optim": {"lr": 1.0e-4},
    "checkpoint": {"dir": "runs/gan"},
}


def _number(value: Any, name: str, positive: bool = False) -> float:
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            pass
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ConfigError(f"{name} must be a non-negative number, got {value!r}")
    if positive and value == 0:
        raise ConfigError(f"{name} must be > 0, got {value!r}")
    return float(value)


def validate_gan_config(config: dict[str, Any], origin: str = "") -> dict[str, Any]:
    """Check a GAN config and fill in defaults; returns the full config.

    The ``gan`` section is checked here, the rest by
    :func:`lenssr.training.config.validate_config`. Raises :class:`ConfigError`.
    """
    from lenssr.training.config import merge, validate_config

    if not isinstance(config, dict):
        raise ConfigError("a GAN config must be a mapping of sections")
    raw = copy.deepcopy(config)
    section = raw.pop("gan", None) or {}
    if not isinstance(section, dict):
        raise ConfigError("gan must be a mapping")
    for key, known in (
        ("", GAN_DEFAULTS),
        ("weights", GAN_DEFAULTS["weights"]),
        ("perceptual", GAN_DEFAULTS["perceptual"]),
    ):
        sub = section.get(key, {}) if key else section
        if not isinstance(sub, dict):
            raise ConfigError(f"gan.{key} must be a mapping")
        bad = sorted(set(sub) - set(known))
        if bad:
            prefix = f"gan.{key}." if key else "gan."
            raise ConfigError(
                f"unknown config key(s) {', '.join(prefix + b for b in bad)} "
                f"(known: {', '.join(known)})"
            )
    disc = section.get("discriminator") or {}
    if not isinstance(disc, dict):
        raise ConfigError("gan.discriminator must be a mapping (name and its arguments)")
    gan = merge(GAN_DEFAULTS, {k: v for k, v in section.items() if k != "discriminator"})
    gan["discriminator"] = {"name": "patchgan", **disc}
    if gan["adversarial"] not in ADVERSARIAL_TYPES:
        raise ConfigError(
            f"gan.adversarial {gan['adversarial']!r} unknown (use {', '.join(ADVERSARIAL_TYPES)})"
        )
    if gan["adversarial"] == "wgan-gp":
        if gan["discriminator"].get("batch_norm", False):
            raise ConfigError(
                "gan.adversarial wgan-gp needs gan.discriminator.batch_norm: false "
                "(the gradient penalty is per sample; batch norm mixes samples)"
            )
        gan["discriminator"]["batch_norm"] = False
    gan["gp_weight"] = _number(gan["gp_weight"], "gan.gp_weight")
    gan["d_lr"] = _number(gan["d_lr"], "gan.d_lr", positive=True)
    steps = gan["d_steps"]
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ConfigError(f"gan.d_steps must be a positive integer, got {steps!r}")
    betas = gan["d_betas"]
    if not (isinstance(betas, list | tuple) and len(betas) == 2 and all(0 <= b < 1 for b in betas)):
        raise ConfigError(f"gan.d_betas must be two numbers in [0, 1), got {betas!r}")
    for key in GAN_DEFAULTS["weights"]:
        gan["weights"][key] = _number(gan["weights"][key], f"gan.weights.{key}")
    layer = gan["perceptual"]["vgg_layer"]
    if isinstance(layer, bool) or not isinstance(layer, int) or not 0 <= layer <= 36:
        raise ConfigError(f"gan.perceptual.vgg_layer must be in 0..36, got {layer!r}")
    if gan["perceptual"]["criterion"] not in ("l1", "mse"):
        raise ConfigError(
            f"gan.perceptual.criterion must be l1 or mse, got {gan['perceptual']['criterion']!r}"
        )
    user_model = raw.get("model") or {}
    if raw.get("init") and set(user_model) - {"name"}:
        raise ConfigError(
            "set either init (the generator checkpoint; its architecture comes from it) or "
            "model arguments, not both"
        )
    full = validate_config(merge(_SECTION_DEFAULTS, raw), origin)
    full["gan"] = gan
    return full


def load_gan_config(path: str | Path, overrides: list[str] | None = None) -> dict[str, Any]:
    """Read a GAN YAML (``defaults:`` includes allowed), apply ``key=value`` overrides and
    validate it (see :func:`validate_gan_config`)."""
    from lenssr.training.config import apply_overrides, read_yaml

    raw = apply_overrides(read_yaml(Path(path)), overrides)
    return validate_gan_config(raw, origin=str(path))


class GANTrainer:
    """One GAN fine-tuning run; :meth:`run` returns ``generator.safetensors``.

    ``vgg_weights`` (or ``gan.perceptual.vgg_weights``) selects VGG-19 perceptual features;
    ``init`` overrides ``config["init"]`` (the generator checkpoint); ``out`` overrides
    ``checkpoint.dir``; ``device`` overrides ``config["device"]``. ``resume`` continues the run
    in ``checkpoint.dir`` exactly from its ``last.state.pt``. ``on_validation(step, metrics)``
    is called after each validation; any exception it raises ends the run.
    """

    def __init__(
        self,
        config: dict[str, Any],
        *,
        vgg_weights: str | Path | None = None,
        init: str | Path | None = None,
        out: str | Path | None = None,
        device: str | None = None,
        quiet: bool = False,
        resume: bool = False,
        on_validation: ValidationCallback | None = None,
    ) -> None:
        cfg = validate_gan_config(config)
        if vgg_weights is not None:
            cfg["gan"]["perceptual"]["vgg_weights"] = str(vgg_weights)
        if init is not None:
            cfg["init"] = str(init)
        if out is not None:
            cfg["checkpoint"]["dir"] = str(out)
        if device is not None:
            cfg["device"] = device
        self.cfg = cfg
        self.out = Path(cfg["checkpoint"]["dir"])
        self.quiet = quiet
        self.resume = resume
        self.on_validation = on_validation
        self.step = 0
        self.history: list[dict[str, float]] = []
        self.g_losses: list[float] = []
        self.d_losses: list[float] = []

    def _say(self, msg: str) -> None:
        if not self.quiet:
            from rich.console import Console

            Console(stderr=True).print(msg, highlight=False)

    # ----------------------------------------------------------------------------- setup
    def _setup_data(self) -> None:
        from lenssr.data import Normalization, PairDataset, open_pairs, open_train_val

        dcfg = self.cfg["data"]
        seed = int(self.cfg["seed"])
        train_src, val_src, train_idx, val_idx = open_train_val(
            dcfg, open_pairs, seed, self.cfg["val"]["max_images"],
            "LR/HR pairs: .h5, DeepLense folder, .zip",
        )  # fmt: skip
        self.data_scale = int(train_src.scale)
        common = {"normalization": Normalization(), "seed": seed}
        self.train_ds = PairDataset(
            train_src, train_idx, dcfg["patch_size"], bool(dcfg["augment"]), **common
        )
        self.val_ds = PairDataset(val_src, val_idx, None, False, **common) if val_idx else None
        if len(self.train_ds) < dcfg["batch_size"]:
            raise ConfigError(
                f"data.batch_size {dcfg['batch_size']} is larger than the "
                f"{len(self.train_ds)} training pairs"
            )
        self.data_info = {
            "train": str(dcfg["train"]),
            "val": str(dcfg["val"]) if dcfg["val"] else f"val_fraction={dcfg['val_fraction']}",
            "n_train": len(self.train_ds),
            "n_val": len(val_idx),
            "scale": self.data_scale,
            "patch_size_lr": dcfg["patch_size"],
        }

    def _build_generator(self) -> nn.Module:
        from lenssr.models import create_model, load_checkpoint

        if self.cfg["init"]:
            model, _ = load_checkpoint(self.cfg["init"], map_location="cpu")
            return model
        mcfg = dict(self.cfg["model"])
        name = mcfg.pop("name")
        try:
            return create_model(name, **mcfg)
        except ConfigError:
            raise
        except LenssrError as exc:
            raise ConfigError(f"model: {exc}") from exc

    def _setup_models(self) -> None:
        from lenssr.gan.discriminators import create_discriminator
        from lenssr.gan.perceptual import EncoderFeatures, PerceptualLoss, VGG19Features
        from lenssr.training.losses import make_pixel_loss
        from lenssr.training.optim import EMA, make_optimizer

        gcfg = self.cfg["gan"]
        generator = self._build_generator()
        scales = tuple(getattr(generator, "scales", (generator.scale,)))
        if self.data_scale not in scales:
            raise ConfigError(
                f"the generator upscales x{scales} but the pairs are x{self.data_scale}"
            )
        self.generator = generator.to(self.device).train()
        dcfg = dict(gcfg["discriminator"])
        self.discriminator = create_discriminator(dcfg.pop("name"), **dcfg).to(self.device)
        self.discriminator.train()
        self.adversarial = AdversarialLoss(gcfg["adversarial"], gcfg["gp_weight"])
        self.pixel_loss = make_pixel_loss(self.cfg["loss"])
        self.perceptual: PerceptualLoss | None = None
        pcfg = gcfg["perceptual"]
        if gcfg["weights"]["perceptual"] > 0:
            if pcfg["vgg_weights"]:
                features: nn.Module = VGG19Features(pcfg["vgg_weights"], pcfg["vgg_layer"])
                self.perceptual_kind = "vgg19"
            else:
                if not self.cfg["init"]:
                    raise ConfigError(
                        "the lensing-encoder perceptual loss needs a pretrained generator: set "
                        "init, pass --vgg-weights, or set gan.weights.perceptual: 0"
                    )
                features = EncoderFeatures(self.generator)
                self.perceptual_kind = "encoder"
            self.perceptual = PerceptualLoss(features, pcfg["criterion"]).to(self.device)
        else:
            self.perceptual_kind = "none"
        decay = self.cfg["ema"]["decay"]
        self.ema = EMA(self.generator, decay) if decay else None
        self.g_opt = make_optimizer(self.generator, self.cfg["optim"])
        d_optim = {"lr": gcfg["d_lr"], "betas": gcfg["d_betas"], "weight_decay": 0.0}
        self.d_opt = make_optimizer(self.discriminator, d_optim)

    # ---------------------------------------------------------------------------- steps
    def _sr(self, model: nn.Module, lr: Tensor) -> Tensor:
        return model(lr, scale=self.data_scale) if len(model.scales) > 1 else model(lr)

    def _set_lr(self) -> None:
        from lenssr.training.optim import lr_factor

        scfg = self.cfg["schedule"]
        f = lr_factor(
            self.step, int(scfg["warmup_steps"]), self._progress(), float(scfg["min_lr_ratio"])
        )
        self.current_lr = float(self.cfg["optim"]["lr"]) * f
        for group in self.g_opt.param_groups:
            group["lr"] = self.current_lr
        for group in self.d_opt.param_groups:
            group["lr"] = float(self.cfg["gan"]["d_lr"]) * f

    def discriminator_step(self, lr: Tensor, hr: Tensor) -> tuple[float, dict[str, float]]:
        """One discriminator update on a batch; returns ``(d_loss, logs)``."""
        with torch.no_grad():
            fake = self._sr(self.generator, lr)
        loss, logs = self.adversarial.discriminator_loss(self.discriminator, hr, fake, self.gp_gen)
        check_finite(loss, "the discriminator loss", self.step, self.last_good)
        self.d_opt.zero_grad(set_to_none=True)
        loss.backward()
        self._clip(self.discriminator)
        self.d_opt.step()
        return float(loss.detach()), logs

    def generator_losses(self, lr: Tensor, hr: Tensor) -> dict[str, Tensor]:
        """The generator's loss terms on a batch: ``pixel``, ``perceptual``, ``adversarial``
        and their weighted sum ``total``."""
        w = self.cfg["gan"]["weights"]
        sr = self._sr(self.generator, lr)
        zero = sr.new_zeros(())
        terms = {"pixel": self.pixel_loss(sr.float(), hr.float())}
        terms["perceptual"] = self.perceptual(sr, hr) if self.perceptual is not None else zero
        terms["adversarial"] = (
            self.adversarial.generator_loss(self.discriminator, hr, sr)
            if w["adversarial"] > 0
            else zero
        )
        terms["total"] = sum(w[k] * terms[k] for k in ("pixel", "perceptual", "adversarial"))
        return terms

    def _clip(self, model: nn.Module) -> None:
        """Clip the gradient norm of ``model`` to ``optim.grad_clip`` (when set)."""
        clip = self.cfg["optim"]["grad_clip"]
        if clip:
            nn.utils.clip_grad_norm_(model.parameters(), float(clip))

    def generator_step(self, lr: Tensor, hr: Tensor) -> dict[str, float]:
        """One generator update (discriminator frozen); returns the loss terms."""
        self.discriminator.requires_grad_(False)
        try:
            terms = self.generator_losses(lr, hr)
            check_finite(terms["total"], "the generator loss", self.step, self.last_good)
            self.g_opt.zero_grad(set_to_none=True)
            terms["total"].backward()
        finally:
            self.discriminator.requires_grad_(True)
        self._clip(self.generator)
        self.g_opt.step()
        if self.ema is not None:
            self.ema.update(self.generator)
        return {k: float(v.detach()) for k, v in terms.items()}

    # ----------------------------------------------------------------------- evaluation
    def _eval_model(self) -> nn.Module:
        return self.ema.module if self.ema is not None else self.generator

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """PSNR, SSIM (project convention) and the hallucination number (mean |log10| of the
        SR/HR power-spectrum ratio, :func:`lenssr.evaluation.spectrum.hallucination_number`,
        here on normalised images) of the EMA generator on the validation images."""
        from lenssr.evaluation.spectrum import hallucination_number
        from lenssr.training.losses import psnr_batch, ssim_torch

        model = self._eval_model()
        was = model.training
        model.eval()
        loader = DataLoader(self.val_ds, batch_size=self.cfg["val"]["batch_size"], shuffle=False)
        psnrs, ssims, srs, hrs = [], [], [], []
        for lr, hr in loader:
            sr = self._sr(model, lr.to(self.device)).float()
            hr = hr.to(self.device).float()
            psnrs.append(psnr_batch(sr, hr).double().cpu())
            if min(hr.shape[-2:]) >= 7:
                ssims.append(ssim_torch(sr, hr).double().cpu())
            srs.append(sr[:, 0].cpu().numpy())
            hrs.append(hr[:, 0].cpu().numpy())
        model.train(was)
        p = torch.cat(psnrs)
        p = p[torch.isfinite(p)]
        return {
            "val_psnr": float(p.mean()) if len(p) else float("inf"),
            "val_ssim": float(torch.cat(ssims).mean()) if ssims else float("nan"),
            "val_hallucination": hallucination_number(np.concatenate(srs), np.concatenate(hrs)),
        }

    # ----------------------------------------------------------------------- checkpoints
    def _extra(self, metrics: dict[str, float] | None) -> dict[str, Any]:
        from lenssr.data import Normalization

        gcfg = self.cfg["gan"]
        return {
            "normalization": Normalization().to_dict(),
            "training": {
                "kind": "gan",
                "config": self.cfg,
                "data": self.data_info,
                "step": self.step,
                "wall_time_s": round(self._elapsed(), 2),
                "weights": "ema" if self.ema is not None else "raw",
                "init": self.cfg["init"],
                "discriminator": gcfg["discriminator"],
                "adversarial": gcfg["adversarial"],
                "perceptual": self.perceptual_kind,
                "device": str(self.device),
            },
            "metrics": metrics or {},
        }

    def _save(self, name: str, metrics: dict[str, float] | None) -> Path | None:
        from lenssr.models import save_checkpoint

        model = self._eval_model()
        if not weights_finite(model):
            return None  # never overwrite a good checkpoint with non-finite weights
        return save_checkpoint(self.out / name, model, self._extra(metrics))

    def _checkpoint(self, writer: Any) -> None:
        metrics = None
        if self.val_ds is not None:
            metrics = {"step": self.step, **self.validate()}
            self.history.append(metrics)
            if writer is not None:
                for key, value in metrics.items():
                    if key != "step":
                        writer.add_scalar(f"val/{key.removeprefix('val_')}", value, self.step)
        self.last_metrics = metrics
        after_checkpoint(self, self._save("last", metrics), metrics)

    def _state(self) -> dict[str, Any]:
        """Everything besides the config that an exact resume needs (``last.safetensors`` holds
        the EMA generator, so the raw one is stored here)."""
        return loop_state(
            self,
            last_metrics=self.last_metrics,
            generator=self.generator.state_dict(),
            discriminator=self.discriminator.state_dict(),
            g_opt=self.g_opt.state_dict(),
            d_opt=self.d_opt.state_dict(),
            gp_gen=self.gp_gen.get_state(),
        )

    def _load_state(self) -> None:
        """Continue from ``last.state.pt`` (``--resume``)."""
        state = load_state(self.out)
        try:
            self.generator.load_state_dict(state["generator"], strict=True)
            self.discriminator.load_state_dict(state["discriminator"], strict=True)
        except RuntimeError as exc:
            raise ConfigError(
                f"--resume: the run in {self.out} does not match the configured generator or "
                f"discriminator ({str(exc).splitlines()[0]})"
            ) from exc
        self.g_opt.load_state_dict(state["g_opt"])
        self.d_opt.load_state_dict(state["d_opt"])
        restore_loop_state(self, state)
        self.last_metrics = state["last_metrics"]
        self.gp_gen.set_state(state["gp_gen"])
        self.last_good = self.out / "last.safetensors"

    # ------------------------------------------------------------------------------ loop
    def _elapsed(self) -> float:
        return self.elapsed_before + time.monotonic() - self.t0

    def _progress(self) -> float:
        budget = self.cfg["budget"]
        total = self.cfg["schedule"]["total_steps"] or budget["steps"]
        parts = [self.step / total] if total else []
        if budget["minutes"]:
            parts.append(self._elapsed() / (60.0 * budget["minutes"]))
        return max(parts)

    def _done(self) -> bool:
        budget = self.cfg["budget"]
        if budget["steps"] is not None and self.step >= budget["steps"]:
            return True
        return budget["minutes"] is not None and self._elapsed() >= 60 * budget["minutes"]

    def run(self) -> Path:
        """Train within the budget; returns ``<dir>/generator.safetensors``."""
        from lenssr.device import resolve_device, set_cpu_threads
        from lenssr.progress import progress_bar

        self.device = resolve_device(self.cfg["device"])
        set_cpu_threads(self.device, self.cfg["threads"])
        check_output_dir(self.out, self.resume, "generator.safetensors")
        self.out.mkdir(parents=True, exist_ok=True)
        seed = int(self.cfg["seed"])
        torch.manual_seed(seed)
        self._setup_data()
        self._setup_models()
        dcfg = self.cfg["data"]
        self.batches = ResumableBatches(
            self.train_ds, dcfg["batch_size"], seed, int(dcfg["num_workers"])
        )
        self.gp_gen = torch.Generator().manual_seed(seed + 2)
        self.last_good: Path | None = None
        self.last_metrics: dict[str, float] | None = None
        self.elapsed_before = 0.0
        if self.resume:
            self._load_state()
        else:
            (self.out / "config.yaml").write_text(yaml.safe_dump(self.cfg, sort_keys=False))
        self.t0 = time.monotonic()
        self.current_lr = 0.0
        gcfg = self.cfg["gan"]
        writer = None
        if self.cfg["log"]["tensorboard"]:
            from torch.utils.tensorboard import SummaryWriter

            writer = SummaryWriter(str(self.out / "tb"))
        every_val = int(self.cfg["val"]["every_steps"])
        every_log = int(self.cfg["log"]["every_steps"])
        disc_name = gcfg["discriminator"]["name"]
        self._say(
            f"GAN fine-tuning {getattr(self.generator, 'arch_name', 'model')} "
            f"(init {self.cfg['init'] or 'none'}) vs {disc_name}, {gcfg['adversarial']} loss, "
            f"perceptual {self.perceptual_kind}, {self.data_info['n_train']} pairs "
            f"({self.device}) -> {self.out}"
        )
        batches = ((lr.to(self.device), hr.to(self.device)) for lr, hr, *_ in iter(self.batches))
        g_smooth = d_smooth = None
        try:
            with progress_bar(
                self.cfg["budget"]["steps"], f"gan {disc_name}", enabled=not self.quiet
            ) as advance:
                if self.step:
                    advance(self.step)
                done = self._done()
                while not done:
                    self._set_lr()
                    for _ in range(int(gcfg["d_steps"])):
                        lr, hr = next(batches)
                        d_loss, d_logs = self.discriminator_step(lr, hr)
                    g_terms = self.generator_step(lr, hr)
                    self.step += 1
                    self.g_losses.append(g_terms["total"])
                    self.d_losses.append(d_loss)
                    g_smooth = g_terms["total"] if g_smooth is None else g_smooth
                    d_smooth = d_loss if d_smooth is None else d_smooth
                    g_smooth = 0.9 * g_smooth + 0.1 * g_terms["total"]
                    d_smooth = 0.9 * d_smooth + 0.1 * d_loss
                    if writer is not None and self.step % every_log == 0:
                        writer.add_scalar("train/d_loss", d_loss, self.step)
                        for key, value in g_terms.items():
                            writer.add_scalar(f"train/g_{key}", value, self.step)
                        for key, value in d_logs.items():
                            writer.add_scalar(f"train/{key}", value, self.step)
                        writer.add_scalar("train/lr", self.current_lr, self.step)
                    done = self._done()
                    if self.step % every_val == 0 or done:
                        self._checkpoint(writer)
                    advance(1, f"G {g_smooth:.4g}  D {d_smooth:.4g}")
        finally:
            if writer is not None:
                writer.close()
        result = self._save("generator", self.last_metrics)
        if result is None:
            raise LenssrError(
                f"the final generator weights are not finite; last good checkpoint kept: "
                f"{self.last_good}"
            )
        self._say(f"done: {self.step} steps in {self._elapsed():.0f} s; generator {result}")
        return result


def train_gan(
    config: dict[str, Any],
    *,
    vgg_weights: str | Path | None = None,
    init: str | Path | None = None,
    out: str | Path | None = None,
    device: str | None = None,
    quiet: bool = False,
    resume: bool = False,
    on_validation: ValidationCallback | None = None,
) -> Path:
    """GAN fine-tuning as ``config`` says; returns ``generator.safetensors``, a normal
    checkpoint of the generator's architecture (loadable by ``lenssr.inference.load_model``).

    ``resume`` continues an interrupted run exactly; ``on_validation(step, metrics)`` is called
    after each validation and may raise to end the run (see :class:`GANTrainer`)."""
    trainer = GANTrainer(
        config,
        vgg_weights=vgg_weights,
        init=init,
        out=out,
        device=device,
        quiet=quiet,
        resume=resume,
        on_validation=on_validation,
    )
    return trainer.run()
