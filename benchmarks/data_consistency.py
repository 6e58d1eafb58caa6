"""Data consistency of super-resolved images: the reduced chi-squared of the re-observed residual.

Each SR image is re-observed by its cell's known LR instrument (the degrade model without noise:
PSF difference blur and block means, :mod:`lenssr.inference.consistency`) and compared with the
LR input, pixel by pixel, in units of the LR noise (the instrument's Poisson + sky + read noise
evaluated at the re-observed image). A reduced chi-squared of about 1 means the SR image explains
the data down to the noise; the true HR image gives 1 by construction (a check of the noise
model). ``--refine`` also runs :func:`lenssr.inference.consistency.refine` (Landweber steps to
chi-squared 1) and reports the PSNR change it makes, whole image and on the lensed arcs.

Cells: the instrument grid of ``benchmarks/instrument_grid.py`` (shapelet sources no model was
trained on), ``--cells`` to choose.

Usage::

    python benchmarks/data_consistency.py --models bicubic,hybrid,hybrid-default --n 20 \
        [--cells psf0.18-t1000-light,...] [--refine] [--out docs/science/consistency]

Prints one comparable figure: the median reduced chi-squared of the first learned model over all
images, against bicubic's, measured in this run.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from instrument_grid import arc_psnr, parse_models  # same folder

from lenssr.evaluation.metrics import psnr
from lenssr.inference.api import load_model
from lenssr.inference.consistency import blur_sigma, reduced_chi2, refine
from lenssr.simulation.grid import cells_named, render_cell
from lenssr.simulation.instrument import noise_sigma


def cell_noise(cell, model_lr: np.ndarray) -> np.ndarray:
    """Per-pixel LR noise sigma of ``cell``'s instrument at the noiseless LR ``model_lr``."""
    return noise_sigma(model_lr, cell.preset().lr).astype(np.float32)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="bicubic,hybrid,hybrid-default")
    ap.add_argument("--n", type=int, default=20, help="systems per cell")
    ap.add_argument("--seed", type=int, default=100)
    ap.add_argument("--cells", default="", help="comma-separated cell names (default: all)")
    ap.add_argument("--refine", action="store_true", help="also refine to chi-squared 1")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=None, help="write consistency.json/.md here")
    args = ap.parse_args()
    import torch

    from lenssr.inference.consistency import reobserve

    torch.set_num_threads(args.threads)
    try:
        cells = cells_named(args.cells)
    except ValueError as exc:
        ap.error(str(exc))
    models = {k: load_model(v, device="cpu") for k, v in parse_models(args.models).items()}
    results: dict[str, dict] = {}
    t0 = time.time()
    for cell in cells:
        data = render_cell(cell, args.n, seed=args.seed)
        preset = cell.preset()
        scale = preset.scale
        sb = blur_sigma(cell.psf_fwhm / preset.lr.pixel_scale, scale,
                        preset.hr.psf_fwhm_pix)  # fmt: skip
        truth_lr = reobserve(torch.as_tensor(data.hr, dtype=torch.float64)[:, None], scale, sb)
        noise = cell_noise(cell, truth_lr[:, 0].numpy())
        peaks = data.hr_source.reshape(len(data.hr_source), -1).max(axis=1)
        row = {"hr": {"chi2": float(np.median(reduced_chi2(data.lr, data.hr, scale, sb, noise)))}}
        for label, model in models.items():
            kw = {"psf_fwhm": cell.psf_fwhm, "pixel_scale": 0.10} if model.conditioned else {}
            sr = model.upscale(data.lr, **kw)
            chi2 = reduced_chi2(data.lr, sr, scale, sb, noise)
            entry = {"chi2": float(np.median(chi2)), "chi2_mean": float(np.mean(chi2))}
            if args.refine:
                fixed, after = refine(data.lr, sr, scale, sb, noise)
                entry["chi2_refined"] = float(np.median(after))
                pairs = list(zip(sr, fixed, data.hr, data.arc, peaks, strict=True))
                entry["dpsnr"] = float(np.mean([psnr(y, h) - psnr(x, h) for x, y, h, *_ in pairs]))
                entry["dpsnr_arc"] = float(
                    np.mean(
                        [arc_psnr(y, h, a, p) - arc_psnr(x, h, a, p) for x, y, h, a, p in pairs]
                    )
                )
            row[label] = entry
        results[cell.name] = row
        print(cell.name, {k: {m: round(x, 2) for m, x in v.items()} for k, v in row.items()},
              flush=True)  # fmt: skip
    labels = list(models)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        meta = {"n_per_cell": args.n, "seed": args.seed, "models": parse_models(args.models),
                "refine": args.refine, "wall_s": round(time.time() - t0, 1)}  # fmt: skip
        (args.out / "consistency.json").write_text(
            json.dumps({"meta": meta, "cells": results}, indent=1)
        )
        (args.out / "consistency.md").write_text(markdown(results, labels, args.refine))
    learned = [m for m in labels if m != "bicubic"]
    if learned and "bicubic" in labels:
        med = lambda m: float(np.median([results[c][m]["chi2"] for c in results]))  # noqa: E731
        print(
            f"{learned[0]}: median reduced chi2 {med(learned[0]):.2f} (bicubic "
            f"{med('bicubic'):.2f}, true HR {med('hr'):.2f}) over {len(results)} cells"
        )


def markdown(results: dict[str, dict], labels: list[str], refined: bool) -> str:
    """Per-cell table of the median reduced chi-squared (and the refinement's PSNR change)."""
    cols = ["hr", *labels]
    head = "| cell | " + " | ".join(f"{m} chi2" for m in cols)
    if refined:
        head += " | " + " | ".join(f"{m} refined: dPSNR whole / arc (dB)" for m in labels)
    lines = [head + " |", "|" + " --- |" * (1 + len(cols) + (len(labels) if refined else 0))]
    for cell, row in results.items():
        cells = [f"{row[m]['chi2']:.2f}" for m in cols]
        if refined:
            cells += [f"{row[m]['dpsnr']:+.2f} / {row[m]['dpsnr_arc']:+.2f}" for m in labels]
        lines.append(f"| {cell} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
