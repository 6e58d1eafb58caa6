"""A post-hoc variance network for the 1-sigma maps: study of its coverage on the held-out grid.

The shipped 1-sigma (``lenssr.inference.uncertainty``: the sigma head under a three-term
variance model) misses the coverage targets on the lensed arcs of the instrument grid in 21 of
24 cells. This study trains a small convolutional network, after the fact and with the SR model
frozen, that rescales the shipped sigma per pixel:

    sigma = sigma_shipped * exp(g(features))

- ``g``: a 32-channel CNN (one 3x3 input convolution, five residual 3x3 convolutions with
  dilations 1, 2, 4, 8, 16, a global-average branch after the second, a zero-initialised 1x1
  output, so it starts from the shipped sigma);
- features at the HR pixel: the normalised SR image and LR image (the model's noise-aware
  normalisation), log of the shipped sigma, the relative LR noise ``u`` and the PSF FWHM of the
  conditioning vector; with ``--member``, also the disagreement of the SR image with a second
  model's (a snapshot of the same training run), pixel by pixel and smoothed (2 HR pixels);
- trained by the Gaussian likelihood of ``hr - sr`` (normalised units) over all pixels plus,
  weighted ``--arc-weight``, over the lensed-arc pixels; random 80x80 HR crops, 8 a step, the 8
  rotations/flips, Adam with a one-cycle rate (peak 1e-3);
- training pairs: ``--n-train`` rendered ``survey-mix`` pairs (training source families, a random
  LR instrument each; systems ``default_rng([train_seed + 100 k, i])``), and, with ``--stress``,
  ``--n-stress`` pairs of a preset whose source families are pushed beyond their training
  ranges (``configs/uncertainty/stress-preset.yaml``); the last 200 survey-mix pairs validate.

Test: the instrument grid (24 cells, ``--n`` systems each of the held-out ``shapelets`` family,
seed 100), as ``benchmarks/uncertainty_coverage.py``. Nothing of the grid is fitted.

Usage::

    python benchmarks/uncertainty_posthoc.py --stress configs/uncertainty/stress-preset.yaml \
        [--member runs/hybrid-mix/best.safetensors] [--steps 1200] [--cache DIR] [--out DIR]

Renders and predicts into ``--cache`` on first use (about 20 minutes on one core), then trains
(about 20 minutes on one core). Prints one comparable figure: the grid cells (of 24) with all
four coverages in target, with the post-hoc network and with the shipped calibration, measured
in the same run on the same pairs.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from uncertainty_coverage import score

from lenssr.inference import variance_net as vn
from lenssr.inference.api import load_model
from lenssr.inference.uncertainty import (
    calibrated_sigma,
    coverage,
    raw_predictions,
    render_calibration_set,
)
from lenssr.simulation.grid import grid_cells, render_cell

KEYS = ("lr", "hr", "arc", "sr", "sig", "u", "fwhm")


def cached_set(model, path: Path, make) -> dict[str, np.ndarray]:
    """``KEYS`` (+ ``cell``) of a rendered set with the model's raw predictions, from ``path``
    when it is there, else made by ``make()`` (a list of ``(lr, hr, arc, fwhm_pix, cell)``
    chunks) and saved."""
    if path.is_file():
        with np.load(path) as f:
            return {k: f[k] for k in f.files}
    parts: dict[str, list] = {k: [] for k in (*KEYS, "cell")}
    for lr, hr, arc, fw, cell in make():
        sr, sig, u = raw_predictions(model, lr, fw)
        for k, v in zip(KEYS, (lr, hr, arc, sr, sig, u, fw), strict=True):
            parts[k].append(v)
        parts["cell"].append(np.full(len(lr), cell))
        print(f"  {path.stem}: {sum(len(p) for p in parts['lr'])} pairs", flush=True)
    out = {k: np.concatenate(v) for k, v in parts.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **out)
    return out


def rendered(preset: str, n: int, seed: int):
    """Chunks of 100 rendered pairs of ``preset`` (systems ``default_rng([seed + start, i])``)."""
    for start in range(0, n, 100):
        cal = render_calibration_set(preset, min(100, n - start), seed + start)
        yield cal["lr"], cal["hr"], cal["arc"], cal["psf_fwhm"] / cal["pixel_scale"], -1


def grid_chunks(n: int, seed: int):
    for ci, cell in enumerate(grid_cells()):
        d = render_cell(cell, n, seed=seed)
        yield d.lr, d.hr, d.arc, np.full(n, cell.psf_fwhm / 0.10), ci


def member_sr(member, d: dict[str, np.ndarray], path: Path) -> np.ndarray:
    """The second model's SR images of a set's LR images (cached at ``path``)."""
    if path.is_file():
        return np.load(path)
    out = np.empty_like(d["sr"])
    for f in np.unique(d["fwhm"]):
        idx = np.flatnonzero(d["fwhm"] == f)
        for s in range(0, len(idx), 20):
            j = idx[s : s + 20]
            kw = {"psf_fwhm": float(f), "pixel_scale": 1.0} if member.conditioned else {}
            out[j] = member.upscale(d["lr"][j], **kw)
    np.save(path, out)
    return out


def features(model, d: dict[str, np.ndarray], other: np.ndarray | None):
    """``(x (N, C, H, W), r (N, H, W), log calibrated sigma (N, H, W), arc)``, normalised units:
    the shipped network's features (``lenssr.inference.variance_net.set_tensors``), with
    ``other``, also the disagreement with the member, pixel by pixel and smoothed."""
    from scipy.ndimage import gaussian_filter

    x, r, ls, arc = vn.set_tensors(model, d)
    if other is None:
        return x, r, ls, arc
    q = (d["sr"] - other) / calibrated_sigma(d["sr"], d["sig"], d["u"], model.uncertainty)
    extra = np.stack([np.log(np.abs(q) + 1e-2) / 3.0,
                      np.log(np.stack([gaussian_filter(v * v, 2.0) for v in q]) + 1e-4) / 5.0],
                     1).astype(np.float32)  # fmt: skip
    return torch.cat([x, torch.from_numpy(extra)], 1), r, ls, arc


def per_cell(grid: dict, r: np.ndarray, sigma: np.ndarray) -> dict:
    """Coverage of residuals ``r`` by ``sigma`` per grid cell, all and arc pixels, with
    ``uncertainty_coverage.score``'s verdict (all four within target)."""
    zero = np.zeros_like(r)
    cells = {}
    for ci, cell in enumerate(grid_cells()):
        sel = grid["cell"] == ci
        row = {"all": coverage(zero[sel], sigma[sel], r[sel]),
               "arc": coverage(zero[sel], sigma[sel], r[sel], grid["arc"][sel])}  # fmt: skip
        row["within"] = score(row)[0]
        cells[cell.name] = row
    return cells


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="hybrid")
    ap.add_argument("--member", default=None, help="a second model (snapshot) for disagreement")
    ap.add_argument("--stress", default=None, help="preset of the morphology-shift pairs")
    ap.add_argument("--n-train", type=int, default=2000)
    ap.add_argument("--train-seed", type=int, default=1000)
    ap.add_argument("--n-stress", type=int, default=400)
    ap.add_argument("--stress-seed", type=int, default=5000)
    ap.add_argument("--n", type=int, default=20, help="systems per grid cell")
    ap.add_argument("--seed", type=int, default=100, help="grid seed")
    ap.add_argument("--steps", type=int, default=1200)
    ap.add_argument("--arc-weight", type=float, default=1.0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--cache", type=Path, default=Path("runs/uncertainty-posthoc"))
    ap.add_argument("--out", type=Path, default=Path("docs/uncertainty/posthoc"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.time()
    model = load_model(args.model, device="cpu")
    tag = f"{args.n_train}-{args.train_seed}"
    sets = {
        "train": cached_set(
            model,
            args.cache / f"train-{tag}.npz",
            lambda: rendered("survey-mix", args.n_train, args.train_seed),
        )
    }
    if args.stress:
        sets["stress"] = cached_set(
            model, args.cache / f"stress-{args.n_stress}-{args.stress_seed}.npz",
            lambda: rendered(args.stress, args.n_stress, args.stress_seed))  # fmt: skip
    sets["grid"] = cached_set(model, args.cache / f"grid-{args.n}-{args.seed}.npz",
                              lambda: grid_chunks(args.n, args.seed))  # fmt: skip
    others: dict[str, np.ndarray | None] = dict.fromkeys(sets)
    if args.member:
        member = load_model(args.member, device="cpu")
        stem = Path(args.member).stem if Path(args.member).exists() else args.member
        for name, d in sets.items():
            size = len(d["lr"])
            others[name] = member_sr(member, d, args.cache / f"member-{stem}-{name}-{size}.npy")
    feats = {name: features(model, d, others[name]) for name, d in sets.items()}
    nval = 200
    data = tuple(t[:-nval] for t in feats["train"])
    val = tuple(t[-nval:] for t in feats["train"])
    if "stress" in sets:
        data = tuple(torch.cat([a, b]) for a, b in zip(data, feats["stress"], strict=True))
    torch.manual_seed(0)  # the network's initial weights
    net = vn.VarianceNet(data[0].shape[1])
    recipe = {**vn.DEFAULTS, "steps": args.steps, "arc_weight": args.arc_weight}
    log = vn.train_member(net, data, val, recipe, seed=0)

    xg, rg, lsg, _ = feats["grid"]
    with torch.no_grad():
        lsig = torch.cat([lsg[i : i + 20] + net(xg[i : i + 20]) for i in range(0, len(xg), 20)])
    report = {"args": {k: str(v) for k, v in vars(args).items()}, "training_log": log}
    for label, ls_ in (("posthoc", lsig), ("shipped", lsg)):
        cells = per_cell(sets["grid"], rg.numpy(), torch.exp(ls_).numpy())
        report[label] = {"cells_within": int(sum(c["within"] for c in cells.values())),
                         "cells": cells}  # fmt: skip
    xv, rv, lsv, av = val
    sv = np.exp(lsv.numpy() + vn.log_factor(net, xv.numpy()))
    rv, zero, avb = rv.numpy(), np.zeros(rv.shape, np.float32), av.numpy().astype(bool)
    report["validation"] = {
        label: {"all": coverage(zero, sig, rv), "arc": coverage(zero, sig, rv, avb)}
        for label, sig in (("posthoc", sv), ("shipped", np.exp(lsv.numpy())))
    }
    report["wall_s"] = round(time.time() - t0, 1)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "coverage.json").write_text(json.dumps(report, indent=1) + "\n")
    (args.out / "coverage.md").write_text(markdown(report, args))
    print(f"post-hoc network: {report['posthoc']['cells_within']}/24 grid cells within target "
          f"(shipped calibration: {report['shipped']['cells_within']}/24)")  # fmt: skip


def markdown(report: dict, args) -> str:
    lines = [
        f"Post-hoc variance network (`benchmarks/uncertainty_posthoc.py`): member "
        f"`{args.member}`, stress `{args.stress}`, {args.steps} steps, arc weight "
        f"{args.arc_weight}. Test: the instrument grid, {args.n} shapelet-source systems a cell. "
        f"Cells within target (all four coverages): post-hoc "
        f"{report['posthoc']['cells_within']}/24, shipped {report['shipped']['cells_within']}/24.",
        "",
        "| cell | post-hoc: 1σ / 2σ all, arc (%) | shipped: 1σ / 2σ all, arc (%) |",
        "| --- | --- | --- |",
    ]
    for name in report["posthoc"]["cells"]:
        vals = []
        for label in ("posthoc", "shipped"):
            c = report[label]["cells"][name]
            mark = "" if c["within"] else " ✗"
            a, r = c["all"], c["arc"]
            vals.append(f"{100 * a['cov1']:.1f} / {100 * a['cov2']:.1f}, "
                        f"{100 * r['cov1']:.1f} / {100 * r['cov2']:.1f}{mark}")  # fmt: skip
        lines.append(f"| {name} | " + " | ".join(vals) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
