"""Supervised SR training on LR/HR pairs (``lenssr train``): task ``supervised``.

Any architecture; the loss is ``loss.type`` (on every pyramid level with ``loss.pyramid``, plus
the Gaussian likelihood of a sigma head with ``loss.sigma_weight``); instrument-conditioned
models get the conditioning vector of every item and record the instrument range they were
trained on. The result is ``best.*``: the EMA weights with the best validation PSNR.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from lenssr.errors import ConfigError, LenssrError
from lenssr.training.engine import TASKS, Task


class _Forward(nn.Module):
    """The model's plain forward, its forward at ``scale``, its pyramid or its sigma head."""

    def __init__(
        self, model: nn.Module, scale: int | None, pyramid: bool, with_sigma: bool = False
    ) -> None:
        super().__init__()
        self.model = model
        self.scale = scale
        self.pyramid = pyramid
        self.with_sigma = with_sigma

    def forward(self, x: Tensor, cond: Tensor | None = None) -> Tensor | list[Tensor]:
        kw = {} if cond is None else {"cond": cond}
        if self.pyramid:
            return list(self.model.forward_pyramid(x, **kw))
        if self.with_sigma:
            return self.model.forward_with_sigma(x, scale=self.scale, **kw)
        if self.scale is None:
            return self.model(x, **kw)
        return self.model(x, scale=self.scale, **kw)


