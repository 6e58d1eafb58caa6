"""Evaluate super-resolution models on LR/HR pairs under one protocol.

:func:`evaluate` runs every model (always the ``bicubic`` baseline first) on the same LR images
and reports, per image and as mean/std/median per model:

* ``mse``, ``psnr`` [dB], ``ssim``: see :mod:`lenssr.evaluation.metrics` (HR-min..max mapping,
  ``data_range = 1``, scikit-image SSIM defaults). PSNR of an identical image is ``inf``:
  means, stds and medians use the finite values only, ``n_inf`` counts the others, JSON writes
  ``null`` for non-finite numbers and the terminal table prints ``inf`` if every image is exact.
* ``flux_error``, ``flux_residual``: flux consistency, see :mod:`lenssr.evaluation.flux`; the same
  numbers for the HR ground truth are reported as the noise-floor reference.
* ``hallucination``: ``mean_k |log10 <P_SR(k)>/<P_HR(k)>|`` from the image-averaged radial power
  spectra, see :mod:`lenssr.evaluation.spectrum` (one number per model).
* ``images_per_s``: inference throughput of ``SRModel.upscale`` (LR images per second of wall
  time, after one untimed warm-up call; includes TTA when enabled).

With ``out`` set it writes ``metrics.json`` (summaries + conventions), ``per_image.csv``,
``examples.png`` (LR, every model's SR, HR and the residuals SR - HR, one asinh stretch per row
fixed by the HR image) and ``power_spectrum.png``.
"""

from __future__ import annotations

import csv
import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from lenssr.errors import LenssrError
from lenssr.evaluation.data_preset import preset_for_data
from lenssr.evaluation.flux import FLUX_CONVENTIONS, flux_metrics, reobserve
from lenssr.evaluation.metrics import CONVENTIONS, mse, psnr, ssim
from lenssr.evaluation.spectrum import (
    hallucination_from_ratio,
    plot_power_spectrum_ratio,
    radial_power_spectrum,
    ratio_from_power,
)
from lenssr.models.scales import check_scale

IMAGE_METRICS = ("mse", "psnr", "ssim", "flux_error", "flux_residual")
BASELINE = "bicubic"
ASINH_SOFTENING = 0.05


class Upscaler(Protocol):
    """What :func:`evaluate` needs of a model (``lenssr.inference.SRModel`` satisfies it)."""

    name: str

    def upscale(
        self, lr: np.ndarray, scale: int | None = None, tta: bool = False, batch_size: int = 16
    ) -> np.ndarray: ...


@dataclass
class ModelResult:
    """Everything measured for one model.

    Attributes:
        name: display name (``bicubic``, ``hybrid``, a checkpoint's stem, ...).
        source: what the user asked for (name or checkpoint path).
        per_image: metric name -> (N,) float64 array, in data order.
        k: (K,) spatial frequencies in cycles per HR pixel.
        spectrum_ratio: (K,) ``<P_SR(k)> / <P_HR(k)>``.
        hallucination: ``mean_k |log10 spectrum_ratio|`` (decades).
        seconds: wall time spent in ``upscale`` (s).
    """

    name: str
    source: str
    per_image: dict[str, np.ndarray]
    k: np.ndarray
    spectrum_ratio: np.ndarray
    hallucination: float
    seconds: float

    @property
    def images_per_s(self) -> float:
        """Inference throughput: LR images per second."""
        n = len(next(iter(self.per_image.values())))
        return n / self.seconds if self.seconds > 0 else float("inf")

    def summary(self) -> dict[str, Any]:
        """Per-metric ``{mean, std, median, n, n_inf}`` plus hallucination and throughput."""
        out: dict[str, Any] = {m: _stats(v) for m, v in self.per_image.items()}
        out["hallucination"] = self.hallucination
        out["images_per_s"] = self.images_per_s
        return out


