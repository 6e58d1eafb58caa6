"""Self-supervised pretraining of the hybrid as a denoising autoencoder (``lenssr pretrain``):
task ``denoise``.

The pretext task: corrupt a normalised LR batch with one of the noise models of
:mod:`lenssr.training.noise` (type and intensity drawn per batch), run the hybrid's encoder
(:meth:`HybridSR.encode`: convolutional, residual and transformer stages) and decoder
(:meth:`HybridSR.decode_pyramid`: the progressive upsampling head), and compare with a clean
target under ``loss.type`` (default ``mse_ssim``: ``MSE + w * (1 - SSIM)``).

Targets (``pretrain.target``):

``lr`` (pure self-supervision, LR images only, any source :func:`lenssr.data.open_images`
    reads, unpaired real observations included). Each decoder output at scale ``s`` is reduced
    back to LR size by ``s x s`` block means (:func:`lenssr.training.losses.downsample_to`)
    and compared with the clean LR. We chose block-mean downsampling over a separate scale-1
    reconstruction head because (1) it trains exactly the weights fine-tuning uses, so the
    checkpoint is a plain hybrid checkpoint that ``lenssr train --init`` loads *strictly*
    (an extra head would have to be dropped, and the upsampling head would stay untrained);
    (2) the block mean of an HR surface-brightness image is its noiseless LR observation on
    the same grid (flux conservation, the same operator as ``degrade_array(noise=False)``
    without the PSF), so the pretext output is already a physically meaningful SR image.
``hr`` (when pairs exist): noisy LR in, the x``s`` output compared with the HR image
    (:func:`lenssr.training.losses.pyramid_loss`).

The result is ``pretrained.*``: the EMA weights with the lowest validation loss, a normal
hybrid checkpoint for ``lenssr train --init`` and ``lenssr gan``.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from lenssr.errors import ConfigError
from lenssr.training.engine import TASKS, Task
from lenssr.training.noise import DEFAULT_INTENSITY, NOISE_FUNCTIONS, NoiseSampler

#: The ``pretrain:`` section (all other sections are the supervised trainer's).
PRETRAIN_DEFAULTS: dict[str, Any] = {
    "target": "lr",  # lr (clean LR, self-supervised) | hr (needs LR/HR pairs)
    "levels": None,  # lr target: pyramid levels in the loss; default: up to model.scale
    "noise": {
        "types": list(NOISE_FUNCTIONS),
        "probabilities": None,  # one weight per type; equal when null
        **{k: list(v) for k, v in DEFAULT_INTENSITY.items()},
    },
}

#: Defaults that differ from the supervised trainer's.
_SECTION_DEFAULTS: dict[str, Any] = {
    "loss": {"type": "mse_ssim", "ssim_weight": 0.1},
    "checkpoint": {"dir": "runs/pretrain"},
}


def unknown_keys(section: dict[str, Any], known: dict[str, Any], prefix: str) -> None:
    """A one-line :class:`ConfigError` naming the keys of ``section`` not in ``known``."""
    bad = sorted(set(section) - set(known))
    if bad:
        raise ConfigError(
            f"unknown config key(s) {', '.join(prefix + b for b in bad)} "
            f"(known: {', '.join(known)})"
        )


def split_section(config: Any, name: str, what: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(config without section name, the section)`` of a task config (deep copies)."""
    if not isinstance(config, dict):
        raise ConfigError(f"a {what} config must be a mapping of sections")
    raw = copy.deepcopy(config)
    section = raw.pop(name, None) or {}
    if not isinstance(section, dict):
        raise ConfigError(f"{name} must be a mapping")
    return raw, section