def _read_state_dict(path: Path) -> dict[str, Tensor]:
    """Weights from a lenssr checkpoint, a bare ``.safetensors`` or a torch ``.pt/.pth/.ckpt``."""
    if not path.exists():
        raise ConfigError(f"init weights not found: {path}")
    try:
        if path.suffix in (".safetensors", ".json") or path.with_suffix(".safetensors").exists():
            from safetensors.torch import load_file

            return load_file(str(path.with_suffix(".safetensors")), device="cpu")
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the user's to fix
        raise ConfigError(f"cannot read init weights {path}: {exc}") from exc
    for key in ("model", "state_dict", "ema"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise ConfigError(f"{path} holds no state dict of tensors")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def _first_four(items: list[str]) -> str:
    """``a, b, c, d (+n more)``, or ``none``."""
    more = f" (+{len(items) - 4} more)" if len(items) > 4 else ""
    return ", ".join(items[:4]) + more if items else "none"


def load_init_weights(model: nn.Module, path: str | Path, strict: bool = True) -> dict[str, Any]:
    """Load pretrained weights into ``model`` and report what matched.

    ``strict``: every key must exist in both with the same shape, otherwise a one-line
    :class:`ConfigError` lists the missing, unexpected and wrongly shaped keys. Not strict: the
    matching tensors are loaded and the rest are reported in the returned dict
    ``{"loaded", "missing", "unexpected", "shape_mismatch"}`` (lists of key names).
    """
    path = Path(path)
    state = _read_state_dict(path)
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    mismatch = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    loaded = sorted(k for k in set(own) & set(state) if own[k].shape == state[k].shape)
    report = {
        "loaded": loaded,
        "missing": missing,
        "unexpected": unexpected,
        "shape_mismatch": [
            f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in mismatch
        ],
    }
    if strict and (missing or unexpected or mismatch):
        short = _first_four
        raise ConfigError(
            f"--init {path} does not match model '{getattr(model, 'arch_name', '?')}': "
            f"{len(missing)} missing keys ({short(missing)}), {len(unexpected)} unexpected "
            f"({short(unexpected)}), {len(mismatch)} shape mismatches "
            f"({short(report['shape_mismatch'])}); set init_strict: false to load the "
            f"{len(loaded)} matching tensors"
        )
    if not loaded:
        raise ConfigError(f"--init {path}: no tensor matches the model's keys and shapes")
    model.load_state_dict({k: state[k] for k in loaded}, strict=False)
    return report


def init_training(path: str | Path) -> dict[str, Any] | None:
    """How the ``init`` weights were trained, from their descriptor: steps, wall time and
    checkpoint folder, and those of its own init in turn (``init_training``); None when it has
    no lenssr descriptor."""
    from lenssr.models.checkpoint import read_descriptor

    try:
        training = read_descriptor(path).get("training") or {}
    except LenssrError:
        return None
    return {
        "init": str(path),
        "checkpoint_dir": str(Path(path).parent),
        "step": training.get("step"),
        "wall_time_s": training.get("wall_time_s"),
        "init_training": training.get("init_training"),
    }


def build_model(model_cfg: dict[str, Any]) -> nn.Module:
    """The architecture of a config's ``model`` section; a bad key or value is a one-line
    :class:`ConfigError`."""
    from lenssr.models import create_model

    mcfg = dict(model_cfg)
    name = mcfg.pop("name")
    try:
        return create_model(name, **mcfg)
    except ConfigError:
        raise
    except LenssrError as exc:
        raise ConfigError(f"model: {exc}") from exc
    except TypeError as exc:
        raise ConfigError(f"model {name!r}: {exc}") from exc


def check_model_and_mixture(config: dict[str, Any]) -> None:
    """Build the configured model on the ``meta`` device (no memory, no weights) and load the
    instrument-mixture preset, so a bad model key or preset name is a one-line
    :class:`ConfigError` before any data are simulated or read."""
    from lenssr.training.config import validate_config

    cfg = validate_config(config)
    with torch.device("meta"):
        build_model(cfg["model"])
    if cfg["data"]["mixture"]:
        from lenssr.simulation.presets import load_preset

        preset = load_preset(cfg["data"]["mixture"])
        if not preset.config.get("lr_mixture"):
            raise ConfigError(f"data.mixture: preset {preset.name!r} has no lr_mixture section")


def validation_metrics(
    model: nn.Module, loader: DataLoader, device: torch.device, sr: Any
) -> tuple[dict[str, float], list[Tensor], list[Tensor]]:
    """Mean PSNR and SSIM (dB, 1; the evaluation convention) of ``sr(model, batch)`` against
    the batches' HR images; also returns the SR and HR batches. The metric maps SR and HR with
    the HR's min..max, which the affine LR normalisation leaves unchanged, so normalised and
    physical units give equal numbers."""
    from lenssr.training.losses import psnr_batch, ssim_torch

    psnrs, ssims, srs, hrs = [], [], [], []
    for batch in loader:
        out = sr(model, batch).float()
        hr = batch[1].to(device).float()
        psnrs.append(psnr_batch(out, hr).double().cpu())
        if min(hr.shape[-2:]) >= 7:
            ssims.append(ssim_torch(out, hr).double().cpu())
        srs.append(out)
        hrs.append(hr)
    p = torch.cat(psnrs)
    finite = p[torch.isfinite(p)]
    metrics = {
        "val_psnr": float(finite.mean()) if len(finite) else float("inf"),
        "val_ssim": float(torch.cat(ssims).mean()) if ssims else float("nan"),
    }
    return metrics, srs, hrs


@TASKS.register("supervised")
class SupervisedTask(Task):
    """Supervised SR training (see the module docstring)."""

    verb = "train"

    def datasets(self) -> tuple[Dataset, Dataset | None, dict[str, Any]]:
        from lenssr.data import (
            MixturePairDataset,
            Normalization,
            PairDataset,
            open_pairs,
            open_train_val,
        )

        dcfg = self.cfg["data"]
        seed = int(self.cfg["seed"])
        train_src, val_src, train_idx, val_idx = open_train_val(
            dcfg, open_pairs, seed, self.cfg["val"]["max_images"],
            "an .h5 file, DeepLense folder or .zip",
        )  # fmt: skip
        self.data_scale = int(train_src.scale)
        self.normalization = Normalization(dcfg["normalization"])
        self.conditioned = self._conditioned()
        common = {"normalization": self.normalization, "seed": seed}
        if dcfg["mixture"]:
            train_ds = MixturePairDataset(
                train_src, dcfg["mixture"], indices=list(train_idx),
                patch_size=dcfg["patch_size"], augment=bool(dcfg["augment"]), **common,
            )  # fmt: skip
            train_ds.conditioned = self.conditioned
            train_ds.consistency = bool(self.cfg["loss"]["chi2_weight"])
        else:
            train_ds = PairDataset(
                train_src, indices=list(train_idx), patch_size=dcfg["patch_size"],
                augment=bool(dcfg["augment"]), conditioned=self.conditioned, **common,
            )  # fmt: skip
        val_ds = None
        if val_idx:
            val_ds = PairDataset(
                val_src, indices=val_idx, patch_size=None, augment=False,
                conditioned=self.conditioned, **common,
            )  # fmt: skip
        self.instrument_range = self._instrument_range(dcfg, train_ds) if self.conditioned else None
        self.val_loader = (
            DataLoader(val_ds, batch_size=self.cfg["val"]["batch_size"], shuffle=False)
            if val_ds is not None
            else None
        )
        return train_ds, val_ds, self.data_info(len(train_ds), len(val_idx), scale=self.data_scale)

    def _conditioned(self) -> bool:
        """Whether the model takes the instrument as an input (``model.cond_dim > 0``)."""
        return int(self.cfg["model"].get("cond_dim", 0) or 0) > 0

    def _instrument_range(self, dcfg: dict[str, Any], train_ds: Dataset) -> dict[str, Any]:
        """The instrument range the model is trained on (stored in its descriptor): the
        mixture's PSF range and the 1-99% range of the relative noise of 256 training items."""
        n = min(256, len(train_ds))
        conds = np.stack([train_ds[j][2].numpy() for j in range(n)])
        rng: dict[str, Any] = {
            "psf_fwhm_pix": [float(conds[:, 0].min()), float(conds[:, 0].max())],
            "log10_noise": [
                float(np.percentile(conds[:, 1], 1)),
                float(np.percentile(conds[:, 1], 99)),
            ],
        }
        if dcfg["mixture"]:
            from lenssr.simulation.presets import resolve_preset
            from lenssr.simulation.sampling import spec_max

            preset = resolve_preset(dcfg["mixture"])
            spec = preset.config["lr_mixture"]["psf_fwhm_pix"]
            low = min(spec) if isinstance(spec, list) else float(spec)
            rng["psf_fwhm_pix"] = [float(low), spec_max(spec)]
            rng["mixture"] = preset.name
        return rng

    def build(self) -> None:
        from lenssr.training.losses import SRLoss

        engine = self.engine
        name = self.cfg["model"]["name"]
        model = build_model(self.cfg["model"])
        scales = tuple(getattr(model, "scales", (model.scale,)))
        if self.data_scale == model.scale:
            fwd_scale = None
        elif self.data_scale in scales:
            fwd_scale = self.data_scale
        else:
            raise ConfigError(
                f"model {name!r} upscales x{model.scale} (supports {scales}) but the data is "
                f"x{self.data_scale}; set model.scale: {self.data_scale}"
            )
        pyramid = bool(self.cfg["loss"]["pyramid"])
        if pyramid and not hasattr(model, "forward_pyramid"):
            raise ConfigError(f"loss.pyramid needs a pyramid model (lapsrn, hybrid), not {name!r}")
        self.init_report: dict[str, int] | None = None
        if self.cfg["init"] and not engine.resume:
            report = load_init_weights(model, self.cfg["init"], bool(self.cfg["init_strict"]))
            skipped = len(report["missing"]) + len(report["unexpected"])
            skipped += len(report["shape_mismatch"])
            engine.say(
                f"init: loaded {len(report['loaded'])} tensors from {self.cfg['init']}"
                + (f", {skipped} not matched: {report}" if skipped else "")
            )
            self.init_report = {k: len(v) for k, v in report.items()}
        self.model = model.to(engine.device)
        with_sigma = bool(getattr(model, "has_sigma", False)) and not pyramid
        self.net = _Forward(self.model, fwd_scale, pyramid, with_sigma)
        self.eval_forward = _Forward(self.model, fwd_scale, pyramid=False)
        self.criterion = SRLoss(self.cfg["loss"])
        self.feature_loss = None
        if self.cfg["loss"]["feature_weight"]:
            from lenssr.training.science_losses import build_feature_loss

            start = None  # the init weights themselves, also when resuming
            if self.cfg["init"] and self.cfg["loss"]["features"] == "encoder":
                start = build_model(self.cfg["model"])
                load_init_weights(start, self.cfg["init"], bool(self.cfg["init_strict"]))
            self.feature_loss = build_feature_loss(str(self.cfg["loss"]["features"]), start)
            self.feature_loss.to(engine.device)
        engine.add_optimizer("model", self.model, self.cfg["optim"])

    def train_step(self, batches: Iterator[Any]) -> dict[str, float]:
        device = self.engine.device
        lr, hr, *rest = (t.to(device, non_blocking=True) for t in next(batches))
        cond = rest[:1] if self.conditioned else []
        lcfg = self.cfg["loss"]
        logs: dict[str, float] = {}
        with self.engine.autocast():
            out = self.net(lr, *cond)
            loss = self.criterion(out, hr)
            if lcfg["chi2_weight"] or self.feature_loss is not None:
                sr = out[:, :1] if not isinstance(out, list) else out[-1][:, :1]
            if lcfg["chi2_weight"]:
                from lenssr.inference.consistency import chi2_loss

                noise, blur = rest[len(cond)], rest[len(cond) + 1]
                chi2 = chi2_loss(sr, lr, noise, self.data_scale, blur, margin=None, excess=True)
                loss = loss + lcfg["chi2_weight"] * chi2
                logs["chi2_excess"] = float(chi2.detach())
            if self.feature_loss is not None:
                feat = self.feature_loss(sr, hr)
                loss = loss + lcfg["feature_weight"] * feat
                logs["feature"] = float(feat.detach())
        return {"loss": self.engine.optimize(loss, "model"), **logs}

    def _sr_batch(self, model: nn.Module, batch: Any) -> Tensor:
        device = self.engine.device
        fwd = _Forward(model, self.eval_forward.scale, pyramid=False)
        cond = batch[2].to(device) if len(batch) > 2 else None
        return fwd(batch[0].to(device), cond)

    def validate(self, model: nn.Module) -> dict[str, float]:
        """Mean PSNR and SSIM (dB, 1) on the validation images, and their number."""
        metrics, _, _ = validation_metrics(
            model, self.val_loader, self.engine.device, self._sr_batch
        )
        metrics["val_images"] = len(self.val_loader.dataset)
        return metrics

    def descriptor(self, metrics: dict[str, float] | None) -> dict[str, Any]:
        import math

        extra: dict[str, Any] = {"normalization": self.normalization.to_dict()}
        if self.conditioned:
            from lenssr.data.conditioning import CONDITION_NAMES

            extra["conditioning"] = {
                "inputs": list(CONDITION_NAMES),
                "range": self.instrument_range,
            }
        best = self.engine.best
        extra["training"] = {"best_val_psnr": best if math.isfinite(best) else None}
        if self.cfg["init"]:
            extra["training"]["init_training"] = init_training(self.cfg["init"])
        return extra

    def summary(self) -> str:
        info = self.engine.data_info
        return (
            f"training {self.cfg['model']['name']} on {info['n_train']} images (x{self.data_scale})"
        )
