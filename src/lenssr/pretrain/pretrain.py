"""Self-supervised pretraining of the hybrid as a denoising autoencoder.

The pretext task: corrupt a normalised LR batch with one of the noise models of
:mod:`lenssr.pretrain.noise` (type and intensity drawn per batch), run the hybrid's encoder
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

The run reuses the supervised trainer's pieces: config validation
(:func:`lenssr.training.config.validate_config`, with an extra ``pretrain:`` section), AdamW
and the warm-up + cosine schedule, the EMA of the weights, the losses, and
:func:`lenssr.models.save_checkpoint`. Files in ``checkpoint.dir``::

    config.yaml                       the full, validated config
    pretrained.safetensors / .json    EMA weights with the lowest validation loss (the result)
    last.safetensors / .json          the latest raw weights (written every val.every_steps)
    last.state.pt                     what ``--resume`` needs to continue exactly
    tb/                               TensorBoard logs

``on_validation(step, metrics)`` is called after each validation (after the checkpoints are
written); an exception it raises (``optuna.TrialPruned``, ...) ends the run.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import Tensor, nn
from torch.utils.data import DataLoader

from lenssr.errors import ConfigError, LenssrError
from lenssr.pretrain.noise import DEFAULT_INTENSITY, NOISE_FUNCTIONS, NoiseSampler
from lenssr.pretrain.resume import (
    ResumableBatches,
    after_checkpoint,
    check_output_dir,
    load_state,
    loop_state,
    restore_loop_state,
)

#: ``on_validation(step, metrics)``: called after each validation; raising ends the run.
ValidationCallback = Callable[[int, dict[str, float]], None]

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


def validate_pretrain_config(config: dict[str, Any], origin: str = "") -> dict[str, Any]:
    """Check a pretraining config and fill in defaults; returns the full config.

    The ``pretrain`` section is checked here, everything else by the supervised trainer's
    :func:`~lenssr.training.config.validate_config`. Raises :class:`ConfigError`.
    """
    from lenssr.training.config import merge, validate_config

    if not isinstance(config, dict):
        raise ConfigError("a pretraining config must be a mapping of sections")
    raw = copy.deepcopy(config)
    section = raw.pop("pretrain", None) or {}
    if not isinstance(section, dict):
        raise ConfigError("pretrain must be a mapping (target, levels, noise)")
    unknown = sorted(set(section) - set(PRETRAIN_DEFAULTS))
    if unknown:
        raise ConfigError(
            f"unknown config key(s) pretrain.{', pretrain.'.join(unknown)} "
            f"(known: {', '.join(PRETRAIN_DEFAULTS)})"
        )
    noise = section.get("noise") or {}
    if not isinstance(noise, dict):
        raise ConfigError("pretrain.noise must be a mapping")
    bad = sorted(set(noise) - set(PRETRAIN_DEFAULTS["noise"]))
    if bad:
        raise ConfigError(
            f"unknown config key(s) pretrain.noise.{', pretrain.noise.'.join(bad)} "
            f"(known: {', '.join(PRETRAIN_DEFAULTS['noise'])})"
        )
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


def load_pretrain_config(path: str | Path, overrides: list[str] | None = None) -> dict[str, Any]:
    """Read a pretraining YAML (``defaults:`` includes allowed), apply ``key=value``
    overrides and validate it (see :func:`validate_pretrain_config`)."""
    from lenssr.training.config import apply_overrides, read_yaml

    raw = apply_overrides(read_yaml(Path(path)), overrides)
    return validate_pretrain_config(raw, origin=str(path))


def make_noise_sampler(cfg: dict[str, Any]) -> NoiseSampler:
    """The :class:`NoiseSampler` of a ``pretrain.noise`` section."""
    intensities = {k: v for k, v in cfg.items() if k in NOISE_FUNCTIONS}
    return NoiseSampler(cfg["types"], intensities, cfg.get("probabilities"))


def check_finite(value: Tensor, what: str, step: int, last_good: Path | None) -> None:
    """Stop training with a one-line :class:`LenssrError` when ``value`` is NaN or inf."""
    if torch.isfinite(value).all():
        return
    kept = f"last good checkpoint kept: {last_good}" if last_good else "no checkpoint saved yet"
    raise LenssrError(
        f"{what} is {float(value.detach().float().mean())} at step {step}; training stopped "
        f"({kept}); lower the learning rate or the loss weights"
    )


def weights_finite(model: nn.Module) -> bool:
    """True when every parameter and buffer of ``model`` is finite."""
    return all(bool(torch.isfinite(t).all()) for t in model.state_dict().values())


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


class Pretrainer:
    """One denoising-pretraining run; :meth:`run` returns ``pretrained.safetensors``.

    ``config``: a (partial) config dict (validated here); ``out`` overrides
    ``checkpoint.dir``, ``device`` overrides ``config["device"]``; ``quiet`` silences it.
    ``resume`` continues the run in ``checkpoint.dir`` exactly from its ``last.state.pt``.
    ``on_validation(step, metrics)`` is called after each validation; any exception it raises
    ends the run (the checkpoints of that validation are written first).
    """

    def __init__(
        self,
        config: dict[str, Any],
        *,
        out: str | Path | None = None,
        device: str | None = None,
        quiet: bool = False,
        resume: bool = False,
        on_validation: ValidationCallback | None = None,
    ) -> None:
        cfg = validate_pretrain_config(config)
        if out is not None:
            cfg["checkpoint"]["dir"] = str(out)
        if device is not None:
            cfg["device"] = device
        self.cfg = cfg
        self.out = Path(cfg["checkpoint"]["dir"])
        self.quiet = quiet
        self.resume = resume
        self.on_validation = on_validation
        self.losses: list[float] = []  # training loss per step (of this process)
        self.history: list[dict[str, float]] = []  # validation results
        self.step = 0

    def _say(self, msg: str) -> None:
        if not self.quiet:
            from rich.console import Console

            Console(stderr=True).print(msg, highlight=False)

    # ----------------------------------------------------------------------------- setup
    def _open(self, source: str) -> Any:
        from lenssr.data import open_images, open_pairs

        return open_pairs(source) if self.target == "hr" else open_images(source)

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

    def _setup_data(self) -> None:
        from lenssr.data import open_train_val

        dcfg = self.cfg["data"]
        train_src, val_src, train_idx, val_idx = open_train_val(
            dcfg, self._open, int(self.cfg["seed"]), self.cfg["val"]["max_images"],
            "LR images: .h5, folder, .zip or file",
        )  # fmt: skip
        self.train_ds = self._dataset(train_src, train_idx, bool(dcfg["augment"]))
        self.val_ds = self._dataset(val_src, val_idx, False) if val_idx else None
        bs = dcfg["batch_size"]
        if len(self.train_ds) < bs:
            raise ConfigError(
                f"data.batch_size {bs} is larger than the {len(self.train_ds)} training images"
            )
        self.data_scale = int(getattr(train_src, "scale", 0) or 0)
        self.data_info = {
            "train": str(dcfg["train"]),
            "val": str(dcfg["val"]) if dcfg["val"] else f"val_fraction={dcfg['val_fraction']}",
            "n_train": len(self.train_ds),
            "n_val": len(val_idx),
            "patch_size_lr": dcfg["patch_size"],
            "target": self.target,
        }

    def _setup_model(self) -> None:
        from lenssr.models import create_model
        from lenssr.training.losses import make_pixel_loss
        from lenssr.training.optim import EMA, make_optimizer
        from lenssr.training.trainer import load_init_weights

        mcfg = dict(self.cfg["model"])
        name = mcfg.pop("name")
        try:
            model = create_model(name, **mcfg)
        except ConfigError:
            raise
        except LenssrError as exc:
            raise ConfigError(f"model: {exc}") from exc
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
        if self.cfg["init"]:
            load_init_weights(model, self.cfg["init"], bool(self.cfg["init_strict"]))
        self.model = model.to(self.device)
        decay = self.cfg["ema"]["decay"]
        self.ema = EMA(self.model, decay) if decay else None
        self.optimizer = make_optimizer(self.model, self.cfg["optim"])
        self.loss_fn = make_pixel_loss(self.cfg["loss"])
        self.noise = make_noise_sampler(self.cfg["pretrain"]["noise"])

    # ---------------------------------------------------------------------------- steps
    def loss(self, model: nn.Module, batch: Any, generator: torch.Generator) -> Tensor:
        """The denoising loss of ``model`` on one batch (noise drawn with ``generator``)."""
        from lenssr.training.losses import pyramid_loss

        if self.target == "hr":
            lr, hr = (t.to(self.device) for t in batch)
            noisy, _, _ = self.noise(lr, generator)
            outputs = denoising_outputs(model, noisy, self.levels)
            return pyramid_loss(outputs, hr, self.loss_fn)
        clean = batch.to(self.device)
        noisy, name, intensity = self.noise(clean, generator)
        self.last_noise = (name, intensity)
        return self_supervised_loss(
            denoising_outputs(model, noisy, self.levels), clean, self.loss_fn
        )

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Mean denoising loss of the EMA model on the validation patches, with the same noise
        draws at every validation (a fixed generator), and the loss of the noisy input itself
        (``val_noisy_loss``, ``lr`` target only) as the do-nothing reference."""
        model = self._eval_model()
        was = model.training
        model.eval()
        gen = torch.Generator().manual_seed(int(self.cfg["seed"]) + 7919)
        loader = DataLoader(self.val_ds, batch_size=self.cfg["val"]["batch_size"], shuffle=False)
        total, ref, n = 0.0, 0.0, 0
        for batch in loader:
            state = gen.get_state()
            b = len(batch[0]) if self.target == "hr" else len(batch)
            total += float(self.loss(model, batch, gen)) * b
            if self.target == "lr":
                gen.set_state(state)  # the same noise draw as the model saw
                noisy, _, _ = self.noise(batch.to(self.device), gen)
                ref += float(self.loss_fn(noisy, batch.to(self.device))) * b
            n += b
        model.train(was)
        out = {"val_loss": total / n}
        if self.target == "lr":
            out["val_noisy_loss"] = ref / n
        return out

    def _eval_model(self) -> nn.Module:
        return self.ema.module if self.ema is not None else self.model

    def _progress(self) -> float:
        budget = self.cfg["budget"]
        total = self.cfg["schedule"]["total_steps"] or budget["steps"]
        parts = [self.step / total] if total else []
        if budget["minutes"]:
            parts.append(self._elapsed() / (60.0 * budget["minutes"]))
        return max(parts)

    def _elapsed(self) -> float:
        return self.elapsed_before + time.monotonic() - self.t0

    def _done(self) -> bool:
        budget = self.cfg["budget"]
        if budget["steps"] is not None and self.step >= budget["steps"]:
            return True
        return budget["minutes"] is not None and self._elapsed() >= 60 * budget["minutes"]

    def train_step(self, batch: Any) -> float:
        """One optimisation step; returns the loss. Stops on a NaN/inf loss."""
        from lenssr.training.optim import lr_factor

        scfg = self.cfg["schedule"]
        factor = lr_factor(
            self.step, int(scfg["warmup_steps"]), self._progress(), float(scfg["min_lr_ratio"])
        )
        self.current_lr = float(self.cfg["optim"]["lr"]) * factor
        for group in self.optimizer.param_groups:
            group["lr"] = self.current_lr
        loss = self.loss(self.model, batch, self.noise_gen)
        check_finite(loss, "the denoising loss", self.step, self.last_good)
        loss.backward()
        clip = self.cfg["optim"]["grad_clip"]
        if clip:
            nn.utils.clip_grad_norm_(self.model.parameters(), float(clip))
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.ema is not None:
            self.ema.update(self.model)
        return float(loss.detach())

    # ----------------------------------------------------------------------- checkpoints
    def _extra(self, weights: str, metrics: dict[str, float] | None) -> dict[str, Any]:
        from lenssr.data import Normalization

        return {
            "normalization": Normalization().to_dict(),
            "training": {
                "kind": "pretrain",
                "config": self.cfg,
                "data": self.data_info,
                "step": self.step,
                "wall_time_s": round(self._elapsed(), 2),
                "weights": weights,
                "device": str(self.device),
            },
            "metrics": metrics or {},
        }

    def _save(self, name: str, model: nn.Module, weights: str, metrics: Any) -> Path | None:
        from lenssr.models import save_checkpoint

        if not weights_finite(model):
            return None  # never overwrite a good checkpoint with non-finite weights
        return save_checkpoint(self.out / name, model, self._extra(weights, metrics))

    def _checkpoint(self, writer: Any) -> None:
        metrics = None
        if self.val_ds is not None:
            metrics = {"step": self.step, **self.validate()}
            self.history.append(metrics)
            if writer is not None:
                for key, value in metrics.items():
                    if key != "step":
                        writer.add_scalar(f"val/{key.removeprefix('val_')}", value, self.step)
            if metrics["val_loss"] < self.best:
                self.best = metrics["val_loss"]
                w = "ema" if self.ema is not None else "raw"
                self._save("pretrained", self._eval_model(), w, metrics)
        after_checkpoint(self, self._save("last", self.model, "raw", metrics), metrics)

    def _state(self) -> dict[str, Any]:
        """Everything besides ``last.safetensors`` that an exact resume needs."""
        return loop_state(
            self,
            best=self.best,
            optimizer=self.optimizer.state_dict(),
            noise_gen=self.noise_gen.get_state(),
        )

    def _load_state(self) -> None:
        """Continue from ``last.safetensors`` + ``last.state.pt`` (``--resume``)."""
        from safetensors.torch import load_file

        state = load_state(self.out)
        weights = self.out / "last.safetensors"
        try:
            self.model.load_state_dict(load_file(str(weights), device="cpu"), strict=True)
        except (RuntimeError, FileNotFoundError) as exc:
            raise ConfigError(
                f"--resume: {weights} does not match the configured model "
                f"({str(exc).splitlines()[0]})"
            ) from exc
        self.optimizer.load_state_dict(state["optimizer"])
        restore_loop_state(self, state)
        self.best = float(state["best"])
        self.noise_gen.set_state(state["noise_gen"])
        self.last_good = weights

    # ------------------------------------------------------------------------------ run
    def run(self) -> Path:
        """Pretrain within the budget; returns ``<dir>/pretrained.safetensors``."""
        from lenssr.device import resolve_device, set_cpu_threads
        from lenssr.progress import progress_bar

        self.device = resolve_device(self.cfg["device"])
        set_cpu_threads(self.device, self.cfg["threads"])
        check_output_dir(self.out, self.resume, "pretrained.safetensors")
        self.out.mkdir(parents=True, exist_ok=True)
        seed = int(self.cfg["seed"])
        torch.manual_seed(seed)
        self.target = self.cfg["pretrain"]["target"]
        self._setup_data()
        self._setup_model()
        dcfg = self.cfg["data"]
        self.batches = ResumableBatches(
            self.train_ds, dcfg["batch_size"], seed, int(dcfg["num_workers"])
        )
        self.noise_gen = torch.Generator().manual_seed(seed + 1)
        self.best, self.last_good, self.current_lr = math.inf, None, 0.0
        self.elapsed_before = 0.0
        if self.resume:
            self._load_state()
        else:
            (self.out / "config.yaml").write_text(yaml.safe_dump(self.cfg, sort_keys=False))
        self.t0 = time.monotonic()
        self.last_noise = ("", 0.0)
        writer = None
        if self.cfg["log"]["tensorboard"]:
            from torch.utils.tensorboard import SummaryWriter

            writer = SummaryWriter(str(self.out / "tb"))
        every_val = int(self.cfg["val"]["every_steps"])
        every_log = int(self.cfg["log"]["every_steps"])
        name = self.cfg["model"]["name"]
        self._say(
            f"pretraining {name} (denoising, target {self.target}, {self.levels} level(s)) on "
            f"{self.data_info['n_train']} images ({self.device}) -> {self.out}"
        )
        self.model.train()
        smooth = None
        try:
            with progress_bar(
                self.cfg["budget"]["steps"], f"pretrain {name}", enabled=not self.quiet
            ) as advance:
                if self.step:
                    advance(self.step)
                batches = iter(self.batches)
                done = self._done()
                while not done:
                    loss = self.train_step(next(batches))
                    self.losses.append(loss)
                    self.step += 1
                    smooth = loss if smooth is None else 0.95 * smooth + 0.05 * loss
                    if writer is not None and self.step % every_log == 0:
                        writer.add_scalar("train/loss", loss, self.step)
                        writer.add_scalar("train/lr", self.current_lr, self.step)
                    done = self._done()
                    if self.step % every_val == 0 or done:
                        self._checkpoint(writer)
                    status = f"loss {smooth:.4g}"
                    if math.isfinite(self.best):
                        status += f"  best val {self.best:.4g}"
                    advance(1, status)
        finally:
            if writer is not None:
                writer.close()
        result = self.out / "pretrained.safetensors"
        if self.val_ds is None:
            w = "ema" if self.ema is not None else "raw"
            self._save("pretrained", self._eval_model(), w, None)
        self._say(f"done: {self.step} steps in {self._elapsed():.0f} s; weights {result}")
        return result


def pretrain(
    config: dict[str, Any],
    *,
    out: str | Path | None = None,
    device: str | None = None,
    quiet: bool = False,
    resume: bool = False,
    on_validation: ValidationCallback | None = None,
) -> Path:
    """Run denoising pretraining as ``config`` says; returns ``pretrained.safetensors``, a
    normal hybrid checkpoint for ``lenssr train --init`` and ``lenssr gan``.

    ``resume`` continues an interrupted run exactly; ``on_validation(step, metrics)`` is called
    after each validation and may raise to end the run (see :class:`Pretrainer`)."""
    runner = Pretrainer(
        config, out=out, device=device, quiet=quiet, resume=resume, on_validation=on_validation
    )
    return runner.run()
