"""Supervised SR training: ``train(config) -> best checkpoint path``.

One loop serves every architecture: AdamW with linear warm-up + cosine learning rate, an EMA of
the weights (validation and ``best.*`` use it), AMP on CUDA, a fixed budget in steps or minutes,
validation PSNR/SSIM with the evaluation convention, TensorBoard logs, a rich progress bar, and
DistributedDataParallel when started by ``torchrun``.

Files written to the output directory (rank 0 only)::

    config.yaml                       the full, validated config of the run
    last.safetensors / last.json      training weights + descriptor (resume point)
    last.state.pt                     optimizer, EMA, GradScaler, step, epoch, RNG states
    best.safetensors / best.json      EMA weights with the best validation PSNR
    step-0001000.safetensors / .json  EMA snapshots, the newest ``checkpoint.keep_last`` kept
    tb/                               TensorBoard event files

``--resume`` reloads ``last.*`` and continues exactly where the run stopped: on one process on
CPU, a run interrupted at step k and resumed gives the same weights as an uninterrupted run.
"""

from __future__ import annotations

import math
import os
import random
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import yaml
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from lenssr.device import resolve_device, set_cpu_threads
from lenssr.errors import ConfigError, LenssrError
from lenssr.training import distributed as ddp
from lenssr.training.config import validate_config
from lenssr.training.losses import SRLoss, psnr_batch, ssim_torch
from lenssr.training.optim import EMA, lr_factor, make_optimizer

STATE_SUFFIX = ".state.pt"

#: ``on_validation(step, metrics)``: called on rank 0 after each validation (see :class:`Trainer`).
ValidationCallback = Callable[[int, dict[str, float]], None]


class StopTraining(Exception):  # noqa: N818 - a control-flow signal, like StopIteration
    """Raised by an ``on_validation`` callback to end a run early (e.g. a pruned tuning trial).

    The trainer closes its logs, leaves the process group and lets the exception propagate;
    on the other ranks of a distributed run a :class:`StopTraining` is raised as well.
    """


class ResumableSampler(DistributedSampler):
    """:class:`DistributedSampler` (shuffled per epoch with ``seed + epoch``, sharded by rank)
    that can skip the first ``skip`` samples of the current epoch, so a resumed run sees exactly
    the batches the interrupted one had left. It yields ``(epoch, index)`` keys, which
    :class:`EpochItems` turns into samples, so DataLoader workers (persistent ones included)
    draw the crops and augmentations of the right epoch.
    """

    def __init__(self, dataset: Dataset, num_replicas: int, rank: int, seed: int) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed)
        self.skip = 0

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = self.epoch
        return iter([(epoch, i) for i in list(super().__iter__())[self.skip :]])

    def __len__(self) -> int:
        return max(0, self.num_samples - self.skip)


class EpochItems(Dataset):
    """Dataset view indexed by ``(epoch, index)``: calls ``set_epoch`` (when the dataset has
    one) before fetching, in whichever process fetches.
    """

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> Any:
        epoch, index = key
        if hasattr(self.dataset, "set_epoch") and getattr(self.dataset, "epoch", None) != epoch:
            self.dataset.set_epoch(epoch)
        return self.dataset[index]


class _Forward(nn.Module):
    """What DDP wraps: the model's plain forward, its forward at ``scale``, or its pyramid."""

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


def _rng_state() -> dict[str, Any]:
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),  # noqa: NPY002 - global RNG a dataset may use
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])  # noqa: NPY002
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002
    torch.manual_seed(seed)


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

        def short(items: list[str]) -> str:
            more = f" (+{len(items) - 4} more)" if len(items) > 4 else ""
            return ", ".join(items[:4]) + more if items else "none"

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

    cfg = validate_config(config)
    with torch.device("meta"):
        build_model(cfg["model"])
    if cfg["data"]["mixture"]:
        from lenssr.simulation.presets import load_preset

        preset = load_preset(cfg["data"]["mixture"])
        if not preset.config.get("lr_mixture"):
            raise ConfigError(f"data.mixture: preset {preset.name!r} has no lr_mixture section")


