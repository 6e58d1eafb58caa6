"""The backend-independent upscale pipeline shared by the PyTorch and ONNX Runtime models.

``Upscaler.upscale`` takes images in any units, normalises each one with the model's stored
:class:`~lenssr.data.normalize.Normalization`, pads to the network's ``size_multiple``, runs the
network (whole image or tiles, optionally 8-fold TTA), crops, and maps the result back to the
input's units. Subclasses only provide ``_forward``: normalised ``(B, 1, H, W)`` float32 in,
``(B, 1, s*H, s*W)`` float32 out, for one scale.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import numpy as np

from lenssr.data.augment import dihedral, inverse_dihedral
from lenssr.data.normalize import Normalization
from lenssr.errors import LenssrError
from lenssr.inference.tiling import AUTO_TILE, AUTO_TILE_PIXELS, run_tiled

#: Most LR pixels per network call when tiling (bounds peak memory whatever ``batch_size``).
MAX_TILE_PIXELS = 512 * 512
#: Size of the test-time self-ensemble: 4 rotations x optional flip (lenssr.data.dihedral).
N_DIHEDRAL = 8


def pad_to_multiple_np(x: np.ndarray, multiple: int, min_side: int = 1) -> np.ndarray:
    """Pad ``(..., H, W)`` on the bottom/right to multiples of ``multiple`` that are at least
    ``min_side`` (reflect; edge replication when the image is too small to reflect)."""
    h, w = x.shape[-2:]
    th = max(h + (-h) % multiple, min_side + (-min_side) % multiple)
    tw = max(w + (-w) % multiple, min_side + (-min_side) % multiple)
    ph, pw = th - h, tw - w
    if ph == 0 and pw == 0:
        return x
    mode = "reflect" if ph < h and pw < w else "edge"
    pad = [(0, 0)] * (x.ndim - 2) + [(0, ph), (0, pw)]
    return np.pad(x, pad, mode=mode)


class Upscaler(ABC):
    """Super-resolution of single-channel float images in physical units.

    Attributes:
        name: model name (shipped name, ``"bicubic"``, or checkpoint file stem).
        scale: default output scale.
        scales: all scales the model serves (pyramid models: ``(2, 4)``).
        descriptor: the checkpoint descriptor (``arch``, ``arch_config``, ``normalization``,
            ``size_multiple``, ...).
    """

    def __init__(self, name: str, descriptor: dict[str, Any]) -> None:
        self.name = name
        self.descriptor = descriptor
        self.scale = int(descriptor.get("scale", 2))
        self.scales = tuple(int(s) for s in descriptor.get("scales", [self.scale]))
        self.size_multiple = max(1, int(descriptor.get("size_multiple", 1)))
        self.normalization = Normalization.from_dict(descriptor.get("normalization"))
        #: smallest side given to the network (images below are padded, outputs cropped)
        self.min_side = 1

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name={self.name!r}, scale={self.scale}, scales={self.scales})"
        )

    @abstractmethod
    def _forward(self, x: np.ndarray, scale: int) -> np.ndarray:
        """Network on normalised ``(B, 1, H, W)`` float32 (H, W multiples of ``size_multiple``)
        -> ``(B, 1, scale*H, scale*W)`` float32."""

    def check_scale(self, scale: int | None) -> int:
        """The scale to use: ``scale`` if the model serves it, the default when ``None``."""
        if scale is None:
            return self.scale
        if int(scale) not in self.scales:
            raise LenssrError(
                f"model {self.name!r} does not serve scale {scale}; it serves {list(self.scales)}"
            )
        return int(scale)

    def _run_padded(self, x: np.ndarray, scale: int) -> np.ndarray:
        """``(B, h, w)`` normalised -> ``(B, s*h, s*w)``: pad, network, crop."""
        b, h, w = x.shape
        xp = pad_to_multiple_np(x, self.size_multiple, self.min_side)
        y = self._forward(np.ascontiguousarray(xp[:, None], dtype=np.float32), scale)
        if y.shape[0] != b or y.shape[-2:] != (scale * xp.shape[1], scale * xp.shape[2]):
            raise RuntimeError(
                f"model {self.name!r} returned shape {tuple(y.shape)} for input "
                f"{tuple(xp.shape)} at scale {scale}"
            )
        return y[:, 0, : scale * h, : scale * w]

    def _run(
        self, x: np.ndarray, scale: int, tile: int | None, overlap: int | None, batch_size: int
    ) -> np.ndarray:
        """``(B, h, w)`` normalised -> ``(B, s*h, s*w)``, tiled when ``tile`` is set."""
        h, w = x.shape[-2:]
        if tile is None or (h <= tile and w <= tile):
            out = [
                self._run_padded(x[i : i + batch_size], scale)
                for i in range(0, x.shape[0], batch_size)
            ]
            return np.concatenate(out, axis=0)
        # tiles per call: at most batch_size, and at most MAX_TILE_PIXELS LR pixels in total
        per_call = max(1, min(batch_size, MAX_TILE_PIXELS // (tile * tile)))
        return run_tiled(lambda t: self._run_padded(t, scale), x, scale, tile, overlap, per_call)

    def upscale(
        self,
        lr: np.ndarray,
        scale: int | None = None,
        tta: bool = False,
        tile: int | None = None,
        batch_size: int = 16,
        overlap: int | None = None,
    ) -> np.ndarray:
        """Super-resolve LR images, returning them in the input's units.

        Args:
            lr: ``(h, w)`` or ``(N, h, w)`` float array in any units (e-/s/arcsec^2, counts,
                ADU...). Non-finite pixels (NaN/inf, e.g. FITS blanks) are filled with the
                image minimum for the network and come back as NaN in the
                corresponding ``scale x scale`` HR blocks.
            scale: output scale (default: the model's ``scale``; pyramid models also serve 4).
            tta: average the 8 rotations/flips (inverse-transformed), ~8x slower.
            tile: tile side in LR pixels (``None``: whole image, except that images above
                512x512 LR pixels are tiled with 256-pixel tiles automatically; ``0``: never tile).
            batch_size: images (or tiles) per network call; tiled calls also stay under
                512x512 LR pixels in total (4 tiles of 256), which bounds peak memory.
            overlap: tile overlap in LR pixels (default ``tile // 8``, at least 4).

        Returns:
            ``(s*h, s*w)`` or ``(N, s*h, s*w)`` float32 in the input's units.
        """
        s = self.check_scale(scale)
        arr = np.asarray(lr)
        if arr.ndim not in (2, 3) or min(arr.shape[-2:], default=0) < 1 or arr.size == 0:
            raise LenssrError(
                f"upscale expects a (h, w) or (N, h, w) array, got shape {tuple(arr.shape)}"
            )
        if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
            raise LenssrError(f"upscale expects a numeric array, got dtype {arr.dtype}")
        if np.iscomplexobj(arr):
            raise LenssrError("upscale expects a real-valued array, got complex values")
        if batch_size < 1:
            raise LenssrError(f"batch_size must be >= 1, got {batch_size}")
        single = arr.ndim == 2
        x = arr[None] if single else arr
        x = x.astype(np.float64)
        h, w = x.shape[-2:]
        if tile is None and h * w > AUTO_TILE_PIXELS:
            tile = AUTO_TILE
        elif tile is not None and tile <= 0:
            tile = None
        if tile is not None and tile < 2 * max(self.size_multiple, 4):
            raise LenssrError(f"tile must be at least {2 * max(self.size_multiple, 4)} LR pixels")
        if tile is not None:
            tile = -(-tile // self.size_multiple) * self.size_multiple

        bad = ~np.isfinite(x)
        if bad.any():
            if bad.all(axis=(-2, -1)).any():
                raise LenssrError("upscale: an image has no finite pixel")
            fill = np.nanmin(np.where(bad, np.nan, x), axis=(-2, -1), keepdims=True)
            x = np.where(bad, fill, x)
        lo, hi = self.normalization.stats(x)
        xn = self.normalization.forward(x, lo, hi).astype(np.float32)

        if tta:
            acc = np.zeros((x.shape[0], s * h, s * w), dtype=np.float64)
            for k in range(N_DIHEDRAL):
                xk = np.ascontiguousarray(dihedral(xn, k))
                acc += inverse_dihedral(self._run(xk, s, tile, overlap, batch_size), k)
            yn = acc / N_DIHEDRAL
        else:
            yn = self._run(xn, s, tile, overlap, batch_size).astype(np.float64)

        y = self.normalization.inverse(yn, lo, hi).astype(np.float32)
        if bad.any():
            y[bad.repeat(s, axis=-2).repeat(s, axis=-1)] = np.nan
        return y[0] if single else y
