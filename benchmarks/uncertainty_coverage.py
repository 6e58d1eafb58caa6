"""Calibrated per-pixel uncertainty: coverage of the 1- and 2-sigma maps on held-out data.

1. Calibrate: one factor per method (``lenssr.inference.uncertainty.calibration_factor``) on
   ``--calib`` (default ``data/survey-mix-val.h5``: rendered survey-mix pairs, each with its own
   LR instrument, given to the model).
2. Evaluate on the instrument grid of ``benchmarks/instrument_grid.py`` (24 cells, sources of
   the held-out ``shapelets`` family): the fraction of pixels whose true HR value lies within
   1 and 2 calibrated sigma, over all pixels and over the lensed-arc pixels, per cell; the
   reliability diagram (10 levels) pooled over the grid.

Methods: ``head`` (the sigma head), ``tta`` (spread of the 8 rotations/flips), ``head+tta``
(both in quadrature). Usage::

    python benchmarks/uncertainty_coverage.py --model runs/hybrid-mix/best.safetensors \
        [--methods head,tta,head+tta] [--n 20] [--out docs/uncertainty]

(The shipped factor itself is written by ``lenssr calibrate``; this script refits one per
method on the same kind of data so that the methods are compared on equal terms.)

Prints one comparable figure: the worst distance (points) of the head's 1-sigma coverage from
68.3% over the grid cells and both pixel sets.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from lenssr.inference.api import load_model
from lenssr.inference.uncertainty import (
    GAUSS_1SIGMA,
    calibration_factor,
    coverage,
    predict_with_sigma,
    reliability,
)
from lenssr.simulation.grid import grid_cells, render_cell


def calibration_set(path: Path, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """``(lr, hr, psf_fwhm [arcsec] per pair, lr pixel scale)`` of the first ``n`` pairs."""
    import h5py

    with h5py.File(path, "r") as f:
        lr, hr = f["lr"][:n], f["hr"][:n]
        preset = json.loads(f.attrs["preset"])
        pix = float(preset["lr"]["pixel_scale"])
        if "lr_psf_fwhm" in f["params"]:
            fwhm = f["params"]["lr_psf_fwhm"][:n]
        else:
            fwhm = np.full(len(lr), float(preset["lr"]["psf_fwhm"]))
    return lr, hr, fwhm, pix


def run_method(model, lr, fwhm, pix, method):
    """SR and raw sigma of every image (each with its own instrument)."""
    srs, sigs = [], []
    for k in range(len(lr)):
        kw = {"psf_fwhm": float(fwhm[k]), "pixel_scale": pix} if model.conditioned else {}
        sr, sig = predict_with_sigma(model, lr[k : k + 1], method, **kw)
        srs.append(sr[0])
        sigs.append(sig[0])
    return np.stack(srs), np.stack(sigs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--methods", default="head,tta")
    ap.add_argument("--calib", type=Path, default=Path("data/survey-mix-val.h5"))
    ap.add_argument("--n-calib", type=int, default=100)
    ap.add_argument("--n", type=int, default=20, help="systems per grid cell")
    ap.add_argument("--seed", type=int, default=100)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", type=Path, default=Path("docs/uncertainty"))
    args = ap.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    model = load_model(args.model, device="cpu")
    model.sigma_scale = 1.0  # calibrate the raw prediction
    methods = [m for m in args.methods.split(",") if m]
    if not model.has_sigma:
        methods = [m for m in methods if m == "tta"]
    t0 = time.time()
    lr, hr, fwhm, pix = calibration_set(args.calib, args.n_calib)
    factors, timing = {}, {}
    for m in methods:
        t = time.time()
        sr, sig = run_method(model, lr, fwhm, pix, m)
        timing[m] = (time.time() - t) / len(lr)
        factors[m] = calibration_factor(sr, sig, hr)
        print(f"{m}: calibration factor {factors[m]:.3f} ({timing[m]:.3f} s/image)", flush=True)

    cells: dict[str, dict] = {}
    pooled: dict[str, list] = {m: [] for m in methods}
    for cell in grid_cells():
        data = render_cell(cell, args.n, seed=args.seed)
        row = {}
        for m in methods:
            sr, sig = run_method(model, data.lr, np.full(args.n, cell.psf_fwhm), 0.10, m)
            sig = sig * factors[m]
            row[m] = {
                "all": coverage(sr, sig, data.hr),
                "arc": coverage(sr, sig, data.hr, data.arc),
            }
            pooled[m].append((sr, sig, data.hr, data.arc))
        cells[cell.name] = row
        print(
            cell.name,
            {m: (round(r["all"]["cov1"], 3), round(r["arc"]["cov1"], 3)) for m, r in row.items()},
            flush=True,
        )

    diagrams = {}
    for m in methods:
        sr, sig, h, arc = (np.concatenate([p[i] for p in pooled[m]]) for i in range(4))
        diagrams[m] = {"all": reliability(sr, sig, h), "arc": reliability(sr, sig, h, arc)}
    args.out.mkdir(parents=True, exist_ok=True)
    report = {
        "model": args.model,
        "calibration": {"data": str(args.calib), "n": len(lr), "factors": factors},
        "seconds_per_image": timing,
        "cells": cells,
        "reliability": diagrams,
        "wall_s": round(time.time() - t0, 1),
    }
    (args.out / "coverage.json").write_text(json.dumps(report, indent=1))
    (args.out / "coverage.md").write_text(markdown(cells, methods))
    plot(diagrams, args.out / "reliability.png")
    key = methods[0]
    worst = max(
        abs(cells[c][key][s]["cov1"] - GAUSS_1SIGMA) * 100 for c in cells for s in ("all", "arc")
    )
    print(f"{key}: worst 1-sigma coverage distance from 68.3% over the grid: {worst:.1f} points")


def markdown(cells: dict[str, dict], methods: list[str]) -> str:
    """Per-cell 1/2-sigma coverage (%) over all pixels and the arc pixels."""
    head = "| cell | " + " | ".join(f"{m}: 1σ / 2σ all, arc (%)" for m in methods) + " |"
    lines = [head, "|" + " --- |" * (1 + len(methods))]
    for name, row in cells.items():
        vals = []
        for m in methods:
            a, r = row[m]["all"], row[m]["arc"]
            vals.append(
                f"{100 * a['cov1']:.1f} / {100 * a['cov2']:.1f}, "
                f"{100 * r['cov1']:.1f} / {100 * r['cov2']:.1f}"
            )
        lines.append(f"| {name} | " + " | ".join(vals) + " |")
    return "\n".join(lines) + "\n"


def plot(diagrams: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(8, 4), sharey=True)
    for ax, subset in zip(axes, ("all", "arc"), strict=True):
        ax.plot([0, 1], [0, 1], "k:", lw=1, label="ideal")
        for m, d in diagrams.items():
            p = np.asarray(d[subset])
            ax.plot(p[:, 0], p[:, 1], "o-", ms=3, label=m)
        ax.set_title("all pixels" if subset == "all" else "lensed-arc pixels")
        ax.set_xlabel("expected coverage (Gaussian interval)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("observed coverage")
    axes[0].legend()
    fig.suptitle("Reliability of the calibrated 1-sigma maps (held-out instrument grid)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
