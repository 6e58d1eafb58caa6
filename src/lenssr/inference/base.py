"""The backend-independent upscale pipeline shared by the PyTorch and ONNX Runtime models.

``Upscaler.upscale`` takes images in any units, normalises each one with the model's stored
:class:`~lenssr.data.normalize.Normalization`, pads to the network's ``size_multiple``, runs the
network (whole image or tiles, optionally 8-fold TTA), crops, and maps the result back to the
input's units. Subclasses only provide ``_forward``: normalised ``(B, 1, H, W)`` float32 in,
``(B, 1, s*H, s*W)`` float32 out, for one scale.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import numpy as np

from lenssr.data.augment import dihedral, inverse_dihedral
from lenssr.data.normalize import Normalization
from lenssr.errors import LenssrError
from lenssr.inference.tiling import AUTO_TILE, AUTO_TILE_PIXELS, run_tiled
from lenssr.models.scales import check_scale

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
        cond = descriptor.get("conditioning") or {}
        #: instrument-aware model: takes the LR PSF FWHM and noise level (conditioning vector)
        self.conditioned = bool(cond.get("inputs"))
        #: the instrument range the model was trained on (``psf_fwhm_pix``, ``log10_noise``)
        self.instrument_range: dict[str, Any] = dict(cond.get("range") or {})
        unc = descriptor.get("uncertainty") or {}
        #: the model predicts a per-pixel 1-sigma (``upscale(..., return_sigma=True)``)
        self.has_sigma = bool(descriptor.get("arch_config", {}).get("sigma_head", False))
        #: the sigma calibration fitted on held-out data (``lenssr.inference.uncertainty``)
        self.uncertainty: dict[str, Any] = dict(unc)
        #: extra factor on the calibrated sigma (the whole calibration of older descriptors)
        self.sigma_scale = 1.0 if unc.get("coefficients") else float(unc.get("sigma_scale", 1.0))
        #: what the last :meth:`upscale` call assumed or estimated about the instrument
        self.last_instrument: dict[str, Any] = {}
        #: the folder of the checkpoint's files (the variance network's weights lie there)
        self.weights_dir: Path | None = None

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name={self.name!r}, scale={self.scale}, scales={self.scales})"
        )

    @abstractmethod
    def _forward(
        self, x: np.ndarray, scale: int, cond: np.ndarray | None = None, sigma: bool = False
    ) -> np.ndarray:
        """Network on normalised ``(B, 1, H, W)`` float32 (H, W multiples of ``size_multiple``)
        -> ``(B, 1, scale*H, scale*W)`` float32; ``cond`` ``(B, 2)`` float32: the instrument
        (conditioned models); ``sigma``: return ``(B, 2, ...)``, the image and its log 1-sigma
        (sigma-head models)."""

    def check_scale(self, scale: int | None) -> int:
        """The scale to use: ``scale`` if the model serves it, the default when ``None``
        (:func:`lenssr.models.scales.check_scale`)."""
        return check_scale(self, scale)

    def _run_padded(
        self, x: np.ndarray, scale: int, cond: np.ndarray | None = None, sigma: bool = False
    ) -> np.ndarray:
        """``(B, h, w)`` normalised -> ``(B, s*h, s*w)`` (``sigma``: ``(B, 2, s*h, s*w)``, the
        image and its log 1-sigma): pad, network, crop. ``cond``: ``(B, 2)`` or ``(1, 2)``."""
        b, h, w = x.shape
        xp = pad_to_multiple_np(x, self.size_multiple, self.min_side)
        if cond is not None:
            cond = np.array(np.broadcast_to(cond, (b, cond.shape[-1])), dtype=np.float32)
        xin = np.ascontiguousarray(xp[:, None], dtype=np.float32)
        # plain models keep the two-argument call (subclasses may define only that)
        y = (
            self._forward(xin, scale)
            if cond is None and not sigma
            else (self._forward(xin, scale, cond=cond, sigma=sigma))
        )
        if y.shape[0] != b or y.shape[-2:] != (scale * xp.shape[1], scale * xp.shape[2]):
            raise RuntimeError(
                f"model {self.name!r} returned shape {tuple(y.shape)} for input "
                f"{tuple(xp.shape)} at scale {scale}"
            )
        y = y[..., : scale * h, : scale * w]
        return y if sigma else y[:, 0]

    def _run(
        self,
        x: np.ndarray,
        scale: int,
        tile: int | None,
        overlap: int | None,
        batch_size: int,
        cond: np.ndarray | None = None,
        sigma: bool = False,
    ) -> np.ndarray:
        """``(B, h, w)`` normalised -> ``(B, s*h, s*w)`` (``sigma``: ``(B, 2, s*h, s*w)``),
        tiled when ``tile`` is set; ``cond``: ``(B, 2)`` instrument of each image."""
        h, w = x.shape[-2:]
        if tile is None or (h <= tile and w <= tile):
            out = [
                self._run_padded(
                    x[i : i + batch_size],
                    scale,
                    None if cond is None else cond[i : i + batch_size],
                    sigma,
                )  # fmt: skip
                for i in range(0, x.shape[0], batch_size)
            ]
            return np.concatenate(out, axis=0)
        # tiles per call: at most batch_size, and at most MAX_TILE_PIXELS LR pixels in total
        per_call = max(1, min(batch_size, MAX_TILE_PIXELS // (tile * tile)))
        if sigma:  # the log-sigma channel is tiled as a second image
            parts = [
                np.stack(
                    [
                        run_tiled(
                            lambda t, c=c, i=i: self._run_padded(
                                t, scale, None if cond is None else cond[i : i + 1], True
                            )[:, c],
                            x[i : i + 1],
                            scale,
                            tile,
                            overlap,
                            per_call,
                        )[0]  # fmt: skip
                        for c in (0, 1)
                    ]
                )
                for i in range(x.shape[0])
            ]
            return np.stack(parts)
        if cond is None:
            return run_tiled(
                lambda t: self._run_padded(t, scale), x, scale, tile, overlap, per_call
            )
        return np.concatenate(
            [
                run_tiled(
                    lambda t, i=i: self._run_padded(t, scale, cond[i : i + 1]),
                    x[i : i + 1],
                    scale,
                    tile,
                    overlap,
                    per_call,
                )  # fmt: skip
                for i in range(x.shape[0])
            ]
        )

    def _instrument(
        self,
        x: np.ndarray,
        psf_fwhm: float | None,
        pixel_scale: float | None,
        noise_sigma: float | np.ndarray | None,
    ) -> tuple[np.ndarray | None, np.ndarray | None, dict[str, Any]]:
        """``(noise_sigma (N,), psf_fwhm_pix, info)`` for a noise-aware / conditioned model.

        ``info`` records what was given, read or assumed (``lenssr upscale`` prints it), and
        warns when the instrument lies outside the range the model was trained on.
        """
        from lenssr.data.conditioning import DEFAULT_INSTRUMENT, psf_fwhm_pixels
        from lenssr.data.normalize import noise_sigma_mad

        info: dict[str, Any] = {}
        if self.normalization.kind != "noise" and not self.conditioned:
            return None, None, info
        if noise_sigma is None:
            sig = np.array([noise_sigma_mad(im) for im in x])
            info["noise_sigma"] = "estimated"
        else:
            sig = np.broadcast_to(np.asarray(noise_sigma, dtype=np.float64), (x.shape[0],))
            if not np.all(np.isfinite(sig)) or np.any(sig < 0):
                raise LenssrError(f"noise_sigma must be finite and >= 0, got {noise_sigma}")
            info["noise_sigma"] = "given"
        if not self.conditioned:
            return sig, None, info
        assumed = [
            k for k, v in (("psf_fwhm", psf_fwhm), ("pixel_scale", pixel_scale)) if v is None
        ]
        try:
            fwhm_pix = psf_fwhm_pixels(psf_fwhm, pixel_scale)
        except ValueError as exc:
            raise LenssrError(str(exc)) from None
        info["psf_fwhm_pix"] = round(fwhm_pix, 4)
        if assumed:
            info["assumed"] = {k: DEFAULT_INSTRUMENT[k] for k in assumed}
        lo, hi = self.instrument_range.get("psf_fwhm_pix", [None, None])
        if lo is not None and not lo - 1e-6 <= fwhm_pix <= hi + 1e-6:
            info["warning"] = (
                f"PSF FWHM {fwhm_pix:.2f} LR pixels is outside the range the model was trained "
                f"on ({lo:g}-{hi:g} pixels); results may be unreliable"
            )
        return sig, np.float64(fwhm_pix), info

    def calibrated_sigma(
        self,
        sr: np.ndarray,
        sigma_head: np.ndarray,
        log10_noise: np.ndarray | None,
        lr_n: np.ndarray,
        lo: np.ndarray,
        hi: np.ndarray,
        noise_sigma: np.ndarray,
        psf_fwhm_pix: Any,
        lr: np.ndarray | None = None,
        run: dict[str, Any] | None = None,
    ) -> np.ndarray:
        """The calibrated 1-sigma ``(N, H, W)`` float32 of SR images ``sr`` (input units) with
        the head's raw ``sigma_head``: the descriptor's three-term model
        (:func:`lenssr.inference.uncertainty.calibrated_sigma`), times the post-hoc variance
        network's per-pixel factor where the descriptor names one
        (:mod:`lenssr.inference.variance_net`). ``lr_n``: the normalised LR images ``(N, h, w)``;
        ``lo``, ``hi``: their normalisation; ``noise_sigma``: their ``(N,)`` noise sigma (input
        units); ``psf_fwhm_pix``: LR PSF FWHM [LR pixels]. ``log10_noise``: the conditioning
        vector's relative noise, which the three-term model takes (None: not conditioned).
        ``lr``: the LR images in input units and ``run`` the ``upscale`` settings that made
        ``sr`` (``tta``, ``tile``, ``batch_size``, ``overlap``), for a variance network with
        bootstrap features (:meth:`bootstrap`)."""
        from lenssr.inference.uncertainty import calibrated_sigma

        sigma = calibrated_sigma(sr, sigma_head, log10_noise, self.uncertainty)
        section = self.uncertainty.get("variance_net")
        if not section:
            return sigma
        from lenssr.data.conditioning import relative_log_noise
        from lenssr.inference import variance_net as vn

        if self.weights_dir is None:
            raise LenssrError(f"model {self.name!r}: the variance network's folder is unknown")
        net = vn.load_variance_net(self.weights_dir / section["file"], section)
        span = np.asarray(hi, np.float64) - np.asarray(lo, np.float64)
        u = relative_log_noise(noise_sigma, lo, hi)
        boot = None
        if section.get("bootstrap"):
            if lr is None or psf_fwhm_pix is None:
                raise LenssrError(f"model {self.name!r}: the bootstrap needs the LR images")
            b2, bn2 = self.bootstrap(lr, sr, float(psf_fwhm_pix), noise_sigma,
                                     section["bootstrap"], **(run or {}))  # fmt: skip
            boot = (b2 / span**2, bn2 / span**2)
        x = vn.features((sr - lo) / span, lr_n, sigma / span, u, psf_fwhm_pix, boot)
        return (sigma * np.exp(vn.log_factor(net, x))).astype(np.float32)

    def bootstrap(
        self,
        lr: np.ndarray,
        sr: np.ndarray,
        psf_fwhm_pix: float,
        noise_sigma: np.ndarray,
        spec: dict[str, Any],
        **run: Any,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The re-observation bootstrap ``(b2, bn2)`` ``(N, H, W)`` of SR images ``sr`` made by
        this model from ``lr`` ``(N, h, w)`` (input units) with LR PSF ``psf_fwhm_pix`` [LR
        pixels] and noise ``noise_sigma`` ``(N,)``
        (:func:`lenssr.inference.bootstrap.bootstrap_terms`); ``spec``: ``{draws, seed,
        hr_psf_fwhm_pix}`` of the variance network's descriptor section; ``run``: the
        ``upscale`` settings that made ``sr`` (``tta``, ``tile``, ...), which the redraws
        repeat. What :attr:`last_instrument` reported is kept."""
        from lenssr.inference.bootstrap import bootstrap_terms

        scale = sr.shape[-1] // lr.shape[-1]

        def redraw(batch: np.ndarray, noise: float) -> np.ndarray:
            return self.upscale(batch, scale, psf_fwhm=psf_fwhm_pix, pixel_scale=1.0,
                                noise_sigma=noise, **run)  # fmt: skip

        info = self.last_instrument
        try:
            return bootstrap_terms(redraw, lr, sr, scale, psf_fwhm_pix,
                                   float(spec["hr_psf_fwhm_pix"]),
                                   np.broadcast_to(noise_sigma, (len(sr),)), int(spec["draws"]),
                                   spec["seed"])  # fmt: skip
        finally:
            self.last_instrument = info

    def upscale(
        self,
        lr: np.ndarray,
        scale: int | None = None,
        tta: bool = False,
        tile: int | None = None,
        batch_size: int = 16,
        overlap: int | None = None,
        psf_fwhm: float | None = None,
        pixel_scale: float | None = None,
        noise_sigma: float | np.ndarray | None = None,
        return_sigma: bool = False,
    ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
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
            psf_fwhm: LR PSF FWHM [arcsec] (instrument-aware models; default: the ``default``
                preset's 0.18").
            pixel_scale: LR pixel side [arcsec] (default 0.10"); only ``psf_fwhm /
                pixel_scale`` (the FWHM in LR pixels) matters.
            noise_sigma: per-pixel background noise sigma in the input's units, one number or
                one per image (default: estimated from each image, see
                :func:`lenssr.data.normalize.noise_sigma_mad`).
            return_sigma: also return the calibrated per-pixel 1-sigma map (models with a
                sigma head; with ``tta`` the spread of the 8 predictions is added in quadrature).

        Returns:
            ``(s*h, s*w)`` or ``(N, s*h, s*w)`` float32 in the input's units; with
            ``return_sigma``, ``(hr, sigma)`` of that shape each.
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
        if return_sigma and not self.has_sigma:
            raise LenssrError(f"model {self.name!r} has no uncertainty head (return_sigma)")
        sig, fwhm_pix, info = self._instrument(x, psf_fwhm, pixel_scale, noise_sigma)
        self.last_instrument = info
        lo, hi = self.normalization.stats(x, noise_sigma=sig)
        xn = self.normalization.forward(x, lo, hi).astype(np.float32)
        cond = None
        if self.conditioned:
            from lenssr.data.conditioning import condition_vector

            cond = condition_vector(fwhm_pix, sig, lo, hi)
            lo_n, hi_n = self.instrument_range.get("log10_noise", [-np.inf, np.inf])
            if np.any(cond[:, 1] < lo_n - 0.5) or np.any(cond[:, 1] > hi_n + 0.5):
                info.setdefault(
                    "warning",
                    "the noise level relative to the image's peak is outside the range the model "
                    "was trained on; results may be unreliable",
                )

        log_var = None
        if tta:
            acc = np.zeros((x.shape[0], s * h, s * w), dtype=np.float64)
            acc2 = np.zeros_like(acc)
            var = np.zeros_like(acc) if return_sigma else None
            for k in range(N_DIHEDRAL):
                xk = np.ascontiguousarray(dihedral(xn, k))
                out = self._run(xk, s, tile, overlap, batch_size, cond, return_sigma)
                if return_sigma:
                    var += inverse_dihedral(np.exp(2.0 * out[:, 1].astype(np.float64)), k)
                    out = out[:, 0]
                yk = inverse_dihedral(out, k).astype(np.float64)
                acc += yk
                acc2 += yk * yk
            yn = acc / N_DIHEDRAL
            if return_sigma:
                spread = np.clip(acc2 / N_DIHEDRAL - yn * yn, 0.0, None)
                log_var = np.log(var / N_DIHEDRAL + spread)
        else:
            out = self._run(xn, s, tile, overlap, batch_size, cond, return_sigma)
            if return_sigma:
                log_var = 2.0 * out[:, 1].astype(np.float64)
                out = out[:, 0]
            yn = out.astype(np.float64)

        y = self.normalization.inverse(yn, lo, hi).astype(np.float32)
        blanks = bad.repeat(s, axis=-2).repeat(s, axis=-1) if bad.any() else None
        if not return_sigma:
            if blanks is not None:
                y[blanks] = np.nan
            return y[0] if single else y
        raw = self.sigma_scale * np.exp(0.5 * log_var) * (hi - lo)
        u = None if cond is None else cond[:, 1]
        run = {"tta": tta, "tile": tile, "batch_size": batch_size, "overlap": overlap}
        sigma = self.calibrated_sigma(y, raw, u, xn, lo, hi, sig, fwhm_pix, x, run)
        if blanks is not None:
            y[blanks] = np.nan
            sigma[blanks] = np.nan
        return (y[0], sigma[0]) if single else (y, sigma)