def validate_pretrain_config(config: dict[str, Any], origin: str = "") -> dict[str, Any]:
    """Check a pretraining config and fill in defaults; returns the full config.

    The ``pretrain`` section is checked here, everything else by the supervised trainer's
    :func:`~lenssr.training.config.validate_config`. Raises :class:`ConfigError`.
    """
    from lenssr.training.config import merge, validate_config

    raw, section = split_section(config, "pretrain", "pretraining")
    unknown_keys(section, PRETRAIN_DEFAULTS, "pretrain.")
    noise = section.get("noise") or {}
    if not isinstance(noise, dict):
        raise ConfigError("pretrain.noise must be a mapping")
    unknown_keys(noise, PRETRAIN_DEFAULTS["noise"], "pretrain.noise.")
    pre = merge(PRETRAIN_DEFAULTS, section)
    if pre["target"] not in ("lr", "hr"):
        raise ConfigError(f"pretrain.target must be lr or hr, got {pre['target']!r}")
    levels = pre["levels"]
    if levels is not None and (isinstance(levels, bool) or not isinstance(levels, int)):
        raise ConfigError(f"pretrain.levels must be a positive integer or null, got {levels!r}")
    if levels is not None and levels < 1:
        raise ConfigError(f"pretrain.levels must be >= 1, got {levels}")
    make_noise_sampler(pre["noise"])  # raises on bad types, ranges, probabilities
    full = validate_config(merge(_SECTION_DEFAULTS, raw), origin)
    full["pretrain"] = pre
    return full


def make_noise_sampler(cfg: dict[str, Any]) -> NoiseSampler:
    """The :class:`NoiseSampler` of a ``pretrain.noise`` section."""
    intensities = {k: v for k, v in cfg.items() if k in NOISE_FUNCTIONS}
    return NoiseSampler(cfg["types"], intensities, cfg.get("probabilities"))


def denoising_outputs(model: nn.Module, noisy: Tensor, levels: int) -> list[Tensor]:
    """Decoder outputs ``[x2, x4, ...]`` (``levels`` of them) for a noisy LR batch."""
    return model.decode_pyramid(model.encode(noisy), noisy, levels)


def self_supervised_loss(outputs: list[Tensor], clean: Tensor, loss_fn: Any) -> Tensor:
    """Mean over levels of ``loss(block_mean(out_s), clean_lr)``: each output ``(B, 1, s*h,
    s*w)`` is reduced to ``(B, 1, h, w)`` by ``s x s`` block means before the comparison."""
    from lenssr.training.losses import downsample_to

    size = tuple(clean.shape[-2:])
    losses = [loss_fn(downsample_to(o.float(), size), clean.float()) for o in outputs]
    return torch.stack(losses).mean()


