"""Exact resume for the pretraining and GAN trainers: a resumable batch stream and a state file.

Both trainers draw their batches from :class:`ResumableBatches` (epoch ``e`` shuffled with
``seed + e`` by the supervised trainer's :class:`~lenssr.training.trainer.ResumableSampler`,
crops and augmentations of epoch ``e`` from the dataset's own per-item generators) and write
``last.state.pt`` (step, position in the batch stream, optimiser, EMA and RNG states, history)
next to ``last.*`` at every validation. A run resumed from it continues exactly: on one CPU
process, a run interrupted at a validation and resumed gives the same weights as an
uninterrupted one.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from lenssr.errors import ConfigError

STATE_FILE = "last.state.pt"


class ResumableBatches:
    """Endless batches of ``dataset`` that can start at any ``(epoch, batch)`` position.

    Epoch ``e`` is a permutation drawn with ``seed + e`` (incomplete last batch dropped); the
    DataLoader's worker seeds are reset per epoch, so the stream does not depend on where a run
    was interrupted. :attr:`epoch` and :attr:`batch_in_epoch` say what was consumed.
    """

    def __init__(self, dataset: Dataset, batch_size: int, seed: int, num_workers: int = 0):
        from lenssr.training.trainer import EpochItems, ResumableSampler

        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.epoch = 0
        self.batch_in_epoch = 0
        self.sampler = ResumableSampler(dataset, num_replicas=1, rank=0, seed=self.seed)
        self.loader_gen = torch.Generator()
        self.loader = DataLoader(
            EpochItems(dataset),
            batch_size=self.batch_size,
            sampler=self.sampler,
            drop_last=True,
            num_workers=int(num_workers),
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


def rng_state() -> dict[str, Any]:
    """The global Python, numpy and torch (and CUDA) RNG states."""
    from lenssr.training.trainer import _rng_state

    return _rng_state()


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore RNG states saved by :func:`rng_state`."""
    from lenssr.training.trainer import _set_rng_state

    _set_rng_state(state)


def save_state(out: Path, state: dict[str, Any]) -> Path:
    """Write ``out/last.state.pt`` atomically (a crash never leaves half a state file)."""
    path = Path(out) / STATE_FILE
    tmp = path.with_name(path.name + ".partial")
    torch.save(state, tmp)
    os.replace(tmp, path)
    return path


def load_state(out: Path) -> dict[str, Any]:
    """Read ``out/last.state.pt``; a missing one is a :class:`ConfigError` naming ``--resume``."""
    path = Path(out) / STATE_FILE
    if not path.is_file():
        raise ConfigError(f"--resume: no {STATE_FILE} in {out} (nothing to resume)")
    return torch.load(path, map_location="cpu", weights_only=False)


def check_output_dir(out: Path, resume: bool, result: str) -> None:
    """Refuse to overwrite a run unless resuming, and to resume where there is no run.

    Args:
        out: the run's ``checkpoint.dir``.
        resume: whether ``--resume`` was given.
        result: the file name of the run's final result (``pretrained.safetensors``, ...).
    """
    if resume:
        if not (Path(out) / STATE_FILE).is_file():
            raise ConfigError(f"--resume: no {STATE_FILE} in {out} (nothing to resume)")
        return
    if (Path(out) / result).exists() or (Path(out) / STATE_FILE).exists():
        raise ConfigError(
            f"{out} already holds a run; use --resume to continue it or choose another --out"
        )


def loop_state(trainer: Any, **extra: Any) -> dict[str, Any]:
    """The resume state every trainer loop shares, plus ``extra`` (optimisers, generators...).

    ``trainer`` has ``step``, ``batches`` (:class:`ResumableBatches`), ``history``, ``ema``
    (an EMA or ``None``) and ``_elapsed()`` (seconds).
    """
    return {
        "step": trainer.step,
        "batches": trainer.batches.state_dict(),
        "elapsed_s": trainer._elapsed(),
        "history": trainer.history,
        "ema": trainer.ema.state_dict() if trainer.ema is not None else None,
        "rng": rng_state(),
        **extra,
    }


def restore_loop_state(trainer: Any, state: dict[str, Any]) -> None:
    """Put a :func:`loop_state` back: step, batch position, elapsed time (into
    ``trainer.elapsed_before``), history, EMA and the global RNG states."""
    trainer.step = int(state["step"])
    trainer.batches.load_state_dict(state["batches"])
    trainer.elapsed_before = float(state["elapsed_s"])
    trainer.history = list(state["history"])
    if trainer.ema is not None and state["ema"] is not None:
        trainer.ema.load_state_dict(state["ema"])
    set_rng_state(state["rng"])


def after_checkpoint(trainer: Any, last: Path | None, metrics: dict[str, float] | None) -> None:
    """What both loops do once ``last.*`` is written (``last`` is ``None`` when the weights were
    not finite and nothing was written): remember it as the last good checkpoint, write
    ``last.state.pt`` beside it (``trainer._state()``), then call ``trainer.on_validation(step,
    metrics)`` when there was a validation; an exception from the callback ends the run."""
    if last is not None:
        trainer.last_good = last
        save_state(trainer.out, trainer._state())
    if metrics is not None and trainer.on_validation is not None:
        trainer.on_validation(trainer.step, dict(metrics))
