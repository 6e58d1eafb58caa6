"""Batch upscaling of files, folders and zip archives (``lenssr upscale``).

``upscale_path`` walks the input with :func:`lenssr.io.process_path` (file -> file, folder ->
folder, zip -> zip, same names and formats), batches images of equal shape through the model,
writes each SR image in the input's format and units (FITS: WCS rescaled, HISTORY card naming
the model and scale) and skips unreadable files, listing them in the returned report.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from lenssr.errors import InputError, LenssrError
from lenssr.inference.base import Upscaler

if TYPE_CHECKING:
    from lenssr.io import BatchReport, LoadedImage, ZipLimits

BACKENDS = ("auto", "torch", "onnxruntime")


def image_instrument(
    img: LoadedImage,
    psf_fwhm: float | None = None,
    pixel_scale: float | None = None,
) -> tuple[float | None, float | None]:
    """``(psf_fwhm, pixel_scale)`` [arcsec] of one input: the given values, else its FITS header
    (:func:`lenssr.inference.instrument.header_instrument`), else None (the model's default)."""
    if psf_fwhm is not None and pixel_scale is not None:
        return psf_fwhm, pixel_scale
    from lenssr.inference.instrument import header_instrument

    known = header_instrument(img.meta.get("header")) if img.fmt == "fits" else {}
    return (
        psf_fwhm if psf_fwhm is not None else known.get("psf_fwhm"),
        pixel_scale if pixel_scale is not None else known.get("pixel_scale"),
    )


def make_batch_fn(
    sr: Upscaler,
    scale: int,
    tta: bool,
    tile: int | None,
    batch_size: int,
    psf_fwhm: float | None = None,
    pixel_scale: float | None = None,
    noise_sigma: float | None = None,
    instruments: dict[str, dict] | None = None,
    uncertainty: bool = False,
) -> Callable[[list[LoadedImage]], list[np.ndarray]]:
    """A ``batch_fn`` for ``process_path``: list of LoadedImage -> list of SR arrays (same
    order); images of equal shape and instrument go through the network together. A per-image
    problem raises :class:`InputError` so ``process_path`` skips that image and goes on.

    ``psf_fwhm``, ``pixel_scale`` [arcsec] and ``noise_sigma`` (input units) are passed to
    instrument-aware models; FITS headers fill the first two when not given
    (:func:`image_instrument`). ``instruments``, when given, collects per image name what was
    given, read or assumed (the model's ``last_instrument``). ``uncertainty``: each result is a
    :class:`lenssr.io.WithSidecars` carrying the calibrated 1-sigma map as ``sigma``."""

    def batch_fn(images: list[LoadedImage]) -> list[np.ndarray]:
        groups: dict[tuple, list[int]] = defaultdict(list)
        for i, img in enumerate(images):
            fwhm, pix = image_instrument(img, psf_fwhm, pixel_scale)
            groups[(tuple(img.data.shape), fwhm, pix)].append(i)
        results: list[np.ndarray | None] = [None] * len(images)
        for (_, fwhm, pix), idx in groups.items():
            stack = np.stack([images[i].data for i in idx])
            kw = {}
            if (
                getattr(sr, "conditioned", False)
                or getattr(sr, "normalization", None)
                and (sr.normalization.kind == "noise")
            ):
                kw = {"psf_fwhm": fwhm, "pixel_scale": pix, "noise_sigma": noise_sigma}
            try:
                if uncertainty:
                    kw["return_sigma"] = True
                out = sr.upscale(
                    stack, scale=scale, tta=tta, tile=tile, batch_size=batch_size, **kw
                )
                if uncertainty:
                    from lenssr.io import WithSidecars

                    out = [WithSidecars(y, {"sigma": sig}) for y, sig in zip(*out, strict=True)]
                if instruments is not None:
                    for i in idx:
                        instruments[images[i].name] = dict(getattr(sr, "last_instrument", {}))
            except InputError:
                raise
            except LenssrError as exc:  # a problem with these pixels: skip, do not abort
                raise InputError(images[idx[0]].name, str(exc)) from exc
            for i, y in zip(idx, out, strict=True):
                results[i] = y
        return results  # type: ignore[return-value]

    return batch_fn


def open_upscaler(
    model: str | Path | Upscaler = "hybrid",
    scale: int | None = None,
    device: str = "auto",
    backend: str = "auto",
    onnx_path: str | Path | None = None,
) -> Upscaler:
    """The model to run: :func:`~lenssr.inference.api.load_model` on ``backend`` (``auto``:
    ONNX Runtime on CPU through the export cache, PyTorch on CUDA), or the exported
    ``onnx_path`` run by ONNX Runtime (:class:`OnnxSRModel`)."""
    if backend not in BACKENDS:
        raise LenssrError(f"unknown backend {backend!r}; use {', '.join(BACKENDS)}")
    if isinstance(model, Upscaler):
        return model
    if onnx_path is None:
        from lenssr.inference.api import load_model

        return load_model(model, device=device, backend=backend)
    if backend == "torch":
        raise LenssrError("--onnx needs --backend onnxruntime")
    from lenssr.inference.onnx_export import OnnxSRModel

    return OnnxSRModel(onnx_path, device=device)


def upscale_path(
    inp: str | Path,
    out: str | Path,
    model: str | Path | Upscaler = "hybrid",
    scale: int | None = None,
    tta: bool = False,
    tile: int | None = None,
    device: str = "auto",
    backend: str = "auto",
    conserve_flux: bool = False,
    progress: bool = True,
    onnx_path: str | Path | None = None,
    batch_size: int = 16,
    limits: ZipLimits | None = None,
    on_image: Callable[[str, bool], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    psf_fwhm: float | None = None,
    pixel_scale: float | None = None,
    noise_sigma: float | None = None,
    instruments: dict[str, dict] | None = None,
    uncertainty: bool = False,
) -> BatchReport:
    """Upscale a file, a folder or a zip archive of LR images.

    Args:
        inp: ``.npy`` / FITS / PNG / TIFF file, folder of them, or ``.zip``.
        out: output file, folder or ``.zip`` (same layout, names and formats as ``inp``).
        model: shipped name (``hybrid``, ``hybrid-gan``...), ``bicubic``, checkpoint path, or
            a loaded :class:`SRModel` / :class:`OnnxSRModel`.
        scale: output scale (default: the model's; pyramid models serve 2 and 4).
        tta: 8-fold rotation/flip self-ensemble.
        tile: tile side in LR pixels (default: automatic above 512x512).
        device: ``auto``, ``cpu`` or ``cuda``.
        backend: ``auto`` (ONNX Runtime on CPU, PyTorch on CUDA), ``torch`` or ``onnxruntime``.
        conserve_flux: rescale each output so its total flux (sum x pixel area) equals the
            input's (see :func:`lenssr.io.write_image`); by default surface brightness is kept.
        progress: show a progress bar.
        onnx_path: an exported ``.onnx`` to run with ``backend="onnxruntime"``.
        batch_size: images (or tiles) per network call.
        limits, on_image, should_stop: input caps, per-image callback and stop request of
            :func:`lenssr.io.process_path`.
        psf_fwhm, pixel_scale: the LR instrument [arcsec] for instrument-aware models (FITS
            headers fill them per file when not given; see :mod:`lenssr.inference.instrument`).
        noise_sigma: per-pixel noise sigma in the inputs' units (default: estimated per image).
        instruments: filled with what was given, read or assumed per image name.
        uncertainty: also write each output's calibrated 1-sigma map (models with a sigma
            head): ``<stem>_sigma.npy`` beside ``.npy``, an image HDU ``SIGMA`` (same WCS) in
            FITS, ``<stem>_sigma.tif`` (float32) beside PNG/TIFF.

    Returns:
        The :class:`lenssr.io.BatchReport` (processed names, skipped names with reasons).
    """
    src = Path(inp)
    if not src.exists():
        raise LenssrError(f"input not found: {src}")
    from lenssr import __version__
    from lenssr.io import process_path

    sr = open_upscaler(model, scale, device, backend, onnx_path)
    s = sr.check_scale(scale)
    used_backend = getattr(sr, "backend", "torch")
    history = (
        f"lenssr {__version__} upscale: model={sr.name} scale=x{s} backend={used_backend}"
        f"{' tta=8' if tta else ''}{f' tile={tile}' if tile else ''}"
        f"{' conserve_flux' if conserve_flux else ''}"
    )

    if uncertainty and not getattr(sr, "has_sigma", False):
        raise LenssrError(f"model {sr.name!r} gives no uncertainty (it has no sigma head)")
    batch_fn = make_batch_fn(
        sr, s, tta, tile, batch_size, psf_fwhm, pixel_scale, noise_sigma, instruments,
        uncertainty,
    )  # fmt: skip

    def fn(img: LoadedImage) -> np.ndarray:
        return batch_fn([img])[0]

    return process_path(
        src,
        Path(out),
        fn,
        scale=s,
        description=f"upscaling x{s} with {sr.name}",
        progress=progress,
        history=history,
        conserve_flux=conserve_flux,
        batch_fn=batch_fn,
        batch_size=batch_size,
        limits=limits,
        on_image=on_image,
        should_stop=should_stop,
    )
