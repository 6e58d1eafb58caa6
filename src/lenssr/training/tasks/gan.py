"""GAN fine-tuning of the (pretrained) hybrid (``lenssr gan``): task ``gan``.

Generator: the checkpoint named by ``init`` (normally ``lenssr pretrain`` then ``lenssr train
--init`` output; its architecture comes from its descriptor), or a fresh ``model`` when
``init`` is null. Discriminator: ``gan.discriminator`` (``patchgan`` or ``srgan``, see
:mod:`lenssr.training.discriminators`). Per generator step, ``gan.d_steps`` discriminator steps
(each on its own batch), then the generator loss::

    weights.pixel * loss.type(SR, HR)                      (l1 | mse | charbonnier | mse_ssim)
  + weights.perceptual * criterion(phi(SR), phi(HR))       (phi: VGG-19 with --vgg-weights,
                                                            else the frozen pretrained encoder)
  + weights.adversarial * adversarial generator loss       (vanilla | relativistic | wgan-gp)

The other sections (data, optim = the generator's optimiser, schedule, ema, ...) are the
supervised trainer's. ``last.*`` holds the EMA generator at the latest validation, the result
``generator.*`` the EMA generator at the end of the run; ``last.state.pt`` the raw generator,
the discriminator and both optimisers.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from lenssr.errors import ConfigError
from lenssr.training.adversarial import ADVERSARIAL, AdversarialLoss
from lenssr.training.engine import TASKS
from lenssr.training.tasks.denoise import split_section, unknown_keys
from lenssr.training.tasks.supervised import SupervisedTask, build_model, validation_metrics

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

    raw, section = split_section(config, "gan", "GAN")
    for key in ("weights", "perceptual"):
        if not isinstance(section.get(key, {}), dict):
            raise ConfigError(f"gan.{key} must be a mapping")
        unknown_keys(section.get(key, {}), GAN_DEFAULTS[key], f"gan.{key}.")
    unknown_keys(section, GAN_DEFAULTS, "gan.")
    disc = section.get("discriminator") or {}
    if not isinstance(disc, dict):
        raise ConfigError("gan.discriminator must be a mapping (name and its arguments)")
    gan = merge(GAN_DEFAULTS, {k: v for k, v in section.items() if k != "discriminator"})
    gan["discriminator"] = {"name": "patchgan", **disc}
    if gan["adversarial"] not in ADVERSARIAL:
        raise ConfigError(
            f"gan.adversarial {gan['adversarial']!r} unknown (use {', '.join(ADVERSARIAL.names())})"
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


@TASKS.register("gan")
class GanTask(SupervisedTask):
    """GAN fine-tuning (see the module docstring): the supervised task's data, its own models,
    step, validation and descriptor."""

    section = "gan"
    result = "generator"
    best_metric = None
    last_weights = "ema"
    shown = {"G": "g_total", "D": "d_loss"}
    verb = "gan"

    validate_config = staticmethod(validate_gan_config)

    def __init__(self, engine: Any) -> None:
        super().__init__(engine)
        self.gp_gen = torch.Generator().manual_seed(int(self.cfg["seed"]) + 2)

    def _conditioned(self) -> bool:
        """The generator's: from ``init``'s descriptor, else the ``model`` section."""
        if not self.cfg["init"]:
            return super()._conditioned()
        from lenssr.models.checkpoint import read_descriptor

        arch = read_descriptor(self.cfg["init"]).get("arch_config") or {}
        return int(arch.get("cond_dim", 0) or 0) > 0

    def _generator(self) -> nn.Module:
        from lenssr.models import load_checkpoint

        if self.cfg["init"]:
            model, _ = load_checkpoint(self.cfg["init"], map_location="cpu")
            return model
        return build_model(self.cfg["model"])

    def build(self) -> None:
        from lenssr.training.discriminators import create_discriminator
        from lenssr.training.losses import make_pixel_loss
        from lenssr.training.perceptual import EncoderFeatures, PerceptualLoss, VGG19Features

        engine, gcfg = self.engine, self.cfg["gan"]
        generator = self._generator()
        scales = tuple(getattr(generator, "scales", (generator.scale,)))
        if self.data_scale not in scales:
            raise ConfigError(
                f"the generator upscales x{scales} but the pairs are x{self.data_scale}"
            )
        self.model = generator.to(engine.device).train()
        dcfg = dict(gcfg["discriminator"])
        self.discriminator = create_discriminator(dcfg.pop("name"), **dcfg).to(engine.device)
        self.discriminator.train()
        self.adversarial = AdversarialLoss(gcfg["adversarial"], gcfg["gp_weight"])
        self.pixel_loss = make_pixel_loss(self.cfg["loss"])
        self.perceptual: PerceptualLoss | None = None
        pcfg = gcfg["perceptual"]
        self.perceptual_kind = "none"
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
                features = EncoderFeatures(self.model)
                self.perceptual_kind = "encoder"
            self.perceptual = PerceptualLoss(features, pcfg["criterion"]).to(engine.device)
        engine.add_optimizer("generator", self.model, self.cfg["optim"])
        d_optim = {"lr": gcfg["d_lr"], "betas": gcfg["d_betas"], "weight_decay": 0.0}
        engine.add_optimizer("discriminator", self.discriminator, d_optim)

    @property
    def generator(self) -> nn.Module:
        """The generator being trained (raw weights)."""
        return self.model

    def modules(self) -> dict[str, nn.Module]:
        return {"generator": self.model, "discriminator": self.discriminator}

    # ----------------------------------------------------------------------------- steps
    def _sr(self, model: nn.Module, lr: Tensor, cond: Tensor | None = None) -> Tensor:
        kw = {} if cond is None else {"cond": cond}
        if len(model.scales) > 1:
            return model(lr, scale=self.data_scale, **kw)
        return model(lr, **kw)

    def _sr_batch(self, model: nn.Module, batch: Any) -> Tensor:
        device = self.engine.device
        cond = batch[2].to(device) if len(batch) > 2 else None
        return self._sr(model, batch[0].to(device), cond)

    def discriminator_step(
        self, lr: Tensor, hr: Tensor, cond: Tensor | None = None
    ) -> tuple[float, dict[str, float]]:
        """One discriminator update on a batch; returns ``(d_loss, logs)``."""
        with torch.no_grad(), self.engine.autocast():
            fake = self._sr(self.model, lr, cond)
        loss, logs = self.adversarial.discriminator_loss(
            self.discriminator, hr, fake.float(), self.gp_gen
        )
        return self.engine.optimize(loss, "discriminator", "the discriminator loss"), logs

    def generator_losses(
        self, lr: Tensor, hr: Tensor, cond: Tensor | None = None
    ) -> dict[str, Tensor]:
        """The generator's loss terms on a batch: ``pixel``, ``perceptual``, ``adversarial``
        and their weighted sum ``total``."""
        w = self.cfg["gan"]["weights"]
        with self.engine.autocast():
            sr = self._sr(self.model, lr, cond)
        sr = sr.float()
        zero = sr.new_zeros(())
        terms = {"pixel": self.pixel_loss(sr, hr.float())}
        terms["perceptual"] = self.perceptual(sr, hr) if self.perceptual is not None else zero
        terms["adversarial"] = (
            self.adversarial.generator_loss(self.discriminator, hr, sr)
            if w["adversarial"] > 0
            else zero
        )
        terms["total"] = sum(w[k] * terms[k] for k in ("pixel", "perceptual", "adversarial"))
        return terms

    def generator_step(
        self, lr: Tensor, hr: Tensor, cond: Tensor | None = None
    ) -> dict[str, float]:
        """One generator update (discriminator frozen); returns the loss terms."""
        self.discriminator.requires_grad_(False)
        try:
            terms = self.generator_losses(lr, hr, cond)
            self.engine.optimize(terms["total"], "generator", "the generator loss")
        finally:
            self.discriminator.requires_grad_(True)
        return {k: float(v.detach()) for k, v in terms.items()}

    def train_step(self, batches: Iterator[Any]) -> dict[str, float]:
        device = self.engine.device
        for _ in range(int(self.cfg["gan"]["d_steps"])):
            lr, hr, *rest = (t.to(device) for t in next(batches)[:3])
            cond = rest[0] if self.conditioned and rest else None
            d_loss, d_logs = self.discriminator_step(lr, hr, cond)
        g_terms = self.generator_step(lr, hr, cond)
        return {
            **{f"g_{k}": v for k, v in g_terms.items()},
            "d_loss": d_loss,
            **d_logs,
        }

    # ------------------------------------------------------------------------ evaluation
    def validate(self, model: nn.Module) -> dict[str, float]:
        """PSNR, SSIM (project convention) and the hallucination number (mean |log10| of the
        SR/HR power-spectrum ratio, :func:`lenssr.evaluation.spectrum.hallucination_number`,
        here on normalised images) on the validation images."""
        from lenssr.evaluation.spectrum import hallucination_number

        device = self.engine.device
        metrics, srs, hrs = validation_metrics(model, self.val_loader, device, self._sr_batch)
        metrics["val_hallucination"] = hallucination_number(
            np.concatenate([s[:, 0].cpu().numpy() for s in srs]),
            np.concatenate([h[:, 0].cpu().numpy() for h in hrs]),
        )
        return metrics

    def descriptor(self, metrics: dict[str, float] | None) -> dict[str, Any]:
        extra = super().descriptor(metrics)
        gcfg = self.cfg["gan"]
        extra["training"] = {
            "kind": "gan",
            "discriminator": gcfg["discriminator"],
            "adversarial": gcfg["adversarial"],
            "perceptual": self.perceptual_kind,
        }
        return extra

    def summary(self) -> str:
        gcfg = self.cfg["gan"]
        return (
            f"GAN fine-tuning {getattr(self.model, 'arch_name', 'model')} "
            f"(init {self.cfg['init'] or 'none'}) vs {gcfg['discriminator']['name']}, "
            f"{gcfg['adversarial']} loss, perceptual {self.perceptual_kind}, "
            f"{self.engine.data_info['n_train']} pairs"
        )

    def label(self) -> str:
        return f"gan {self.cfg['gan']['discriminator']['name']}"

    def state_dict(self) -> dict[str, Any]:
        return {"gp_gen": self.gp_gen.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.gp_gen.set_state(state["gp_gen"])
