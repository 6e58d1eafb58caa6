"""The 8 symmetries of the square (dihedral group D4) on the last two axes of an image batch.

Lensing images have no preferred orientation, so all 8 are valid augmentations and test-time
ensembles. ``k = r + 4 * f``: rotate by ``r * 90`` degrees counter-clockwise (``r`` in 0..3),
then flip left-right when ``f == 1``.
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np
import torch

A = TypeVar("A", np.ndarray, torch.Tensor)


def _check(k: int) -> tuple[int, bool]:
    if not 0 <= int(k) < 8:
        raise ValueError(f"dihedral index k must be in 0..7, got {k}")
    return int(k) % 4, int(k) >= 4


def dihedral(x: A, k: int) -> A:
    """Apply symmetry ``k`` (0..7) to ``x`` of shape ``(..., H, W)`` (numpy or torch).

    Returns an array of shape ``(..., H, W)`` for even rotations, ``(..., W, H)`` otherwise.
    """
    r, flip = _check(k)
    if isinstance(x, torch.Tensor):
        y = torch.rot90(x, r, dims=(-2, -1))
        return torch.flip(y, dims=(-1,)) if flip else y
    y = np.rot90(x, r, axes=(-2, -1))
    return y[..., ::-1] if flip else y


def inverse_dihedral(x: A, k: int) -> A:
    """Undo :func:`dihedral`: ``inverse_dihedral(dihedral(x, k), k) == x``."""
    r, flip = _check(k)
    if isinstance(x, torch.Tensor):
        y = torch.flip(x, dims=(-1,)) if flip else x
        return torch.rot90(y, -r, dims=(-2, -1))
    y = x[..., ::-1] if flip else x
    return np.rot90(y, -r, axes=(-2, -1))
