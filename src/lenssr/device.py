"""Device selection: CPU everywhere, CUDA when present."""

from __future__ import annotations

import os

import torch

from lenssr.errors import LenssrError


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """A torch device for ``"auto"`` (CUDA if available, else CPU), ``"cpu"`` or ``"cuda"``."""
    if isinstance(device, torch.device):
        return device
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise LenssrError(f"device {device!r} requested but CUDA is not available on this machine")
    try:
        return torch.device(device)
    except RuntimeError as exc:
        raise LenssrError(f"unknown device {device!r} (use auto, cpu or cuda)") from exc


def set_cpu_threads(device: torch.device, threads: int | None, processes: int = 1) -> None:
    """On CPU, use ``threads`` torch threads (default: the cores shared among ``processes``)."""
    if device.type == "cpu":
        torch.set_num_threads(threads or max(1, (os.cpu_count() or 1) // processes))