@dataclass
class EvaluationResult:
    """Result of :func:`evaluate`: one :class:`ModelResult` per model, ``bicubic`` first."""

    models: list[ModelResult]
    reference: dict[str, np.ndarray]
    data: str
    n_images: int
    scale: int
    preset: str
    tta: bool
    device: str
    names: list[str]
    example_indices: list[int]
    files: dict[str, Path] = field(default_factory=dict)
    preset_source: str = "option"  # "option", "data", "default" or "degrade"
    #: the LR PSF of the flux metric's re-observation: "per-pair" (recorded in the data),
    #: "preset" (the preset's fixed LR instrument), "preset-mixture" (the preset's fixed one
    #: although its LR instrument varies per system and the data do not record it: the flux
    #: numbers are then only approximate) or "degrade" (the given forward model)
    flux_psf: str = "preset"

    def __getitem__(self, name: str) -> ModelResult:
        for m in self.models:
            if m.name == name:
                return m
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (non-finite numbers become ``None``), conventions included."""
        return clean_json(
            {
                "data": self.data,
                "n_images": self.n_images,
                "scale": self.scale,
                "preset": self.preset,
                "preset_source": self.preset_source,
                "flux_psf": self.flux_psf,
                "tta": self.tta,
                "device": self.device,
                "conventions": {
                    **CONVENTIONS,
                    **FLUX_CONVENTIONS,
                    "hallucination": "mean over k bins (1/N .. 0.5 cycles/pixel) of "
                    "|log10(<P_SR(k)>/<P_HR(k)>)|; spectra: mean-subtracted, Hann window, "
                    "azimuthal average in integer-|k| annuli, averaged over images",
                    "images_per_s": "LR images per second through SRModel.upscale (wall time, "
                    "after one warm-up call)",
                    "statistics": "mean/std (population)/median over images; non-finite values "
                    "(PSNR of identical images) excluded and counted in n_inf; null = inf/nan",
                },
                "models": [
                    {"name": m.name, "source": m.source, **m.summary()} for m in self.models
                ],
                "reference": {
                    "name": "HR truth",
                    "description": "flux consistency of the HR ground truth itself: the floor "
                    "set by the noise in the LR images",
                    **{key: _stats(v) for key, v in self.reference.items()},
                },
                "example_indices": self.example_indices,
                "files": {key: str(p) for key, p in self.files.items()},
            }
        )

    def table(self):
        """A ``rich.table.Table`` of the per-model means ± std (best value of each column bold)."""
        from rich import box
        from rich.table import Table

        table = Table(
            title=f"lenssr evaluate: {self.n_images} images, x{self.scale}",
            caption="means over images (PSNR ± std); std and medians in metrics.json",
            box=box.SIMPLE_HEAD,
            padding=(0, 1),
            collapse_padding=True,
            pad_edge=False,
        )
        cols = [
            ("model", None, None),
            ("PSNR dB", "psnr", max),
            ("SSIM", "ssim", max),
            ("MSE", "mse", min),
            ("flux err", "flux_error", min),
            ("flux res", "flux_residual", min),
            ("halluc.", "hallucination", min),
            ("img/s", "images_per_s", max),
        ]
        summaries = [m.summary() for m in self.models]
        if any("cov1" in s for s in summaries):  # models with a 1-sigma map: its coverage
            cols += [("1σ cov", "cov1", None), ("2σ cov", "cov2", None)]
        for title, _, _ in cols:
            table.add_column(title, justify="left" if title == "model" else "right", no_wrap=True)
        best: dict[str, float] = {}
        for _, key, pick in cols[1:]:
            if pick is None:
                continue
            vals = [_headline(s[key]) for s in summaries]
            finite = [v for v in vals if math.isfinite(v)]
            if finite:
                best[key] = pick(finite)
        for m, s in zip(self.models, summaries, strict=True):
            row = [m.name]
            for _, key, _ in cols[1:]:
                if key not in s:
                    row.append("-")
                    continue
                text = _fmt(key, s[key])
                if key in best and _headline(s[key]) == best[key] and len(self.models) > 1:
                    text = f"[bold]{text}[/bold]"
                row.append(text)
            table.add_row(*row)
        ref = {key: _stats(v) for key, v in self.reference.items()}
        table.add_row(
            "[dim]HR truth[/dim]",
            "-",
            "-",
            "-",
            _fmt("flux_error", ref["flux_error"]),
            _fmt("flux_residual", ref["flux_residual"]),
            "-",
            "-",
            *(["-", "-"] if len(cols) > 9 else []),
        )
        return table

    def write_json(self, path: str | Path) -> Path:
        """Write :meth:`to_dict` as strict JSON (no NaN/Infinity tokens)."""
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n")
        return path

    def write_csv(self, path: str | Path) -> Path:
        """One row per (model, image): index, name and every per-image metric."""
        path = Path(path)
        with path.open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["model", "index", "name", *IMAGE_METRICS])
            for m in self.models:
                for i in range(self.n_images):
                    writer.writerow(
                        [m.name, i, self.names[i]]
                        + [f"{float(m.per_image[key][i]):.8g}" for key in IMAGE_METRICS]
                    )
        return path


def _stats(values: np.ndarray) -> dict[str, Any]:
    values = np.asarray(values, dtype=np.float64)
    finite = values[np.isfinite(values)]
    n_inf = int(values.size - finite.size)
    if finite.size == 0:
        fill = float(values[0]) if values.size and np.isposinf(values).all() else float("nan")
        return {"mean": fill, "std": float("nan"), "median": fill, "n": 0, "n_inf": n_inf}
    return {
        "mean": float(finite.mean()),
        "std": float(finite.std()),
        "median": float(np.median(finite)),
        "n": int(finite.size),
        "n_inf": n_inf,
    }


def _headline(value: Any) -> float:
    return float(value["mean"]) if isinstance(value, dict) else float(value)


def _fmt(key: str, value: Any) -> str:
    """Compact table cell (fits 80 columns): ``mean±std`` for PSNR, the mean for the rest."""
    if isinstance(value, dict):
        mean, std = value["mean"], value["std"]
        if not math.isfinite(mean):
            return str(mean)
        if key == "psnr":
            return f"{mean:.2f}±{std:.2f}"
        if key == "ssim":
            return f"{mean:.4f}"
        if key in ("cov1", "cov2"):
            return f"{100 * mean:.1f}%"
        return f"{mean:.2g}" if key == "mse" else f"{mean:.3g}"
    if key == "images_per_s":
        return f"{value:.0f}"
    return f"{value:.3f}"


def clean_json(value: Any) -> Any:
    """A JSON-ready copy: numpy arrays and scalars as Python ones, non-finite floats as
    ``None``, paths as strings, mapping keys as strings (recursively)."""
    if isinstance(value, Mapping):
        return {str(k): clean_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean_json(v) for v in value]
    if isinstance(value, np.ndarray):
        return clean_json(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


def _model_list(models: str | Path | Upscaler | Sequence[str | Path | Upscaler]) -> list[Any]:
    """Normalise the user's model list: bicubic first, each model once."""
    if isinstance(models, str | Path) or hasattr(models, "upscale"):
        models = [models]
    out: list[Any] = [BASELINE]
    seen = {BASELINE}
    for m in models:
        key = str(m).strip() if isinstance(m, str | Path) else id(m)
        if isinstance(key, str) and key.lower() == BASELINE:
            continue
        if key in seen or key == "":
            continue
        seen.add(key)
        out.append(m)
    return out


