"""Python API for inference: ``load_model(...)`` -> :class:`SRModel` with ``.upscale(lr)``.

Example (a notebook)::

    from lenssr.inference import load_model
    model = load_model("hybrid")                  # shipped weights, CUDA when present
    sr = model.upscale(lr)                        # (75, 75) e-/s/arcsec^2 -> (150, 150), same units
    sr4 = model.upscale(lr_stack, scale=4, tta=True)
    big = model.upscale(mosaic, tile=256)         # bounded memory, seamless blend
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from lenssr.device import resolve_device
from lenssr.errors import LenssrError
from lenssr.inference.base import Upscaler

BICUBIC = "bicubic"


def module_descriptor(module: nn.Module, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """A minimal descriptor for an in-memory module (``scale``, ``scales``, ``size_multiple``,
    ``normalization``), for modules that did not come from a checkpoint."""
    scale = int(getattr(module, "scale", 2))
    descriptor: dict[str, Any] = {
        "arch": getattr(module, "arch_name", type(module).__name__.lower()),
        "arch_config": dict(getattr(module, "config", {})),
        "scale": scale,
        "scales": [int(s) for s in getattr(module, "scales", (scale,))],
        "in_channels": 1,
        "normalization": {"kind": "minmax"},
        "size_multiple": int(getattr(module, "size_multiple", 1)),
    }
    descriptor.update(extra or {})
    return descriptor


class SRModel(Upscaler):
    """A PyTorch SR network with its descriptor, ready for :meth:`upscale`.

    Attributes:
        name, scale, scales, descriptor: see :class:`~lenssr.inference.base.Upscaler`.
        module: the ``nn.Module`` (eval mode, on ``device``); ``forward`` works in normalised
            units on ``(B, 1, h, w)``.
        device: the torch device it runs on.
        backend: what runs :meth:`upscale` (``"torch"`` here; see
            :mod:`lenssr.inference.backend`).
    """

    backend = "torch"

    def __init__(
        self,
        module: nn.Module,
        descriptor: dict[str, Any] | None = None,
        name: str | None = None,
        device: str | torch.device = "auto",
    ) -> None:
        descriptor = module_descriptor(module) if descriptor is None else descriptor
        super().__init__(name or str(descriptor.get("arch", "model")), descriptor)
        self.device = resolve_device(device)
        self.module = module.to(self.device).eval()

    @torch.inference_mode()
    def _forward(
        self, x: np.ndarray, scale: int, cond: np.ndarray | None = None, sigma: bool = False
    ) -> np.ndarray:
        t = torch.from_numpy(x).to(self.device)
        kw = {} if cond is None else {"cond": torch.from_numpy(cond).to(self.device)}
        if sigma:
            y = self.module.forward_with_sigma(t, scale=scale, **kw)
        else:
            y = self.module(t, scale=scale, **kw)
        return y.float().cpu().numpy()


def available_models() -> list[str]:
    """Names accepted by :func:`load_model` besides checkpoint paths: ``bicubic`` + shipped."""
    from lenssr.models.zoo import shipped_models

    return sorted({BICUBIC, *shipped_models()})


def _looks_like_path(name: str | Path) -> bool:
    if isinstance(name, Path):
        return True
    return name.endswith((".safetensors", ".json")) or "/" in name or "\\" in name


def load_model(
    name_or_path: str | Path = "hybrid", device: str = "auto", backend: str = "auto"
) -> SRModel:
    """Load an SR model by name or checkpoint path, on the fastest backend by default.

    Args:
        name_or_path: a shipped model name (``lenssr.models.shipped_models()``, e.g. ``hybrid``,
            ``hybrid-gan``), ``"bicubic"`` (no weights, scales 2 and 4), or a checkpoint path
            (``.safetensors``, ``.json`` or their common stem).
        device: ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda"``.
        backend: ``"auto"`` (CPU: ONNX Runtime through a per-user cache of checked exports,
            PyTorch when it cannot run the graph; CUDA: PyTorch), ``"torch"`` or
            ``"onnxruntime"``; see :mod:`lenssr.inference.backend`. Every backend returns an
            ``SRModel`` whose ``module`` is the torch network and whose ``backend`` names what
            runs ``upscale``.

    Raises:
        LenssrError: unknown name (the message lists the available ones), unreadable
            checkpoint, unknown backend, or ``onnxruntime`` that cannot run the model.
    """
    from lenssr.inference.backend import BACKENDS, select_backend

    if backend not in BACKENDS:
        raise LenssrError(f"unknown backend {backend!r}; use {', '.join(BACKENDS)}")
    return select_backend(_load_torch(name_or_path, device), backend)


def _load_torch(name_or_path: str | Path, device: str) -> SRModel:
    """The PyTorch :class:`SRModel` of a name or checkpoint path (see :func:`load_model`)."""
    from lenssr.models.checkpoint import load_checkpoint
    from lenssr.models.registry import create_model
    from lenssr.models.zoo import shipped_models

    dev = resolve_device(device)
    key = str(name_or_path)
    if not isinstance(name_or_path, Path) and key.lower() == BICUBIC:
        module = create_model(BICUBIC, scale=2)
        return SRModel(module, module_descriptor(module), name=BICUBIC, device=dev)

    shipped = shipped_models()
    if not isinstance(name_or_path, Path) and key in shipped:
        module, descriptor = load_checkpoint(shipped[key], map_location="cpu")
        sr = SRModel(module, descriptor, name=key, device=dev)
        sr.weights_dir = Path(shipped[key]).parent
        return sr

    path = Path(name_or_path)
    stem = path.with_suffix("") if path.suffix in (".safetensors", ".json") else path
    candidates = (path, stem.with_name(stem.name + ".safetensors"))
    if any(p.is_file() for p in candidates) and (_looks_like_path(name_or_path) or path.is_file()):
        module, descriptor = load_checkpoint(path, map_location="cpu")
        sr = SRModel(module, descriptor, name=stem.name, device=dev)
        sr.weights_dir = path.parent
        return sr
    if _looks_like_path(name_or_path):
        raise LenssrError(f"checkpoint not found: {path}")
    raise LenssrError(
        f"unknown model {key!r}; available: {', '.join(available_models())} "
        "(or the path of a .safetensors checkpoint)"
    )
