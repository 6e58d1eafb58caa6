"""The one training loop: every training command is a :class:`Task` run by the :class:`Engine`.

The engine owns what every task shares: the budget (steps or minutes) and the warm-up + cosine
learning rate of every optimiser, the EMA of the task's model, AMP on CUDA (autocast and one
GradScaler per optimiser), several processes under ``torchrun`` (data sharded by rank,
gradients averaged over ranks before every optimiser step), gradient clipping
(``optim.grad_clip``), the NaN/inf guard, TensorBoard logs and the progress bar, validation
every ``val.every_steps``, the checkpoints (``last.*``, the task's result, ``step-*``
snapshots; only ever from finite weights), the ``on_validation`` callback and exact resume.
A task (:mod:`lenssr.training.tasks`: ``supervised``, ``denoise``, ``gan``) gives its config
section, its data and models, one training step and its validation.

Files written to the output directory (rank 0 only)::

    config.yaml                       the full, validated config of the run
    last.safetensors / last.json      the task's model (raw or EMA, see Task.last_weights)
    last.state.pt                     raw weights of every trained module, optimisers, EMA,
                                      GradScalers, step, data position, RNG states, history
    <result>.safetensors / .json      the task's result (best.*, pretrained.*, generator.*)
    step-0001000.safetensors / .json  EMA snapshots, the newest ``checkpoint.keep_last`` kept
    tb/                               TensorBoard event files

``resume=True`` (``--resume``) continues from ``last.state.pt`` exactly: on one process on
CPU, a run interrupted and resumed gives the same weights as an uninterrupted run.
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import yaml
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from lenssr.errors import ConfigError, LenssrError
from lenssr.registry import Registry
from lenssr.training import distributed as ddp
from lenssr.training.optim import EMA, lr_factor, make_optimizer

STATE_FILE = "last.state.pt"

#: ``on_validation(step, metrics)``: called on rank 0 after each validation (see :class:`Engine`).
ValidationCallback = Callable[[int, dict[str, float]], None]

#: Training tasks by name (``supervised``, ``denoise``, ``gan``).
TASKS = Registry(
    "training task",
    builtin=(
        "lenssr.training.tasks.supervised",
        "lenssr.training.tasks.denoise",
        "lenssr.training.tasks.gan",
    ),
)


class StopTraining(Exception):  # noqa: N818 - a control-flow signal, like StopIteration
    """Raised by an ``on_validation`` callback to end a run early (e.g. a pruned tuning trial).

    The engine closes its logs, leaves the process group and lets the exception propagate;
    on the other ranks of a distributed run a :class:`StopTraining` is raised as well.
    """


# ------------------------------------------------------------------------------ data stream
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


class ResumableBatches:
    """Endless batches of ``dataset`` (this rank's shard) that can start at any position.

    Epoch ``e`` is a permutation drawn with ``seed + e`` (incomplete last batch dropped); the
    DataLoader's worker seeds are reset per epoch, so the stream does not depend on where a run
    was interrupted. :attr:`epoch` and :attr:`batch_in_epoch` say what was consumed.
    """

    def __init__(
        self,
        dataset: Dataset,
        batch_size: int,
        seed: int,
        num_workers: int = 0,
        num_replicas: int = 1,
        rank: int = 0,
        pin_memory: bool = False,
    ) -> None:
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.epoch = 0
        self.batch_in_epoch = 0
        self.sampler = ResumableSampler(dataset, num_replicas, rank, seed=self.seed)
        self.loader_gen = torch.Generator()
        self.loader = DataLoader(
            EpochItems(dataset),
            batch_size=self.batch_size,
            sampler=self.sampler,
            drop_last=True,
            num_workers=int(num_workers),
            persistent_workers=int(num_workers) > 0,
            pin_memory=pin_memory,
            generator=self.loader_gen,
        )

    def __iter__(self) -> Iterator[Any]:
        while True:
            self.sampler.set_epoch(self.epoch)
            self.sampler.skip = self.batch_in_epoch * self.batch_size
            self.loader_gen.manual_seed(self.seed * 100003 + self.epoch)
            for batch in self.loader:
                self.batch_in_epoch += 1
                yield batch
            self.epoch += 1
            self.batch_in_epoch = 0

    def state_dict(self) -> dict[str, int]:
        """The stream position: ``{"epoch": e, "batch_in_epoch": b}``."""
        return {"epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Continue from a position given by :meth:`state_dict`."""
        self.epoch = int(state["epoch"])
        self.batch_in_epoch = int(state["batch_in_epoch"])


# ----------------------------------------------------------------------------------- helpers
def rng_state() -> dict[str, Any]:
    """The global Python, numpy and torch (and CUDA) RNG states."""
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),  # noqa: NPY002 - global RNG a dataset may use
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore RNG states saved by :func:`rng_state`."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])  # noqa: NPY002
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    """Seed the global Python, numpy and torch RNGs."""
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002
    torch.manual_seed(seed)