def _load(spec: Any, device: str) -> tuple[Upscaler, str, str]:
    """(model, display name, source) for a name, checkpoint path or ready SRModel-like object."""
    if hasattr(spec, "upscale"):
        name = str(getattr(spec, "name", type(spec).__name__))
        return spec, name, name
    from lenssr.inference import load_model

    model = load_model(spec, device=device)
    name = str(getattr(model, "name", None) or Path(str(spec)).stem)
    return model, name, str(spec)


def _open(data: str | Path):
    path = Path(data)
    if not path.exists():
        raise LenssrError(f"data not found: {path}")
    from lenssr.data import open_pairs

    try:
        return open_pairs(path)
    except LenssrError:
        raise
    except (OSError, KeyError, ValueError) as exc:
        raise LenssrError(f"cannot read LR/HR pairs from {path}: {exc}") from exc


def _example_indices(n: int, k: int) -> list[int]:
    if k <= 0 or n == 0:
        return []
    return sorted({int(i) for i in np.linspace(0, n - 1, min(k, n)).round()})


def evaluate(
    models: str | Path | Upscaler | Sequence[str | Path | Upscaler],
    data: str | Path,
    n: int | None = None,
    preset: Any = None,
    out: str | Path | None = None,
    batch_size: int = 16,
    device: str = "auto",
    tta: bool = False,
    examples: int = 4,
    progress: bool = False,
    degrade: Callable[[np.ndarray], np.ndarray] | None = None,
) -> EvaluationResult:
    """Evaluate SR models against the HR ground truth of a paired data set.

    Args:
        models: model names (``"hybrid"``, ``"edsr"``, ...), checkpoint paths, or ready objects
            with ``upscale``/``name`` (``SRModel``). ``bicubic`` is always evaluated, first.
        data: paired data: ``.h5`` file, DeepLense folder (``LR/``, ``HR/``) or ``.zip`` of it.
        n: evaluate the first ``n`` pairs (all when ``None``).
        preset: simulation preset name or ``Preset`` whose instrument made the LR images (for
            flux consistency); ``None`` reads it from the data (HDF5 attribute ``preset``,
            DeepLense ``metadata.json``), falling back to ``"default"`` for data without one.
        out: output folder for ``metrics.json``, ``per_image.csv``, ``examples.png`` and
            ``power_spectrum.png``; nothing is written when ``None``.
        batch_size: images per forward pass.
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        tta: test-time augmentation (8 dihedral transforms) for every model.
        examples: number of example rows in ``examples.png`` (evenly spaced through the set).
        progress: show a progress bar.
        degrade: optional HR -> noiseless-LR forward model replacing the preset's.

    Returns:
        An :class:`EvaluationResult`; ``result.files`` lists what was written.
    """
    from lenssr.device import resolve_device
    from lenssr.progress import progress_bar

    if batch_size < 1:
        raise LenssrError(f"batch size must be >= 1, got {batch_size}")
    source = _open(data)
    total = len(source)
    if total == 0:
        raise LenssrError(f"no LR/HR pairs in {data}")
    count = total if n is None else min(int(n), total)
    if count < 1:
        raise LenssrError(f"--n must be >= 1, got {n}")
    scale = int(getattr(source, "scale", 0) or 0)
    dev = str(resolve_device(device))
    per_pair_psf = getattr(source, "lr_psf_fwhm", None)  # survey mixtures: one LR PSF per pair
    if degrade is None:
        resolved = preset_for_data(source, preset)
        preset, preset_name, preset_source = resolved.preset, resolved.name, resolved.source
        mixture = preset.config.get("lr_mixture") or {}
        if per_pair_psf is not None:
            flux_psf = "per-pair"
        elif mixture and mixture.get("enabled", True):
            flux_psf = "preset-mixture"
        else:
            flux_psf = "preset"
    else:
        preset_name, preset_source = "none (a forward model was given)", "degrade"
        flux_psf, per_pair_psf = "degrade", None

    loaded = [_load(spec, dev) for spec in _model_list(models)]
    names_all = list(getattr(source, "names", None) or [])
    names = [str(names_all[i]) if i < len(names_all) else str(i) for i in range(count)]
    ex_idx = _example_indices(count, examples)
    ex_lr: dict[int, np.ndarray] = {}
    ex_hr: dict[int, np.ndarray] = {}
    ex_sr: dict[str, dict[int, np.ndarray]] = {name: {} for _, name, _ in loaded}

    per: dict[str, dict[str, list[np.ndarray]]] = {
        name: {m: [] for m in IMAGE_METRICS} for _, name, _ in loaded
    }
    ref: dict[str, list[np.ndarray]] = {"flux_error": [], "flux_residual": []}
    p_sum: dict[str, np.ndarray] = {}
    p_hr_sum: np.ndarray | None = None
    k_axis: np.ndarray | None = None
    seconds = {name: 0.0 for _, name, _ in loaded}
    warmed: set[str] = set()
    chunk = max(64, 4 * batch_size)

    with progress_bar(count * len(loaded), "evaluating", enabled=progress) as advance:
        for start in range(0, count, chunk):
            idx = range(start, min(start + chunk, count))
            lr, hr = _load_chunk(source, idx, data)
            if scale == 0:
                scale = hr.shape[-1] // lr.shape[-1]
            psf = None if per_pair_psf is None else per_pair_psf[idx.start : idx.stop]
            flux_ref = _flux(hr, lr, preset, degrade, psf)
            for key in ref:
                ref[key].append(np.atleast_1d(flux_ref[key]))
            k_axis, p_hr = radial_power_spectrum(hr)
            p_hr_sum = p_hr.sum(0) if p_hr_sum is None else p_hr_sum + p_hr.sum(0)
            for model, name, _ in loaded:
                _check_scale(model, name, scale)
                if name not in warmed:
                    model.upscale(lr[:1], scale=scale, tta=tta, batch_size=batch_size)
                    warmed.add(name)
                t0 = time.perf_counter()
                kw = {"scale": scale, "tta": tta, "batch_size": batch_size}
                sr = np.asarray(upscale_pairs(model, lr, source, idx, **kw))
                seconds[name] += time.perf_counter() - t0
                if getattr(model, "has_sigma", False):  # coverage of the 1-sigma map (untimed)
                    from lenssr.inference.uncertainty import coverage

                    _, sig = upscale_pairs(model, lr, source, idx, return_sigma=True, **kw)
                    for j in range(len(idx)):
                        cov = coverage(sr[j], sig[j], hr[j])
                        per[name].setdefault("cov1", []).append(np.atleast_1d(cov["cov1"]))
                        per[name].setdefault("cov2", []).append(np.atleast_1d(cov["cov2"]))
                if sr.shape != hr.shape:
                    raise LenssrError(
                        f"model {name} returned shape {sr.shape[1:]} for LR {lr.shape[1:]}, "
                        f"but the HR images are {hr.shape[1:]}"
                    )
                metrics = per[name]
                metrics["mse"].append(np.atleast_1d(mse(sr, hr)))
                metrics["psnr"].append(np.atleast_1d(psnr(sr, hr)))
                metrics["ssim"].append(np.atleast_1d(ssim(sr, hr)))
                flux = _flux(sr, lr, preset, degrade, psf)
                metrics["flux_error"].append(np.atleast_1d(flux["flux_error"]))
                metrics["flux_residual"].append(np.atleast_1d(flux["flux_residual"]))
                _, p_sr = radial_power_spectrum(sr)
                p_sum[name] = p_sr.sum(0) + p_sum.get(name, 0.0)
                for i in ex_idx:
                    if start <= i < start + len(idx):
                        ex_sr[name][i] = sr[i - start]
                advance(len(idx), status=name)
            for i in ex_idx:
                if start <= i < start + len(idx):
                    ex_lr[i], ex_hr[i] = lr[i - start], hr[i - start]

    results = []
    for _, name, src in loaded:
        ratio = ratio_from_power(p_sum[name], p_hr_sum)
        results.append(
            ModelResult(
                name=name,
                source=src,
                per_image={m: np.concatenate(v) for m, v in per[name].items()},
                k=k_axis,
                spectrum_ratio=ratio,
                hallucination=hallucination_from_ratio(ratio),
                seconds=seconds[name],
            )
        )
    result = EvaluationResult(
        models=results,
        reference={key: np.concatenate(v) for key, v in ref.items()},
        data=str(data),
        n_images=count,
        scale=scale,
        preset=preset_name,
        preset_source=preset_source,
        flux_psf=flux_psf,
        tta=tta,
        device=dev,
        names=names,
        example_indices=ex_idx,
    )
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        result.files["per_image"] = result.write_csv(out / "per_image.csv")
        if ex_idx:
            result.files["examples"] = plot_examples(
                [ex_lr[i] for i in ex_idx],
                [ex_hr[i] for i in ex_idx],
                {name: [ex_sr[name][i] for i in ex_idx] for _, name, _ in loaded},
                out / "examples.png",
                row_labels=[names[i] for i in ex_idx],
                pixel_scale=_hr_pixel_scale(source, preset),
                units=_units(source),
            )
        result.files["power_spectrum"] = plot_power_spectrum_ratio(
            {m.name: (m.k, m.spectrum_ratio) for m in results},
            out / "power_spectrum.png",
            scale=scale,
        )
        result.files["metrics"] = out / "metrics.json"
        result.write_json(out / "metrics.json")
    return result