class Trainer:
    """One supervised training run; :meth:`run` trains and returns the best checkpoint path.

    ``config``: a (partial) config dict, validated and filled with defaults. ``resume``
    continues from ``<out>/last.*``; ``init`` (or ``config["init"]``) loads pretrained weights
    first; ``out`` overrides ``checkpoint.dir``; ``device`` overrides ``config["device"]``;
    ``quiet`` turns off the progress bar and messages. ``on_validation(step, metrics)`` is called
    on rank 0 after every validation (``metrics`` as in :attr:`history`, after ``last.*`` is
    saved); any exception it raises (:class:`StopTraining`, ``optuna.TrialPruned``, ...) ends
    the run and propagates out of :meth:`run`, on every rank.
    """

    def __init__(
        self,
        config: dict[str, Any],
        *,
        resume: bool = False,
        init: str | Path | None = None,
        out: str | Path | None = None,
        device: str | None = None,
        quiet: bool = False,
        on_validation: ValidationCallback | None = None,
    ) -> None:
        cfg = validate_config(config)
        if init is not None:
            cfg["init"] = str(init)
        if out is not None:
            cfg["checkpoint"]["dir"] = str(out)
        if device is not None:
            cfg["device"] = device
        self.cfg = cfg
        self.resume = resume
        self.quiet = quiet
        self.on_validation = on_validation
        self.out = Path(cfg["checkpoint"]["dir"])
        self.model: nn.Module | None = None
        self.ema: EMA | None = None
        self.step = 0
        self.history: list[dict[str, float]] = []  # validation metrics per evaluation
        self.losses: list[float] = []  # training loss per step of this process (this session)

    # ----------------------------------------------------------------------------- setup
    def _say(self, msg: str) -> None:
        if self.info.is_main and not self.quiet:
            from rich.console import Console

            Console(stderr=True).print(msg, highlight=False)

    def _setup_data(self) -> None:
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
        self.conditioned = int(self.cfg["model"].get("cond_dim", 0) or 0) > 0
        common = {"normalization": self.normalization, "seed": seed}
        if dcfg["mixture"]:
            self.train_ds = MixturePairDataset(
                train_src, dcfg["mixture"], indices=list(train_idx),
                patch_size=dcfg["patch_size"], augment=bool(dcfg["augment"]), **common,
            )  # fmt: skip
            self.train_ds.conditioned = self.conditioned
        else:
            self.train_ds = PairDataset(
                train_src, indices=list(train_idx), patch_size=dcfg["patch_size"],
                augment=bool(dcfg["augment"]), conditioned=self.conditioned, **common,
            )  # fmt: skip
        self.val_ds = (
            PairDataset(
                val_src,
                indices=val_idx,
                patch_size=None,
                augment=False,
                conditioned=self.conditioned,
                **common,
            )  # fmt: skip
            if val_idx
            else None
        )
        self.instrument_range = self._instrument_range(dcfg) if self.conditioned else None
        bs = dcfg["batch_size"]
        per_rank = math.ceil(len(self.train_ds) / self.info.world_size)
        if per_rank < bs:
            raise ConfigError(
                f"data.batch_size {bs} is larger than the {len(self.train_ds)} training images "
                f"({per_rank} per process); lower data.batch_size or add data"
            )
        self.sampler = ResumableSampler(
            self.train_ds, self.info.world_size, self.info.rank, seed=seed
        )
        workers = int(dcfg["num_workers"])
        self.loader_gen = torch.Generator()
        self.loader = DataLoader(
            EpochItems(self.train_ds),
            batch_size=bs,
            sampler=self.sampler,
            drop_last=True,
            num_workers=workers,
            persistent_workers=workers > 0,
            pin_memory=self.device.type == "cuda",
            generator=self.loader_gen,
        )
        self.val_loader = (
            DataLoader(
                self.val_ds,
                batch_size=self.cfg["val"]["batch_size"],
                shuffle=False,
                generator=torch.Generator(),
            )
            if self.val_ds is not None
            else None
        )
        self.data_info = {
            "train": str(dcfg["train"]),
            "val": str(dcfg["val"]) if dcfg["val"] else f"val_fraction={dcfg['val_fraction']}",
            "n_train": len(self.train_ds),
            "n_val": len(val_idx),
            "scale": self.data_scale,
            "patch_size_lr": dcfg["patch_size"],
        }

    def _instrument_range(self, dcfg: dict[str, Any]) -> dict[str, Any]:
        """The instrument range the model is trained on (stored in its descriptor): the
        mixture's PSF range and the 1-99% range of the relative noise of 256 training items."""
        n = min(256, len(self.train_ds))
        conds = np.stack([self.train_ds[j][2].numpy() for j in range(n)])
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

    def _setup_model(self) -> None:

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
        if self.cfg["init"] and not self.resume:
            report = load_init_weights(model, self.cfg["init"], bool(self.cfg["init_strict"]))
            skipped = len(report["missing"]) + len(report["unexpected"])
            skipped += len(report["shape_mismatch"])
            self._say(
                f"init: loaded {len(report['loaded'])} tensors from {self.cfg['init']}"
                + (f", {skipped} not matched: {report}" if skipped else "")
            )
            self.init_report = {k: len(v) for k, v in report.items()}
        else:
            self.init_report = None
        model.to(self.device)
        self.model = model
        self.forward = _Forward(model, fwd_scale, pyramid)
        self.net: nn.Module = self.forward
        if self.info.enabled:
            self.net = nn.parallel.DistributedDataParallel(
                self.forward,
                device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=len(scales) > 1,
            )
        self.with_sigma = bool(getattr(model, "has_sigma", False))
        if self.with_sigma and not pyramid:
            self.forward.with_sigma = True
        self.eval_forward = _Forward(model, fwd_scale, pyramid=False)
        decay = self.cfg["ema"]["decay"]
        self.ema = EMA(model, decay) if decay else None
        self.optimizer = make_optimizer(model, self.cfg["optim"])
        self.criterion = SRLoss(self.cfg["loss"])

        amp = self.cfg["amp"]
        self.amp_dtype: torch.dtype | None = None
        if self.device.type == "cuda" and amp != "off":
            bf16_ok = torch.cuda.is_bf16_supported()
            self.amp_dtype = (
                torch.bfloat16 if amp == "bf16" or (amp == "auto" and bf16_ok) else (torch.float16)
            )
        self.scaler = torch.amp.GradScaler(
            "cuda", enabled=self.amp_dtype == torch.float16 and self.device.type == "cuda"
        )

    # ----------------------------------------------------------------------- checkpoints
    def _extra(self, weights: str, metrics: dict[str, float] | None) -> dict[str, Any]:
        extra: dict[str, Any] = {}
        if self.conditioned:
            from lenssr.data.conditioning import CONDITION_NAMES

            extra["conditioning"] = {
                "inputs": list(CONDITION_NAMES),
                "range": self.instrument_range,
            }
        return {
            **extra,
            "normalization": self.normalization.to_dict(),
            "training": {
                "config": self.cfg,
                "data": self.data_info,
                "step": self.step,
                "wall_time_s": round(self._elapsed(), 2),
                "best_val_psnr": self.best_psnr if math.isfinite(self.best_psnr) else None,
                "weights": weights,
                "ema_decay": self.cfg["ema"]["decay"],
                "world_size": self.info.world_size,
                "device": str(self.device),
                "init": self.cfg["init"],
            },
            "metrics": metrics or {},
        }

    def _gather_rng(self) -> list[dict[str, Any]]:
        state = _rng_state()
        if not self.info.enabled:
            return [state]
        states: list[Any] = [None] * self.info.world_size
        dist.all_gather_object(states, state)
        return states

    def _save_last(self) -> None:
        """Write ``last.*`` (all ranks take part in gathering RNG states; rank 0 writes)."""
        from lenssr.models import save_checkpoint

        rng = self._gather_rng()
        if not self.info.is_main:
            return
        save_checkpoint(self.out / "last", self.model, self._extra("raw", self.last_metrics))
        state = {
            "step": self.step,
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "elapsed_s": self._elapsed(),
            "best_psnr": self.best_psnr,
            "optimizer": self.optimizer.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "scaler": self.scaler.state_dict(),
            "rng": rng,
            "world_size": self.info.world_size,
            "history": self.history,
        }
        tmp = self.out / f"last{STATE_SUFFIX}.partial"
        torch.save(state, tmp)
        os.replace(tmp, self.out / f"last{STATE_SUFFIX}")
        keep = int(self.cfg["checkpoint"]["keep_last"])
        if keep > 0:
            save_checkpoint(
                self.out / f"step-{self.step:07d}",
                self._eval_model(),
                self._extra("ema" if self.ema else "raw", self.last_metrics),
            )
            snaps = sorted(self.out.glob("step-*.safetensors"))
            for old in snaps[:-keep]:
                old.unlink(missing_ok=True)
                old.with_suffix(".json").unlink(missing_ok=True)

    def _load_last(self) -> None:
        from safetensors.torch import load_file

        state_path = self.out / f"last{STATE_SUFFIX}"
        weights = self.out / "last.safetensors"
        if not state_path.is_file() or not weights.is_file():
            raise ConfigError(f"--resume: no last.safetensors + last{STATE_SUFFIX} in {self.out}")
        try:
            self.model.load_state_dict(load_file(str(weights), device="cpu"), strict=True)
        except RuntimeError as exc:
            raise ConfigError(
                f"--resume: {weights} does not match the configured model "
                f"({str(exc).splitlines()[0]})"
            ) from exc
        state = torch.load(state_path, map_location="cpu", weights_only=False)
        self.optimizer.load_state_dict(state["optimizer"])
        if self.ema is not None:
            if state["ema"] is None:
                self.ema = EMA(self.model, self.cfg["ema"]["decay"])
            else:
                self.ema.load_state_dict(state["ema"])
        self.scaler.load_state_dict(state["scaler"])
        self.step = int(state["step"])
        self.epoch = int(state["epoch"])
        self.batch_in_epoch = int(state["batch_in_epoch"])
        self.elapsed_before = float(state["elapsed_s"])
        self.best_psnr = float(state["best_psnr"])
        self.history = list(state.get("history", []))
        rng = state["rng"]
        if len(rng) == self.info.world_size:
            _set_rng_state(rng[self.info.rank])
        else:  # a different number of processes: fresh, rank-dependent randomness
            _seed_everything(int(self.cfg["seed"]) * 1000 + self.info.rank + self.step)

    # ------------------------------------------------------------------------ training
    def _elapsed(self) -> float:
        return self.elapsed_before + (time.monotonic() - self.t0)

    def _eval_model(self) -> nn.Module:
        return self.ema.module if self.ema is not None else self.model

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Mean PSNR and SSIM (dB, 1) of the EMA model on the validation images.

        The metric maps SR and HR with the HR's min..max, which is unchanged by the affine
        LR normalisation applied to both, so normalised and physical units give equal numbers.
        """
        model = self._eval_model()
        was_training = model.training
        model.eval()
        fwd = _Forward(model, self.eval_forward.scale, pyramid=False)
        psnrs, ssims = [], []
        for batch in self.val_loader:
            lr, hr = batch[0], batch[1]
            cond = batch[2].to(self.device) if len(batch) > 2 else None
            sr = fwd(lr.to(self.device), cond).float()
            hr = hr.to(self.device).float()
            psnrs.append(psnr_batch(sr, hr).double().cpu())
            if min(hr.shape[-2:]) >= 7:
                ssims.append(ssim_torch(sr, hr).double().cpu())
        model.train(was_training)
        p = torch.cat(psnrs)
        finite = p[torch.isfinite(p)]
        return {
            "val_psnr": float(finite.mean()) if len(finite) else float("inf"),
            "val_ssim": float(torch.cat(ssims).mean()) if ssims else float("nan"),
            "val_images": int(len(p)),
        }

    def _train_step(self, lr: Tensor, hr: Tensor, cond: Tensor | None = None) -> float:
        lr = lr.to(self.device, non_blocking=True)
        hr = hr.to(self.device, non_blocking=True)
        if cond is not None:
            cond = cond.to(self.device, non_blocking=True)
        ocfg, scfg = self.cfg["optim"], self.cfg["schedule"]
        factor = lr_factor(
            self.step, int(scfg["warmup_steps"]), self._progress(), float(scfg["min_lr_ratio"])
        )
        self.current_lr = float(ocfg["lr"]) * factor
        for group in self.optimizer.param_groups:
            group["lr"] = self.current_lr
        amp_on = self.amp_dtype is not None
        with torch.autocast(
            self.device.type, dtype=self.amp_dtype or torch.float32, enabled=amp_on
        ):
            out = self.net(lr) if cond is None else self.net(lr, cond)
            loss = self.criterion(out, hr)
        if not torch.isfinite(loss):
            raise LenssrError(
                f"training diverged at step {self.step} (loss {loss.item()}); lower optim.lr"
            )
        self.scaler.scale(loss).backward()
        if ocfg["grad_clip"]:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), float(ocfg["grad_clip"]))
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        if self.ema is not None:
            self.ema.update(self.model)
        return float(loss.detach())

    def _progress(self) -> float:
        total = self.cfg["schedule"]["total_steps"] or self.cfg["budget"]["steps"]
        if total:
            return self.step / total
        return self._elapsed() / (60.0 * self.cfg["budget"]["minutes"])

    def _done(self) -> bool:
        budget = self.cfg["budget"]
        done = budget["steps"] is not None and self.step >= budget["steps"]
        if budget["minutes"] is not None:
            done = ddp.any_true(
                done or self._elapsed() >= 60 * budget["minutes"], self.info, self.device
            )
        return done

    def _batches(self) -> Iterator[tuple[Tensor, Tensor]]:
        """Endless batches; epoch ``e`` is shuffled with ``seed + e``, resumes mid-epoch."""
        bs = self.cfg["data"]["batch_size"]
        while True:
            self.sampler.set_epoch(self.epoch)
            self.sampler.skip = self.batch_in_epoch * bs
            self.loader_gen.manual_seed(int(self.cfg["seed"]) * 100003 + self.epoch)
            for batch in self.loader:
                self.batch_in_epoch += 1
                yield batch
            self.epoch += 1
            self.batch_in_epoch = 0

    def _validate_and_save(self, writer: Any) -> None:
        from lenssr.models import save_checkpoint

        metrics: dict[str, float] | None = None
        if self.info.is_main and self.val_loader is not None:
            metrics = self.validate()
            self.last_metrics = metrics
            self.history.append({"step": self.step, **metrics})
            if writer is not None:
                writer.add_scalar("val/psnr", metrics["val_psnr"], self.step)
                writer.add_scalar("val/ssim", metrics["val_ssim"], self.step)
            if metrics["val_psnr"] > self.best_psnr:
                self.best_psnr = metrics["val_psnr"]
                save_checkpoint(
                    self.out / "best",
                    self._eval_model(),
                    self._extra("ema" if self.ema else "raw", metrics),
                )
        self._save_last()
        stop: BaseException | None = None
        if metrics is not None and self.on_validation is not None:
            try:
                self.on_validation(self.step, dict(self.history[-1]))
            except Exception as exc:  # noqa: BLE001 - re-raised below, on every rank
                stop = exc
        if ddp.any_true(stop is not None, self.info, self.device):
            raise stop if stop is not None else StopTraining(f"stopped by rank 0 at {self.step}")

    def run(self) -> Path:
        """Train within the budget; return the path of ``best.safetensors``."""
        self.device = resolve_device(self.cfg["device"])
        self.info = ddp.setup(self.device)
        try:
            return self._run()
        finally:
            ddp.teardown(self.info)

    def _run(self) -> Path:
        if self.info.enabled and self.device.type == "cuda":
            self.device = torch.device("cuda", self.info.local_rank)
        set_cpu_threads(self.device, self.cfg["threads"], self.info.world_size)
        if self.info.is_main:
            if self.resume:
                if not self.out.is_dir():
                    raise ConfigError(f"--resume: output directory {self.out} does not exist")
            elif (self.out / f"last{STATE_SUFFIX}").exists():
                raise ConfigError(
                    f"{self.out} already holds a training run; use --resume to continue it "
                    "or choose another --out"
                )
            self.out.mkdir(parents=True, exist_ok=True)
        seed = int(self.cfg["seed"])
        _seed_everything(seed)
        self._setup_data()
        self._setup_model()  # same seed on every rank: identical initial weights
        _seed_everything(seed * 1000 + self.info.rank)
        self.step, self.epoch, self.batch_in_epoch = 0, 0, 0
        self.elapsed_before, self.best_psnr = 0.0, -math.inf
        self.last_metrics: dict[str, float] | None = None
        if self.resume:
            self._load_last()
        elif self.info.is_main:
            (self.out / "config.yaml").write_text(yaml.safe_dump(self.cfg, sort_keys=False))
        self.t0 = time.monotonic()
        self.current_lr = 0.0
        writer = None
        if self.info.is_main and self.cfg["log"]["tensorboard"]:
            from torch.utils.tensorboard import SummaryWriter

            writer = SummaryWriter(str(self.out / "tb"))
        from lenssr.progress import progress_bar

        budget_steps = self.cfg["budget"]["steps"]
        every_val = int(self.cfg["val"]["every_steps"])
        every_log = int(self.cfg["log"]["every_steps"])
        self.model.train()
        self._say(
            f"training {self.cfg['model']['name']} on {self.data_info['n_train']} images "
            f"(x{self.data_scale}, {self.device}, {self.info.world_size} process(es)) -> {self.out}"
        )
        smooth = None
        done = self._done()
        try:
            with progress_bar(
                budget_steps,
                f"train {self.cfg['model']['name']}",
                enabled=self.info.is_main and not self.quiet,
            ) as advance:
                if self.step:
                    advance(self.step)
                batches = self._batches()
                while not done:
                    loss = self._train_step(*next(batches))
                    self.losses.append(loss)
                    self.step += 1
                    smooth = loss if smooth is None else 0.95 * smooth + 0.05 * loss
                    if writer is not None and self.step % every_log == 0:
                        writer.add_scalar("train/loss", loss, self.step)
                        writer.add_scalar("train/lr", self.current_lr, self.step)
                    done = self._done()
                    if self.step % every_val == 0 or done:
                        self._validate_and_save(writer)
                    status = f"loss {smooth:.4g}"
                    if math.isfinite(self.best_psnr):
                        status += f"  best val PSNR {self.best_psnr:.2f} dB"
                    advance(1, status)
        finally:
            if writer is not None:
                writer.close()
        ddp.barrier(self.info)
        best = self.out / "best.safetensors"
        if self.info.is_main and self.val_loader is None:
            from lenssr.models import save_checkpoint

            save_checkpoint(
                self.out / "best",
                self._eval_model(),
                self._extra("ema" if self.ema else "raw", None),
            )
        ddp.barrier(self.info)
        self._say(f"done: {self.step} steps in {self._elapsed():.0f} s; best checkpoint {best}")
        return best


def train(
    config: dict[str, Any],
    *,
    resume: bool = False,
    init: str | Path | None = None,
    out: str | Path | None = None,
    device: str | None = None,
    quiet: bool = False,
    on_validation: ValidationCallback | None = None,
) -> Path:
    """Train the model described by ``config`` and return the best checkpoint's path.

    ``config`` is a dict as :func:`lenssr.training.load_config` returns (partial dicts are
    filled with defaults). See :class:`Trainer` for the other arguments. Under ``torchrun`` every
    process calls this; only rank 0 writes files.
    """
    return Trainer(
        config,
        resume=resume,
        init=init,
        out=out,
        device=device,
        quiet=quiet,
        on_validation=on_validation,
    ).run()