def weights_finite(model: nn.Module) -> bool:
    """True when every parameter and buffer of ``model`` is finite."""
    return all(bool(torch.isfinite(t).all()) for t in model.state_dict().values())


def _average_gradients(params: list[Tensor], world_size: int) -> None:
    """Average the gradients of ``params`` over all ranks (one all-reduce)."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world_size
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()


def _broadcast_buffers(modules: Iterable[nn.Module]) -> None:
    """Rank 0's buffers (batch-norm statistics) to every rank, as DDP does."""
    for module in modules:
        for buf in module.buffers():
            dist.broadcast(buf, 0)


# -------------------------------------------------------------------------------------- task
class Task:
    """What one kind of training adds to the :class:`Engine` (BasicSR's model classes).

    A subclass is registered in :data:`TASKS` and sets the class attributes; the engine calls
    :meth:`datasets`, :meth:`build`, then :meth:`train_step` once per step and :meth:`validate`
    every ``val.every_steps``. ``self.engine`` gives the config (``engine.cfg``), the device,
    :meth:`Engine.add_optimizer`, :meth:`Engine.optimize`, :meth:`Engine.autocast` and
    :meth:`Engine.check_finite`.
    """

    #: The task's own config section (``None``: the shared sections only).
    section: str | None = None
    #: Stem of the checkpoint :meth:`Engine.run` returns.
    result = "best"
    #: ``(metric, "max" | "min")`` that picks the result among validations; ``None``: the
    #: result is the EMA model at the end of the run.
    best_metric: tuple[str, str] | None = ("val_psnr", "max")
    #: What ``last.*`` holds: ``raw`` (the trained weights) or ``ema``.
    last_weights = "raw"
    #: Progress-bar label -> key of :meth:`train_step`'s result, shown smoothed.
    shown: dict[str, str] = {"loss": "loss"}
    #: Name shown in the progress bar (``<verb> <model>``).
    verb = "train"

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.cfg = engine.cfg

    @classmethod
    def validate_config(cls, config: dict[str, Any], origin: str = "") -> dict[str, Any]:
        """Check ``config`` and fill in defaults; returns the full config (:class:`ConfigError`
        on a bad key or value)."""
        from lenssr.training.config import validate_config

        return validate_config(config, origin)

    @classmethod
    def load_config(cls, path: str | Path, overrides: list[str] | None = None) -> dict[str, Any]:
        """Read a YAML (``defaults:`` includes allowed), apply ``key=value`` overrides and
        validate it with :meth:`validate_config`."""
        from lenssr.training.config import apply_overrides, read_yaml

        raw = apply_overrides(read_yaml(Path(path)), overrides)
        return cls.validate_config(raw, origin=str(path))

    def datasets(self) -> tuple[Dataset, Dataset | None, dict[str, Any]]:
        """``(train, val or None, data_info)``; ``data_info`` goes into every descriptor."""
        raise NotImplementedError

    def data_info(self, n_train: int, n_val: int, **extra: Any) -> dict[str, Any]:
        """The descriptor's ``training.data``: sources, sizes, LR patch size and ``extra``."""
        dcfg = self.cfg["data"]
        return {
            "train": str(dcfg["train"]),
            "val": str(dcfg["val"]) if dcfg["val"] else f"val_fraction={dcfg['val_fraction']}",
            "n_train": n_train,
            "n_val": n_val,
            **extra,
            "patch_size_lr": dcfg["patch_size"],
        }

    def build(self) -> None:
        """Build ``self.model`` (the module the EMA follows and checkpoints hold) and any other
        module, and register the optimisers with :meth:`Engine.add_optimizer`."""
        raise NotImplementedError

    def modules(self) -> dict[str, nn.Module]:
        """Every trained module by name; their raw weights go into ``last.state.pt``."""
        return {"model": self.model}

    def train_step(self, batches: Iterator[Any]) -> dict[str, float]:
        """One training step on batches drawn from ``batches``; returns the logged values."""
        raise NotImplementedError

    def validate(self, model: nn.Module) -> dict[str, float]:
        """Validation metrics of ``model`` (the EMA model when there is one)."""
        raise NotImplementedError

    def descriptor(self, metrics: dict[str, float] | None) -> dict[str, Any]:
        """Descriptor entries of the task: ``normalization`` and anything else
        :func:`lenssr.models.save_checkpoint` takes; ``training`` entries are added to the
        engine's."""
        from lenssr.data import Normalization

        return {"normalization": Normalization().to_dict(), "training": {}}

    def summary(self) -> str:
        """The line printed when the run starts."""
        return f"{self.verb} {self.cfg['model']['name']}"

    def label(self) -> str:
        """Progress-bar title."""
        return f"{self.verb} {self.cfg['model']['name']}"

    def state_dict(self) -> dict[str, Any]:
        """Task state an exact resume needs besides modules and optimisers (RNG generators)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""


# ------------------------------------------------------------------------------------ engine
class Engine:
    """One training run of ``task`` (a name in :data:`TASKS` or a :class:`Task` subclass).

    ``config``: a (partial) config dict, validated by the task. ``resume`` continues from
    ``<out>/last.state.pt``; ``out`` overrides ``checkpoint.dir``; ``device`` overrides
    ``config["device"]``; ``init`` overrides ``config["init"]`` (weights to start from);
    ``quiet`` turns off the progress bar and messages. ``on_validation(step, metrics)`` is
    called on rank 0 after every validation (``metrics`` as in :attr:`history`, after
    ``last.*`` is saved); any exception it raises
    (:class:`StopTraining`, ``optuna.TrialPruned``, ...) ends the run and propagates out of
    :meth:`run`, on every rank.
    """

    def __init__(
        self,
        task: str | type[Task],
        config: dict[str, Any],
        *,
        resume: bool = False,
        init: str | Path | None = None,
        out: str | Path | None = None,
        device: str | None = None,
        quiet: bool = False,
        on_validation: ValidationCallback | None = None,
    ) -> None:
        self.task_cls: type[Task] = TASKS.get(task) if isinstance(task, str) else task
        cfg = self.task_cls.validate_config(config)
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
        self.task = self.task_cls(self)
        self.info = ddp.DistInfo()
        self.ema: EMA | None = None
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.base_lr: dict[str, float] = {}
        self.scalers: dict[str, torch.amp.GradScaler] = {}
        self.step = 0
        self.history: list[dict[str, float]] = []  # validation metrics per evaluation
        self.logs: list[dict[str, float]] = []  # train_step results of this process (session)
        self.last_good: Path | None = None

    # ----------------------------------------------------------------- for the tasks
    @property
    def model(self) -> nn.Module:
        """The task's model (raw weights)."""
        return self.task.model

    @property
    def losses(self) -> list[float]:
        """The first shown value of every step of this session (the training loss)."""
        key = next(iter(self.task.shown.values()))
        return [log[key] for log in self.logs]

    def say(self, msg: str) -> None:
        """Print ``msg`` on rank 0 unless quiet."""
        if self.info.is_main and not self.quiet:
            from rich.console import Console

            Console(stderr=True).print(msg, highlight=False)

    def add_optimizer(self, name: str, module: nn.Module, optim: dict[str, Any]) -> None:
        """AdamW for ``module`` (``optim``: ``lr``, ``betas``, ``weight_decay``) whose learning
        rate follows the schedule from ``optim["lr"]``; stepped by :meth:`optimize`."""
        self.optimizers[name] = make_optimizer(module, optim)
        self.base_lr[name] = float(optim["lr"])
        self.scalers[name] = torch.amp.GradScaler(
            "cuda", enabled=self.amp_dtype == torch.float16 and self.device.type == "cuda"
        )

    def autocast(self) -> contextlib.AbstractContextManager:
        """Mixed precision for a forward pass (bf16/fp16 on CUDA when ``amp`` allows it)."""
        on = self.amp_dtype is not None
        return torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32, enabled=on)

    def check_finite(self, value: Tensor, what: str) -> None:
        """Stop training with a one-line :class:`LenssrError` when ``value`` is NaN or inf."""
        if torch.isfinite(value).all():
            return
        kept = (
            f"last good checkpoint kept: {self.last_good}"
            if self.last_good
            else "no checkpoint saved yet"
        )
        raise LenssrError(
            f"{what} is {float(value.detach().float().mean())} at step {self.step}; training "
            f"stopped ({kept}); lower the learning rate or the loss weights"
        )

    def optimize(self, loss: Tensor, name: str, what: str = "the training loss") -> float:
        """One update of optimiser ``name`` from ``loss``: NaN/inf guard, backward (scaled under
        fp16), gradients averaged over ranks, clipped to ``optim.grad_clip``, step, zero."""
        self.check_finite(loss, what)
        opt, scaler = self.optimizers[name], self.scalers[name]
        scaler.scale(loss).backward()
        params = [p for g in opt.param_groups for p in g["params"]]
        if self.info.enabled:
            _average_gradients(params, self.info.world_size)
        clip = self.cfg["optim"]["grad_clip"]
        if clip:
            scaler.unscale_(opt)
            nn.utils.clip_grad_norm_(params, float(clip))
        scaler.step(opt)
        scaler.update()
        opt.zero_grad(set_to_none=True)
        return float(loss.detach())

    def eval_model(self) -> nn.Module:
        """The EMA model, or the raw one when ``ema.decay`` is null."""
        return self.ema.module if self.ema is not None else self.task.model

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """The task's validation metrics of :meth:`eval_model` (in eval mode)."""
        model = self.eval_model()
        was = model.training
        model.eval()
        try:
            return self.task.validate(model)
        finally:
            model.train(was)

    def elapsed(self) -> float:
        """Seconds of training, over all sessions of the run."""
        return self.elapsed_before + (time.monotonic() - self.t0)

    def progress(self) -> float:
        """Fraction of the budget spent (the larger of steps and minutes)."""
        budget = self.cfg["budget"]
        total = self.cfg["schedule"]["total_steps"] or budget["steps"]
        parts = [self.step / total] if total else []
        if budget["minutes"]:
            parts.append(self.elapsed() / (60.0 * budget["minutes"]))
        return max(parts)

    # -------------------------------------------------------------------- checkpoints
    def _descriptor(self, weights: str, metrics: dict[str, float] | None) -> dict[str, Any]:
        extra = self.task.descriptor(metrics)
        extra["training"] = {
            "config": self.cfg,
            "data": self.data_info,
            "step": self.step,
            "wall_time_s": round(self.elapsed(), 2),
            "weights": weights,
            "ema_decay": self.cfg["ema"]["decay"],
            "world_size": self.info.world_size,
            "device": str(self.device),
            "init": self.cfg["init"],
            **extra.get("training", {}),
        }
        extra["metrics"] = metrics or {}
        return extra

    def _weights(self, which: str) -> nn.Module:
        return self.task.model if which == "raw" or self.ema is None else self.ema.module

    def save(self, name: str, which: str, metrics: dict[str, float] | None) -> Path | None:
        """Write ``<out>/<name>.*`` from the ``raw`` or ``ema`` weights (rank 0); ``None``
        (nothing written) when the weights are not finite, so a good checkpoint is kept."""
        from lenssr.models import save_checkpoint

        model = self._weights(which)
        if not weights_finite(model):
            return None
        weights = "ema" if model is not self.task.model else "raw"
        return save_checkpoint(self.out / name, model, self._descriptor(weights, metrics))

    def _gather_rng(self) -> list[dict[str, Any]]:
        state = rng_state()
        if not self.info.enabled:
            return [state]
        states: list[Any] = [None] * self.info.world_size
        dist.all_gather_object(states, state)
        return states

    def _save_last(self, metrics: dict[str, float] | None) -> None:
        """``last.*`` and ``last.state.pt`` (all ranks gather RNG states; rank 0 writes)."""
        if not weights_finite(self._weights(self.task.last_weights)):
            return  # keep the last good checkpoint; check_finite names it
        rng = self._gather_rng()
        if not self.info.is_main:
            return
        last = self.save("last", self.task.last_weights, metrics)
        if last is None:
            return
        self.last_good = last
        state = {
            "task": self.task_cls.__name__,
            "step": self.step,
            "batches": self.batches.state_dict(),
            "elapsed_s": self.elapsed(),
            "best": self.best,
            "history": self.history,
            "last_metrics": metrics,
            "modules": {k: m.state_dict() for k, m in self.task.modules().items()},
            "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
            "scalers": {k: s.state_dict() for k, s in self.scalers.items()},
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "task_state": self.task.state_dict(),
            "rng": rng,
            "world_size": self.info.world_size,
        }
        tmp = self.out / f"{STATE_FILE}.partial"
        torch.save(state, tmp)
        os.replace(tmp, self.out / STATE_FILE)
        keep = int(self.cfg["checkpoint"]["keep_last"])
        if keep > 0:
            self.save(f"step-{self.step:07d}", "ema", metrics)
            snaps = sorted(self.out.glob("step-*.safetensors"))
            for old in snaps[:-keep]:
                old.unlink(missing_ok=True)
                old.with_suffix(".json").unlink(missing_ok=True)

    def _supervised_trainer_state(self, state: dict[str, Any]) -> dict[str, Any]:
        """A ``last.state.pt`` of the supervised trainer before the engine (raw weights in
        ``last.safetensors``, one optimiser) in the engine's layout, so such runs resume."""
        from safetensors.torch import load_file

        weights = self.out / "last.safetensors"
        if not weights.is_file():
            raise ConfigError(f"--resume: no last.safetensors beside {STATE_FILE} in {self.out}")
        return {
            **state,
            "task": "SupervisedTask",
            "batches": {"epoch": state["epoch"], "batch_in_epoch": state["batch_in_epoch"]},
            "best": state["best_psnr"],
            "last_metrics": None,
            "modules": {"model": load_file(str(weights), device="cpu")},
            "optimizers": {"model": state["optimizer"]},
            "scalers": {"model": state["scaler"]},
            "task_state": {},
        }

    def _load_last(self) -> None:
        path = self.out / STATE_FILE
        if not path.is_file():
            raise ConfigError(f"--resume: no {STATE_FILE} in {self.out} (nothing to resume)")
        state = torch.load(path, map_location="cpu", weights_only=False)
        if "modules" not in state and "optimizer" in state and "scaler" in state:
            state = self._supervised_trainer_state(state)
        if "modules" not in state or state.get("task") != self.task_cls.__name__:
            raise ConfigError(f"--resume: {path} is not the state of a {self.task_cls.__name__}")
        try:
            for key, module in self.task.modules().items():
                module.load_state_dict(state["modules"][key], strict=True)
        except (RuntimeError, KeyError) as exc:
            raise ConfigError(
                f"--resume: the run in {self.out} does not match the configured model "
                f"({str(exc).splitlines()[0]})"
            ) from exc
        for key, opt in self.optimizers.items():
            opt.load_state_dict(state["optimizers"][key])
            self.scalers[key].load_state_dict(state["scalers"][key])
        if self.ema is not None:
            if state["ema"] is None:
                self.ema = EMA(self.task.model, self.cfg["ema"]["decay"])
            else:
                self.ema.load_state_dict(state["ema"])
        self.step = int(state["step"])
        self.batches.load_state_dict(state["batches"])
        self.elapsed_before = float(state["elapsed_s"])
        self.best = float(state["best"])
        self.history = list(state["history"])
        self.last_metrics = state["last_metrics"]
        self.task.load_state_dict(state["task_state"])
        self.last_good = self.out / "last.safetensors"
        rng = state["rng"]
        if len(rng) == self.info.world_size:
            set_rng_state(rng[self.info.rank])
        else:  # a different number of processes: fresh, rank-dependent randomness
            seed_everything(int(self.cfg["seed"]) * 1000 + self.info.rank + self.step)

    # --------------------------------------------------------------------------- loop
    def _set_lr(self) -> None:
        scfg = self.cfg["schedule"]
        factor = lr_factor(
            self.step, int(scfg["warmup_steps"]), self.progress(), float(scfg["min_lr_ratio"])
        )
        for name, opt in self.optimizers.items():
            for group in opt.param_groups:
                group["lr"] = self.base_lr[name] * factor
        first = next(iter(self.base_lr))
        self.current_lr = self.base_lr[first] * factor

    def _done(self) -> bool:
        budget = self.cfg["budget"]
        done = budget["steps"] is not None and self.step >= budget["steps"]
        if budget["minutes"] is not None:
            done = ddp.any_true(
                done or self.elapsed() >= 60 * budget["minutes"], self.info, self.device
            )
        return done

    def _better(self, metrics: dict[str, float]) -> bool:
        key, direction = self.task.best_metric  # type: ignore[misc]
        value = metrics.get(key)
        if value is None or math.isnan(value):
            return False
        return value > self.best if direction == "max" else value < self.best

    def _validate_and_save(self, writer: Any) -> None:
        metrics: dict[str, float] | None = None
        if self.info.is_main and self.val_ds is not None:
            metrics = self.validate()
            self.history.append({"step": self.step, **metrics})
            if writer is not None:
                for key, value in metrics.items():
                    writer.add_scalar(f"val/{key.removeprefix('val_')}", value, self.step)
            if self.task.best_metric is not None and self._better(metrics):
                self.best = metrics[self.task.best_metric[0]]
                self.save(self.task.result, "ema", metrics)
        self.last_metrics = metrics
        self._save_last(metrics)
        stop: BaseException | None = None
        if metrics is not None and self.on_validation is not None:
            try:
                self.on_validation(self.step, dict(self.history[-1]))
            except BaseException as exc:  # noqa: BLE001 - re-raised below, on every rank
                stop = exc
        if ddp.any_true(stop is not None, self.info, self.device):
            raise stop if stop is not None else StopTraining(f"stopped by rank 0 at {self.step}")

    def _check_output_dir(self) -> None:
        if self.resume:
            if not (self.out / STATE_FILE).is_file():
                raise ConfigError(f"--resume: no {STATE_FILE} in {self.out} (nothing to resume)")
        elif (self.out / STATE_FILE).exists() or (
            self.out / f"{self.task.result}.safetensors"
        ).exists():
            raise ConfigError(
                f"{self.out} already holds a training run; use --resume to continue it "
                "or choose another --out"
            )
        self.out.mkdir(parents=True, exist_ok=True)

    def _setup(self) -> None:
        from lenssr.device import set_cpu_threads

        if self.info.enabled and self.device.type == "cuda":
            self.device = torch.device("cuda", self.info.local_rank)
        set_cpu_threads(self.device, self.cfg["threads"], self.info.world_size)
        if self.info.is_main:
            self._check_output_dir()
        amp = self.cfg["amp"]
        self.amp_dtype: torch.dtype | None = None
        if self.device.type == "cuda" and amp != "off":
            bf16 = amp == "bf16" or (amp == "auto" and torch.cuda.is_bf16_supported())
            self.amp_dtype = torch.bfloat16 if bf16 else torch.float16
        seed = int(self.cfg["seed"])
        seed_everything(seed)
        self.train_ds, self.val_ds, self.data_info = self.task.datasets()
        dcfg = self.cfg["data"]
        bs = int(dcfg["batch_size"])
        per_rank = math.ceil(len(self.train_ds) / self.info.world_size)
        if per_rank < bs:
            raise ConfigError(
                f"data.batch_size {bs} is larger than the {len(self.train_ds)} training items "
                f"({per_rank} per process); lower data.batch_size or add data"
            )
        self.batches = ResumableBatches(
            self.train_ds, bs, seed, int(dcfg["num_workers"]), self.info.world_size,
            self.info.rank, pin_memory=self.device.type == "cuda",
        )  # fmt: skip
        self.task.build()  # same seed on every rank: identical initial weights
        decay = self.cfg["ema"]["decay"]
        self.ema = EMA(self.task.model, decay) if decay else None
        seed_everything(seed * 1000 + self.info.rank)
        self.step, self.elapsed_before = 0, 0.0
        self.best = -math.inf if (self.task.best_metric or ("", "max"))[1] == "max" else math.inf
        self.last_metrics: dict[str, float] | None = None
        self.current_lr = 0.0
        if self.resume:
            self._load_last()
        elif self.info.is_main:
            (self.out / "config.yaml").write_text(yaml.safe_dump(self.cfg, sort_keys=False))

    def run(self) -> Path:
        """Train within the budget; return the path of the task's result checkpoint."""
        from lenssr.device import resolve_device

        self.device = resolve_device(self.cfg["device"])
        self.info = ddp.setup(self.device)
        try:
            self._setup()
            return self._run()
        finally:
            ddp.teardown(self.info)

    def _run(self) -> Path:
        from lenssr.progress import progress_bar

        self.t0 = time.monotonic()
        writer = None
        if self.info.is_main and self.cfg["log"]["tensorboard"]:
            from torch.utils.tensorboard import SummaryWriter

            writer = SummaryWriter(str(self.out / "tb"))
        every_val = int(self.cfg["val"]["every_steps"])
        every_log = int(self.cfg["log"]["every_steps"])
        self.task.model.train()
        self.say(
            f"{self.task.summary()} ({self.device}, {self.info.world_size} process(es)) "
            f"-> {self.out}"
        )
        smooth: dict[str, float] = {}
        done = self._done()
        try:
            with progress_bar(
                self.cfg["budget"]["steps"],
                self.task.label(),
                enabled=self.info.is_main and not self.quiet,
            ) as advance:
                if self.step:
                    advance(self.step)
                batches = iter(self.batches)
                while not done:
                    self._set_lr()
                    logs = self.task.train_step(batches)
                    if self.info.enabled:
                        _broadcast_buffers(self.task.modules().values())
                    if self.ema is not None:
                        self.ema.update(self.task.model)
                    self.logs.append(logs)
                    self.step += 1
                    for label, key in self.task.shown.items():
                        old = smooth.get(label, logs[key])
                        smooth[label] = 0.95 * old + 0.05 * logs[key]
                    if writer is not None and self.step % every_log == 0:
                        for key, value in logs.items():
                            writer.add_scalar(f"train/{key}", value, self.step)
                        writer.add_scalar("train/lr", self.current_lr, self.step)
                    done = self._done()
                    if self.step % every_val == 0 or done:
                        self._validate_and_save(writer)
                    status = "  ".join(f"{k} {v:.4g}" for k, v in smooth.items())
                    if math.isfinite(self.best) and self.task.best_metric is not None:
                        status += f"  best {self.task.best_metric[0]} {self.best:.4g}"
                    advance(1, status)
        finally:
            if writer is not None:
                writer.close()
        ddp.barrier(self.info)
        result = self.out / f"{self.task.result}.safetensors"
        if self.info.is_main and (self.task.best_metric is None or self.val_ds is None):
            if self.save(self.task.result, "ema", self.last_metrics) is None:
                raise LenssrError(
                    f"the final weights are not finite; last good checkpoint kept: {self.last_good}"
                )
        ddp.barrier(self.info)
        self.say(f"done: {self.step} steps in {self.elapsed():.0f} s; result {result}")
        return result


def run_task(task: str, config: dict[str, Any], **kwargs: Any) -> Path:
    """Run training task ``task`` (``supervised``, ``denoise``, ``gan``) as ``config`` says;
    returns its result checkpoint. ``kwargs``: those of :class:`Engine`."""
    return Engine(task, config, **kwargs).run()