def upscale_pairs(
    model: Any, lr: np.ndarray, source: Any, idx: range, return_sigma: bool = False, **kw: Any
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """``model.upscale`` of the LR images of pairs ``idx`` of ``source``, telling an
    instrument-aware model each pair's recorded LR PSF (``source.psf_fwhm_pix``; pairs with
    the same PSF go through together). ``kw``: ``scale``, ``tta``, ``batch_size``."""
    if not getattr(model, "conditioned", False) or not hasattr(source, "psf_fwhm_pix"):
        return (
            model.upscale(lr, return_sigma=True, **kw) if return_sigma else model.upscale(lr, **kw)
        )
    fwhm = np.array([round(float(source.psf_fwhm_pix(i)), 6) for i in idx])
    sr: np.ndarray | None = None
    sig: np.ndarray | None = None
    for value in np.unique(fwhm):
        sel = np.flatnonzero(fwhm == value)
        got = model.upscale(lr[sel], psf_fwhm=float(value), pixel_scale=1.0,
                            return_sigma=return_sigma, **kw)  # fmt: skip
        part, part_sig = got if return_sigma else (got, None)
        if sr is None:
            sr = np.empty((len(lr), *part.shape[1:]), dtype=part.dtype)
            sig = np.empty_like(sr) if return_sigma else None
        sr[sel] = part
        if sig is not None:
            sig[sel] = part_sig
    return (sr, sig) if return_sigma else sr


def _load_chunk(source, idx: range, data: str | Path) -> tuple[np.ndarray, np.ndarray]:
    pairs = [source[i] for i in idx]
    try:
        lr = np.stack([np.asarray(p[0], dtype=np.float32) for p in pairs])
        hr = np.stack([np.asarray(p[1], dtype=np.float32) for p in pairs])
    except ValueError as exc:
        raise LenssrError(f"images in {data} do not all have the same shape: {exc}") from exc
    return lr, hr


def _flux(
    sr: np.ndarray, lr: np.ndarray, preset: Any, degrade, lr_psf_fwhm: np.ndarray | None
) -> dict[str, Any]:
    """Flux metrics of SR (or HR truth) images (each pair's own LR PSF when given); a preset
    that does not fit the data is a user error."""
    try:
        return flux_metrics(reobserve(sr, preset, degrade=degrade, lr_psf_fwhm=lr_psf_fwhm), lr)
    except ValueError as exc:
        raise LenssrError(str(exc)) from exc


def _check_scale(model: Upscaler, name: str, scale: int) -> None:
    """The data's scale must be one ``model`` serves (stand-ins without ``scales`` pass)."""
    if getattr(model, "scales", None) is None:
        return
    try:
        check_scale(model, scale)
    except LenssrError as exc:
        raise LenssrError(f"model {name}: {exc}, but the data is x{scale}") from None


def asinh_stretch(
    x: np.ndarray, vmin: float, vmax: float, a: float = ASINH_SOFTENING
) -> np.ndarray:
    """Display stretch ``asinh(t / a) / asinh(1 / a)`` of ``t = clip((x-vmin)/(vmax-vmin), 0, 1)``.

    Maps ``vmin`` to 0 and ``vmax`` to 1; small ``a`` brightens faint arcs (linear below ~a,
    logarithmic above).
    """
    span = vmax - vmin if vmax > vmin else 1.0
    t = np.clip((np.asarray(x, dtype=np.float64) - vmin) / span, 0.0, 1.0)
    return np.arcsinh(t / a) / np.arcsinh(1.0 / a)


def _hr_pixel_scale(source: Any, preset: Any) -> float | None:
    """HR pixel [arcsec] of the data (HDF5 attribute), else the preset's, else None."""
    attrs = getattr(source, "attrs", None) or {}
    if "hr_pixel_scale" in attrs:
        return float(attrs["hr_pixel_scale"])
    hr = getattr(preset, "hr", None)
    return float(hr.pixel_scale) if hr is not None else None


def _units(source: Any) -> str:
    """The images' unit (HDF5 attribute ``units``), else "image units"."""
    attrs = getattr(source, "attrs", None) or {}
    unit = attrs.get("units")
    return str(unit.decode() if isinstance(unit, bytes) else unit) if unit else "image units"


def plot_examples(
    lr: Sequence[np.ndarray],
    hr: Sequence[np.ndarray],
    sr: dict[str, Sequence[np.ndarray]],
    path: str | Path,
    row_labels: Sequence[str] | None = None,
    pixel_scale: float | None = None,
    units: str = "image units",
) -> Path:
    """Figure of example images: columns LR, each model's SR, HR, then each model's SR - HR.

    Every image panel of a row uses ONE asinh stretch whose ``vmin, vmax`` are the HR image's
    min and max (so brightness is comparable across panels); the LR panel covers the same sky
    area as the others. Residuals use a symmetric diverging map (``RdBu_r``) with a common
    ``±v`` per row (99.5th percentile of ``|SR - HR|`` over the row's models), in image units.

    Args:
        lr: R LR images (h, w).
        hr: R HR images (H, W).
        sr: model name -> R SR images (H, W), in column order.
        path: output PNG.
        row_labels: optional names of the R examples.
        pixel_scale: HR pixel [arcsec]: draws a 1" scale bar on each row's HR panel.
        units: the images' unit, on the colour bars (one for the stretched images, labelled in
            these units, one for the residuals).

    Returns:
        The written path.
    """
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure

    path = Path(path)
    models = list(sr)
    n_rows = len(hr)
    titles = ["LR", *models, "HR", *[f"{m} − HR" for m in models]]
    n_cols = len(titles)
    fig = Figure(figsize=(2.0 * n_cols, 2.1 * n_rows + 0.3), dpi=110)
    axes = fig.subplots(n_rows, n_cols, squeeze=False)
    for r in range(n_rows):
        truth = np.asarray(hr[r], dtype=np.float64)
        vmin, vmax = float(truth.min()), float(truth.max())
        h, w = truth.shape
        extent = (0, w, h, 0)
        panels = [lr[r], *[sr[m][r] for m in models], truth]
        for c, img in enumerate(panels):
            ax = axes[r, c]
            ax.imshow(
                asinh_stretch(img, vmin, vmax),
                cmap="magma",
                vmin=0.0,
                vmax=1.0,
                extent=extent,
                interpolation="nearest",
            )
            if c == len(panels) - 1:  # the HR panel: colour bar in units, scale bar
                sm = ScalarMappable(Normalize(0.0, 1.0), cmap="magma")
                cax = ax.inset_axes((1.03, 0.0, 0.06, 1.0))
                bar = fig.colorbar(sm, cax=cax)
                ticks = np.linspace(0.0, 1.0, 4)
                span = vmax - vmin if vmax > vmin else 1.0
                values = vmin + span * ASINH_SOFTENING * np.sinh(
                    ticks * np.arcsinh(1.0 / ASINH_SOFTENING)
                )
                bar.set_ticks(ticks, labels=[f"{v:.3g}" for v in values])
                bar.ax.tick_params(labelsize=5)
                bar.set_label(units, fontsize=5)
                if pixel_scale:
                    length = 1.0 / pixel_scale  # HR pixels per arcsec
                    x0, y0 = 0.08 * w, 0.9 * h
                    ax.plot([x0, x0 + length], [y0, y0], color="w", lw=1.5)
                    ax.text(x0 + length / 2, y0 - 0.03 * h, '1"', color="w", fontsize=6,
                            ha="center", va="bottom")  # fmt: skip
            if 1 <= c <= len(models):
                name = models[c - 1]
                value = psnr(np.asarray(sr[name][r]), truth)
                ax.text(
                    0.03,
                    0.97,
                    f"{value:.1f} dB" if math.isfinite(value) else "exact",
                    transform=ax.transAxes,
                    color="w",
                    fontsize=7,
                    va="top",
                )
        residuals = [np.asarray(sr[m][r], dtype=np.float64) - truth for m in models]
        lim = max(float(np.percentile(np.abs(res), 99.5)) for res in residuals) or 1.0
        image = None
        for j, res in enumerate(residuals):
            ax = axes[r, len(panels) + j]
            image = ax.imshow(
                res, cmap="RdBu_r", vmin=-lim, vmax=lim, extent=extent, interpolation="nearest"
            )
        if image is not None:
            cax = axes[r, -1].inset_axes((1.03, 0.0, 0.06, 1.0))
            res_bar = fig.colorbar(image, cax=cax)
            res_bar.ax.tick_params(labelsize=6)
            res_bar.set_label(f"SR - HR [{units}]", fontsize=5)
        if row_labels is not None:
            axes[r, 0].set_ylabel(str(row_labels[r]), fontsize=7)
    for c, title in enumerate(titles):
        axes[0, c].set_title(title, fontsize=9)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(
        "asinh stretch fixed by each row's HR min..max; residuals in image units", fontsize=8
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path