@TASKS.register("denoise")
class DenoiseTask(Task):
    """Denoising-autoencoder pretraining (see the module docstring)."""

    section = "pretrain"
    result = "pretrained"
    best_metric = ("val_loss", "min")
    verb = "pretrain"

    validate_config = staticmethod(validate_pretrain_config)

    def __init__(self, engine: Any) -> None:
        super().__init__(engine)
        self.target = self.cfg["pretrain"]["target"]
        self.noise_gen = torch.Generator().manual_seed(int(self.cfg["seed"]) + 1)
        self.last_noise = ("", 0.0)

    def _dataset(self, source: Any, indices: list[int], augment: bool) -> Any:
        from lenssr.data import LRDataset, Normalization, PairDataset

        cls = PairDataset if self.target == "hr" else LRDataset
        return cls(
            source,
            indices=indices,
            patch_size=self.cfg["data"]["patch_size"],
            augment=augment,
            normalization=Normalization(),
            seed=int(self.cfg["seed"]),
        )

    def datasets(self) -> tuple[Dataset, Dataset | None, dict[str, Any]]:
        from lenssr.data import open_images, open_pairs, open_train_val

        dcfg = self.cfg["data"]
        opener = open_pairs if self.target == "hr" else open_images
        train_src, val_src, train_idx, val_idx = open_train_val(
            dcfg, opener, int(self.cfg["seed"]), self.cfg["val"]["max_images"],
            "LR images: .h5, folder, .zip or file",
        )  # fmt: skip
        train_ds = self._dataset(train_src, train_idx, bool(dcfg["augment"]))
        val_ds = self._dataset(val_src, val_idx, False) if val_idx else None
        self.data_scale = int(getattr(train_src, "scale", 0) or 0)
        info = self.data_info(len(train_ds), len(val_idx))
        return train_ds, val_ds, {**info, "target": self.target}

    def build(self) -> None:
        from lenssr.training.losses import make_pixel_loss
        from lenssr.training.tasks.supervised import build_model, load_init_weights

        name = self.cfg["model"]["name"]
        model = build_model(self.cfg["model"])
        if not (hasattr(model, "encode") and hasattr(model, "decode_pyramid")):
            raise ConfigError(f"pretraining needs an encoder/decoder model (hybrid), not {name!r}")
        scales = tuple(model.scales)
        if self.target == "hr":
            if self.data_scale not in scales:
                raise ConfigError(
                    f"model {name!r} supports x{scales} but the pairs are x{self.data_scale}"
                )
            self.levels = scales.index(self.data_scale) + 1
        else:
            default = scales.index(model.scale) + 1
            self.levels = self.cfg["pretrain"]["levels"] or default
            if self.levels > len(scales):
                raise ConfigError(
                    f"pretrain.levels {self.levels} > the model's {len(scales)} pyramid levels"
                )
        if self.cfg["init"] and not self.engine.resume:
            load_init_weights(model, self.cfg["init"], bool(self.cfg["init_strict"]))
        self.model = model.to(self.engine.device)
        self.loss_fn = make_pixel_loss(self.cfg["loss"])
        self.noise = make_noise_sampler(self.cfg["pretrain"]["noise"])
        self.engine.add_optimizer("model", self.model, self.cfg["optim"])

    def loss(self, model: nn.Module, batch: Any, generator: torch.Generator) -> Tensor:
        """The denoising loss of ``model`` on one batch (noise drawn with ``generator``)."""
        from lenssr.training.losses import pyramid_loss

        device = self.engine.device
        with self.engine.autocast():
            if self.target == "hr":
                lr, hr = (t.to(device) for t in batch)
                noisy, _, _ = self.noise(lr, generator)
                return pyramid_loss(denoising_outputs(model, noisy, self.levels), hr, self.loss_fn)
            clean = batch.to(device)
            noisy, name, intensity = self.noise(clean, generator)
            self.last_noise = (name, intensity)
            outputs = denoising_outputs(model, noisy, self.levels)
            return self_supervised_loss(outputs, clean, self.loss_fn)

    def train_step(self, batches: Iterator[Any]) -> dict[str, float]:
        loss = self.loss(self.model, next(batches), self.noise_gen)
        return {"loss": self.engine.optimize(loss, "model", "the denoising loss")}

    def validate(self, model: nn.Module) -> dict[str, float]:
        """Mean denoising loss on the validation patches, with the same noise draws at every
        validation (a fixed generator), and the loss of the noisy input itself
        (``val_noisy_loss``, ``lr`` target only) as the do-nothing reference."""
        device = self.engine.device
        gen = torch.Generator().manual_seed(int(self.cfg["seed"]) + 7919)
        val_ds = self.engine.val_ds
        loader = DataLoader(val_ds, batch_size=self.cfg["val"]["batch_size"], shuffle=False)
        total, ref, n = 0.0, 0.0, 0
        for batch in loader:
            state = gen.get_state()
            b = len(batch[0]) if self.target == "hr" else len(batch)
            total += float(self.loss(model, batch, gen)) * b
            if self.target == "lr":
                gen.set_state(state)  # the same noise draw as the model saw
                noisy, _, _ = self.noise(batch.to(device), gen)
                ref += float(self.loss_fn(noisy, batch.to(device))) * b
            n += b
        out = {"val_loss": total / n}
        if self.target == "lr":
            out["val_noisy_loss"] = ref / n
        return out

    def descriptor(self, metrics: dict[str, float] | None) -> dict[str, Any]:
        extra = super().descriptor(metrics)
        extra["training"] = {"kind": "pretrain"}
        return extra

    def summary(self) -> str:
        return (
            f"pretraining {self.cfg['model']['name']} (denoising, target {self.target}, "
            f"{self.levels} level(s)) on {self.engine.data_info['n_train']} images"
        )

    def state_dict(self) -> dict[str, Any]:
        return {"noise_gen": self.noise_gen.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.noise_gen.set_state(state["noise_gen"])
