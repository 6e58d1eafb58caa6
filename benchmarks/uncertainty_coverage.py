"""Calibrated per-pixel uncertainty: coverage of the 1- and 2-sigma maps on held-out data.

1. Calibrate on ``--n-calib`` pairs rendered from ``survey-mix`` (``--calib-seed``; each pair
   with its own LR instrument and a training source family, given to the model): the pairs
   ``lenssr calibrate`` fits the shipped calibration on. The instrument grid is never fitted.
2. Evaluate on the instrument grid (``lenssr.simulation.grid``: 24 cells, sources of the
   held-out ``shapelets`` family): the fraction of pixels whose true HR value lies within
   1 and 2 calibrated sigma, over all pixels and over the lensed-arc pixels, per cell; the
   reliability diagram (10 levels) pooled over the grid.

Methods (all ``head*`` ones share one pass of the sigma head, so they cost the same):

- ``shipped``: what ``upscale --uncertainty`` gives (``model.upscale(lr, return_sigma=True)``:
  the stored three-term calibration, times the post-hoc variance network's per-pixel factor
  when the descriptor names one, ``lenssr.inference.variance_net``);
- ``head``: the stored three-term calibration alone;
- ``head-nll``, ``head-coverage``: the three-term variance model refitted here by the Gaussian
  likelihood or by the coverage loss (``lenssr.inference.uncertainty.fit_calibration``);
- ``head-global``: the sigma head times one factor (``calibration_factor``);
- ``tta``: the spread of the 8 rotations/flips times one factor (8 passes; ``--n-tta`` systems
  per cell and calibration pairs, as it is 8x slower).

Usage::

    python benchmarks/uncertainty_coverage.py --model hybrid \
        [--methods shipped,head,head-coverage,head-global,tta] [--n 20] [--out docs/uncertainty]

Prints one comparable figure: for the first method, the number of grid cells (of 24) whose
1- and 2-sigma coverages are within target (68.3 +- 6, 95.4 +- 3 points) over all pixels and
over the arc pixels, and the worst distance from target in units of the tolerance.
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
    GAUSS_2SIGMA,
    calibrated_sigma,
    calibration_factor,
    coverage,
    fit_calibration,
    predict_with_sigma,
    raw_predictions,
    reliability,
    render_calibration_set,
    sigma_predictions,
)
from lenssr.simulation.grid import grid_cells, render_cell

#: Target bands (fractions): 1-sigma 68.3 +- 6 points, 2-sigma 95.4 +- 3 points.
TOL1, TOL2 = 0.06, 0.03
HEAD_METHODS = ("head", "head-nll", "head-coverage", "head-global")


def tta_predictions(model, lr: np.ndarray, fwhm_pix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """SR (mean) and spread of the 8 rotations/flips of every image, each with its own PSF."""
    srs, sigs = [], []
    for k in range(len(lr)):
        kw = {"psf_fwhm": float(fwhm_pix[k]), "pixel_scale": 1.0} if model.conditioned else {}
        sr, sig = predict_with_sigma(model, lr[k : k + 1], "tta", **kw)
        srs.append(sr[0])
        sigs.append(sig[0])
    return np.stack(srs), np.stack(sigs)


def score(row: dict) -> tuple[bool, float]:
    """(within target in both pixel sets, worst distance from target / tolerance)."""
    worst = max(
        max(abs(row[s]["cov1"] - GAUSS_1SIGMA) / TOL1, abs(row[s]["cov2"] - GAUSS_2SIGMA) / TOL2)
        for s in ("all", "arc")
    )
    return worst <= 1.0, worst


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--methods", default="head,head-nll,head-coverage,head-global")
    ap.add_argument("--calib", default="survey-mix", help="preset the calibration pairs are from")
    ap.add_argument("--n-calib", type=int, default=300)
    ap.add_argument("--calib-seed", type=int, default=7)
    ap.add_argument("--n", type=int, default=20, help="systems per grid cell")
    ap.add_argument("--n-tta", type=int, default=4, help="systems per cell (and /4 calib) for tta")
    ap.add_argument("--seed", type=int, default=100)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", type=Path, default=Path("docs/uncertainty"))
    args = ap.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    model = load_model(args.model, device="cpu")
    methods = [m for m in args.methods.split(",") if m]
    calibs: dict[str, dict] = {}
    if not model.has_sigma:
        methods = [m for m in methods if m == "tta"]
    if "shipped" in methods:
        calibs["shipped"] = {"variance_net": bool(model.uncertainty.get("variance_net"))}
    t0 = time.time()
    cal = render_calibration_set(args.calib, args.n_calib, args.calib_seed)
    target = {**{k: float(cal["hr_instrument"][k]) for k in
                 ("pixel_scale", "exposure_time", "sky_brightness", "read_noise")}}  # fmt: skip
    fwhm_pix = cal["psf_fwhm"] / cal["pixel_scale"]
    timing: dict[str, float] = {}
    if any(m in HEAD_METHODS for m in methods):
        t = time.time()
        sr, sig, u = raw_predictions(model, cal["lr"], fwhm_pix)
        timing["head"] = (time.time() - t) / len(sr)
        three_term = {k: v for k, v in model.uncertainty.items() if k != "variance_net"}
        calibs["head"] = three_term if three_term.get("coefficients") else {}
        if not calibs["head"]:  # a descriptor with one factor: apply it as the model does
            calibs["head"] = {"factor": model.sigma_scale}
        for m, objective in (("head-nll", "nll"), ("head-coverage", "coverage")):
            if m in methods:
                arc = cal["arc"] if objective == "coverage" else None
                coef = fit_calibration(sr, sig, cal["hr"], u, arc, target, objective=objective)
                calibs[m] = {"coefficients": coef, "target_noise": target}
        if "head-global" in methods:
            calibs["head-global"] = {"factor": calibration_factor(sr, sig, cal["hr"])}
    n_tta_cal = max(1, args.n_calib // 4)
    if "tta" in methods:
        t = time.time()
        sr_t, sig_t = tta_predictions(model, cal["lr"][:n_tta_cal], fwhm_pix[:n_tta_cal])
        timing["tta"] = (time.time() - t) / n_tta_cal
        calibs["tta"] = {"factor": calibration_factor(sr_t, sig_t, cal["hr"][:n_tta_cal])}
    for m in methods:
        c = calibs[m]
        print(f"{m}: {json.dumps(c.get('coefficients', c.get('factor', c)))}", flush=True)

    def apply(m: str, sr: np.ndarray, sig: np.ndarray, u: np.ndarray) -> np.ndarray:
        c = calibs[m]
        return c["factor"] * sig if "factor" in c else calibrated_sigma(sr, sig, u, c)

    cells: dict[str, dict] = {}
    pooled: dict[str, list] = {m: [] for m in methods}
    for cell in grid_cells():
        data = render_cell(cell, args.n, seed=args.seed)
        fw = np.full(args.n, cell.psf_fwhm / 0.10)
        row: dict[str, dict] = {}
        if any(m in HEAD_METHODS for m in methods):
            sr, sig, u = raw_predictions(model, data.lr, fw)
        for m in methods:
            if m == "shipped":
                srm, sigm = sigma_predictions(model, data.lr, fw)
                hr, arc = data.hr, data.arc
            elif m == "tta":
                k = args.n_tta
                srm, sigm = tta_predictions(model, data.lr[:k], fw[:k])
                sigm, hr, arc = calibs[m]["factor"] * sigm, data.hr[:k], data.arc[:k]
            else:
                srm, sigm, hr, arc = sr, apply(m, sr, sig, u), data.hr, data.arc
            row[m] = {"all": coverage(srm, sigm, hr), "arc": coverage(srm, sigm, hr, arc)}
            row[m]["within"], row[m]["worst"] = score(row[m])
            pooled[m].append((srm, sigm, hr, arc))
        cells[cell.name] = row
        print(cell.name, {m: (round(r["all"]["cov1"], 3), round(r["arc"]["cov1"], 3),
                              r["within"]) for m, r in row.items()}, flush=True)  # fmt: skip

    diagrams = {}
    for m in methods:
        sr, sig, h, arc = (np.concatenate([p[i] for p in pooled[m]]) for i in range(4))
        diagrams[m] = {"all": reliability(sr, sig, h), "arc": reliability(sr, sig, h, arc)}
    summary = {m: summarise(cells, m) for m in methods}
    args.out.mkdir(parents=True, exist_ok=True)
    report = {
        "model": args.model,
        "calibration": {
            "data": f"{args.calib} rendered, seed {args.calib_seed}",
            "n": int(len(cal["lr"])),
            "n_tta": n_tta_cal,
            "methods": calibs,
        },
        "grid": {"n_per_cell": args.n, "n_tta_per_cell": args.n_tta, "seed": args.seed},
        "targets": {"cov1": [GAUSS_1SIGMA, TOL1], "cov2": [GAUSS_2SIGMA, TOL2]},
        "seconds_per_image_calibration_pass": timing,
        "summary": summary,
        "cells": cells,
        "reliability": diagrams,
        "wall_s": round(time.time() - t0, 1),
    }
    (args.out / "coverage.json").write_text(json.dumps(report, indent=1) + "\n")
    (args.out / "coverage.md").write_text(markdown(cells, methods, summary, args))
    plot(diagrams, args.out / "reliability.png")
    key = methods[0]
    s = summary[key]
    print(f"{key}: {s['cells_within']}/{len(cells)} grid cells within target "
          f"(worst {s['worst']:.2f} tolerances)")  # fmt: skip


def summarise(cells: dict[str, dict], m: str) -> dict:
    """Mean, min, max over the cells of each coverage; cells within target."""
    out: dict = {"cells_within": int(sum(cells[c][m]["within"] for c in cells)),
                 "worst": float(max(cells[c][m]["worst"] for c in cells))}  # fmt: skip
    for s in ("all", "arc"):
        for k, (goal, tol) in (("cov1", (GAUSS_1SIGMA, TOL1)), ("cov2", (GAUSS_2SIGMA, TOL2))):
            v = np.array([cells[c][m][s][k] for c in cells])
            out[f"{s}_{k}"] = {"mean": float(v.mean()), "min": float(v.min()),
                               "max": float(v.max()),
                               "cells_within": int(np.sum(np.abs(v - goal) <= tol))}  # fmt: skip
    return out


def markdown(cells: dict[str, dict], methods: list[str], summary: dict, args) -> str:
    """Summary per method, then per-cell 1/2-sigma coverage (%) over all and the arc pixels."""
    lines = [
        f"Calibration: {args.n_calib} `{args.calib}` pairs rendered with seed {args.calib_seed} "
        f"(training source families, random instruments). Test: the instrument grid, "
        f"{args.n} shapelet-source systems a cell (tta: {args.n_tta}). Target: 1σ 68.3 ± 6, "
        "2σ 95.4 ± 3 points.",
        "",
        "| method | cells within target | all 1σ mean [min, max] (in) | all 2σ | arc 1σ | arc 2σ |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for m in methods:
        s = summary[m]
        vals = [
            f"{100 * s[k]['mean']:.1f} [{100 * s[k]['min']:.1f}, {100 * s[k]['max']:.1f}] "
            f"({s[k]['cells_within']})"
            for k in ("all_cov1", "all_cov2", "arc_cov1", "arc_cov2")
        ]
        lines.append(f"| {m} | {s['cells_within']}/{len(cells)} | " + " | ".join(vals) + " |")
    lines += ["", "| cell | " + " | ".join(f"{m}: 1σ / 2σ all, arc (%)" for m in methods) + " |",
              "|" + " --- |" * (1 + len(methods))]  # fmt: skip
    for name, row in cells.items():
        vals = []
        for m in methods:
            a, r = row[m]["all"], row[m]["arc"]
            mark = "" if row[m]["within"] else " ✗"
            vals.append(
                f"{100 * a['cov1']:.1f} / {100 * a['cov2']:.1f}, "
                f"{100 * r['cov1']:.1f} / {100 * r['cov2']:.1f}{mark}"
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
    axes[0].legend(fontsize=8)
    fig.suptitle("Reliability of the calibrated 1-sigma maps (held-out instrument grid)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
