"""Per-image normalisation stored with every model and inverted on output.

Convention (``kind="minmax"``): for each LR input image, ``lo = min(LR)`` and ``hi = max(LR)``;
the network sees ``(x - lo) / (hi - lo)`` and its output ``y`` is returned as
``y * (hi - lo) + lo``. The same ``lo, hi`` (taken from the LR image) are applied to the HR
target during training, so the mapping is scale- and offset-equivariant: a model trained on
surface brightness in e-/s/arcsec^2 works unchanged on counts, 16-bit PNG or FITS data, and its
output comes back in the input's units.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

ArrayLike = np.ndarray | torch.Tensor

_EPS = 1e-12


@dataclass(frozen=True)
class Normalization:
    """Per-image affine normalisation computed from the LR image."""

    kind: str = "minmax"

    def __post_init__(self) -> None:
        if self.kind not in ("minmax",):
            raise ValueError(f"unknown normalisation kind {self.kind!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> Normalization:
        return cls(**(d or {}))

    def stats(self, lr: ArrayLike) -> tuple[ArrayLike, ArrayLike]:
        """``(lo, hi)`` per image over the last two axes, shaped to broadcast (``(..., 1, 1)``)."""
        if isinstance(lr, torch.Tensor):
            flat = lr.flatten(-2)
            lo = flat.amin(-1)[..., None, None]
            hi = flat.amax(-1)[..., None, None]
            hi = torch.where(hi - lo > _EPS, hi, lo + 1.0)
        else:
            lo = np.min(lr, axis=(-2, -1), keepdims=True)
            hi = np.max(lr, axis=(-2, -1), keepdims=True)
            hi = np.where(hi - lo > _EPS, hi, lo + 1.0)
        return lo, hi

    @staticmethod
    def forward(x: ArrayLike, lo: ArrayLike, hi: ArrayLike) -> ArrayLike:
        return (x - lo) / (hi - lo)

    @staticmethod
    def inverse(y: ArrayLike, lo: ArrayLike, hi: ArrayLike) -> ArrayLike:
        return y * (hi - lo) + lo
