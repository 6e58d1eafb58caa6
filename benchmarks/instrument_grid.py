"""PSNR gain over bicubic on a grid of LR instruments never used in training.

Cells: LR PSF FWHM 0.12 / 0.18 / 0.24 / 0.30" (0.10" pixels) x exposure 200 / 1000 / 5000 s x
lens light on / off (sky 10 e-/s/arcsec^2, read noise 5 e-, as ``default``), with lensed sources
of a morphology family no model was trained on (``shapelets``); the HR target is ``default``'s.
Every model is told the cell's instrument (``psf_fwhm``, ``pixel_scale``) when it takes one.

Metrics per image, averaged per cell (project conventions):
- ``psnr``: whole image, SR and HR mapped with the HR's own min..max (``lenssr.evaluation``);
- ``psnr_arc``: only the lensed-arc pixels (where the noiseless lensed source alone is above
  10% of its peak), with the lensed source's peak as the data range, so the lens core does not
  dominate: ``10 log10(peak^2 / mean_arc((SR - HR)^2))``.

Usage::

    python benchmarks/instrument_grid.py --models bicubic,hybrid-default,hybrid \
        [--specialist psf0.12-t1000-light=runs/spec/best.safetensors] [--n 30] [--out DIR] \
        [--cells psf0.12-t1000-light,psf0.12-t1000-nolight]

``--models`` entries are shipped names or ``label=checkpoint``. Writes ``grid.json`` and
``grid.md`` to ``--out`` (default ``docs/instrument``) and prints one comparable figure: the
mean whole-image gain over bicubic (dB) of the first learned model, measured in this run.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from lenssr.evaluation.metrics import psnr
from lenssr.inference.api import load_model
from lenssr.simulation.grid import cells_named, render_cell


def arc_psnr(sr: np.ndarray, hr: np.ndarray, arc: np.ndarray, peak: float) -> float:
    """PSNR [dB] over the ``arc`` pixels with data range ``peak`` (see the module docstring)."""
    err = float(np.mean((sr[arc].astype(np.float64) - hr[arc]) ** 2))
    return float(10.0 * np.log10(peak**2 / max(err, 1e-30)))


def parse_models(text: str) -> dict[str, str]:
    """``"a,b=path"`` -> ``{"a": "a", "b": "path"}``."""
    out: dict[str, str] = {}
    for item in filter(None, (t.strip() for t in text.split(","))):
        label, _, target = item.partition("=")
        out[label] = target or label
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="bicubic,hybrid-default,hybrid")
    ap.add_argument("--specialist", action="append", default=[], help="CELL=checkpoint")
    ap.add_argument("--n", type=int, default=30, help="systems per cell")
    ap.add_argument("--seed", type=int, default=100)
    ap.add_argument("--family", default="shapelets")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", type=Path, default=Path("docs/instrument"))
    ap.add_argument("--cells", default="", help="only these cells (comma-separated names)")
    args = ap.parse_args()
    try:
        cells = cells_named(args.cells)
    except ValueError as exc:
        ap.error(str(exc))
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)

    models = {
        label: load_model(target, device="cpu")
        for label, target in parse_models(args.models).items()
    }
    specialists = {}
    for item in args.specialist:
        cell, _, path = item.partition("=")
        specialists[cell] = load_model(path, device="cpu")
    results: dict[str, dict] = {}
    t0 = time.time()
    for cell in cells:
        data = render_cell(cell, args.n, seed=args.seed, family=args.family)
        peaks = data.hr_source.reshape(len(data.hr_source), -1).max(axis=1)
        row: dict[str, dict] = {}
        runs = dict(models)
        if cell.name in specialists:
            runs["specialist"] = specialists[cell.name]
        for label, model in runs.items():
            kw = {"psf_fwhm": cell.psf_fwhm, "pixel_scale": 0.10} if model.conditioned else {}
            sr = model.upscale(data.lr, **kw)
            whole = [psnr(s, h) for s, h in zip(sr, data.hr, strict=True)]
            arcs = [
                arc_psnr(s, h, a, p)
                for s, h, a, p in zip(sr, data.hr, data.arc, peaks, strict=True)
            ]
            row[label] = {"psnr": float(np.mean(whole)), "psnr_arc": float(np.mean(arcs))}
        results[cell.name] = row
        print(cell.name, {k: round(v["psnr"], 2) for k, v in row.items()}, flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    meta = {"n_per_cell": args.n, "seed": args.seed, "family": args.family,
            "models": parse_models(args.models), "wall_s": round(time.time() - t0, 1)}  # fmt: skip
    (args.out / "grid.json").write_text(json.dumps({"meta": meta, "cells": results}, indent=1))
    (args.out / "grid.md").write_text(markdown(results, list(models)))
    learned = [m for m in models if m != "bicubic"]
    if "bicubic" in models and learned:
        gains = [results[c][learned[0]]["psnr"] - results[c]["bicubic"]["psnr"] for c in results]
        print(
            f"{learned[0]}: mean gain over bicubic {np.mean(gains):+.2f} dB "
            f"(min {np.min(gains):+.2f} dB) over {len(gains)} cells"
        )


def markdown(results: dict[str, dict], labels: list[str]) -> str:
    """The per-cell table: whole-image and arc PSNR gain over bicubic per model."""
    others = [m for m in labels if m != "bicubic"]
    has_spec = any("specialist" in row for row in results.values())
    cols = others + (["specialist"] if has_spec else [])
    head = "| cell | bicubic PSNR / arc (dB) | " + " | ".join(
        f"{m} gain, whole / arc (dB)" for m in cols
    )
    lines = [head + " |", "|" + " --- |" * (2 + len(cols))]
    sums = {m: [] for m in cols}
    for cell, row in results.items():
        b = row["bicubic"]
        cells = [f"{b['psnr']:.2f} / {b['psnr_arc']:.2f}"]
        for m in cols:
            if m in row:
                g, ga = row[m]["psnr"] - b["psnr"], row[m]["psnr_arc"] - b["psnr_arc"]
                sums[m].append((g, ga))
                cells.append(f"{g:+.2f} / {ga:+.2f}")
            else:
                cells.append("")
        lines.append(f"| {cell} | " + " | ".join(cells) + " |")
    mean = ["mean"] + [""] + [
        f"{np.mean([g for g, _ in sums[m]]):+.2f} / {np.mean([a for _, a in sums[m]]):+.2f}"
        if sums[m] else "" for m in cols
    ]  # fmt: skip
    lines.append("| " + " | ".join(mean) + " |")
    mins = ["min"] + [""] + [
        f"{np.min([g for g, _ in sums[m]]):+.2f} / {np.min([a for _, a in sums[m]]):+.2f}"
        if sums[m] else "" for m in cols
    ]  # fmt: skip
    lines.append("| " + " | ".join(mins) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
