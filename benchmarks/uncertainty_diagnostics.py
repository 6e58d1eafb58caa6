"""Why the shipped 1-sigma misses on the lensed arcs: error statistics on the held-out grid.

On the pairs of ``benchmarks/uncertainty_posthoc.py`` (its ``--cache``: rendered survey-mix
pairs, morphology-shift pairs, the instrument grid; rendered there on first use), with the
shipped calibration ``z = (hr - sr) / sigma``:

1. the heavy tails: arc coverage pooled over the grid, the same after rescaling each image's arc
   sigma by its own rms z (an oracle no method has), and the kurtosis of z within each image's
   arc (3 for a Gaussian);
2. what predicts the arc error: Spearman correlations of ``|hr - sr|`` on the grid arcs with
   the local LR residual ``|lr - A(sr)| / noise``, the gradient and Laplacian of the SR image
   over sigma, the SR value over the image peak, and, with ``--member``, the disagreement of
   the SR image with a second model's, per pixel and per image (mean over the arc);
3. refits of the three-term variance model (``fit_calibration``) on survey-mix pairs and on
   the morphology-shift pairs, by the likelihood over all pixels, over all + arc pixels, and
   by the coverage loss: cells of the grid within target.

Usage::

    python benchmarks/uncertainty_diagnostics.py --stress configs/uncertainty/stress-preset.yaml \
        [--member runs/hybrid-mix/best.safetensors] [--cache DIR]

Prints one comparable figure: the pooled arc 1-sigma coverage of the shipped calibration, and
with the per-image oracle rescaling, measured in the same run.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from scipy.ndimage import gaussian_filter, sobel
from scipy.stats import spearmanr
from uncertainty_posthoc import cached_set, grid_chunks, member_sr, per_cell, rendered

from lenssr.data.normalize import noise_sigma_mad
from lenssr.inference.api import load_model
from lenssr.inference.consistency import blur_sigma, reobserve
from lenssr.inference.uncertainty import calibrated_sigma, coverage, fit_calibration
from lenssr.simulation.presets import load_preset


def cells_within(grid: dict, r: np.ndarray, sigma: np.ndarray) -> int:
    return sum(c["within"] for c in per_cell(grid, r, sigma).values())


def arc_coverage(r: np.ndarray, sigma: np.ndarray, arc: np.ndarray) -> list[float]:
    c = coverage(np.zeros_like(r), sigma, r, arc)
    return [c["cov1"], c["cov2"]]


def rho(a: np.ndarray, b: np.ndarray, every: int = 7) -> float:
    return float(spearmanr(a.ravel()[::every], b.ravel()[::every])[0])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="hybrid")
    ap.add_argument("--member", default=None)
    ap.add_argument("--stress", default=None)
    ap.add_argument("--n-train", type=int, default=2000)
    ap.add_argument("--train-seed", type=int, default=1000)
    ap.add_argument("--n-stress", type=int, default=400)
    ap.add_argument("--stress-seed", type=int, default=5000)
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--seed", type=int, default=100)
    ap.add_argument("--n-fit", type=int, default=400, help="pairs of each set the refits use")
    ap.add_argument("--cache", type=Path, default=Path("runs/uncertainty-posthoc"))
    ap.add_argument("--out", type=Path, default=Path("docs/uncertainty/diagnostics.json"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    model = load_model(args.model, device="cpu")
    grid = cached_set(model, args.cache / f"grid-{args.n}-{args.seed}.npz",
                      lambda: grid_chunks(args.n, args.seed))  # fmt: skip
    train = cached_set(model, args.cache / f"train-{args.n_train}-{args.train_seed}.npz",
                       lambda: rendered("survey-mix", args.n_train, args.train_seed))  # fmt: skip
    fits = {"survey-mix": train}
    if args.stress:
        fits["stress"] = cached_set(
            model, args.cache / f"stress-{args.n_stress}-{args.stress_seed}.npz",
            lambda: rendered(args.stress, args.n_stress, args.stress_seed))  # fmt: skip
    out: dict = {}
    sr, hr, arc = grid["sr"], grid["hr"], grid["arc"]
    sigma = calibrated_sigma(sr, grid["sig"], grid["u"], model.uncertainty)
    r = hr - sr
    z = r / sigma

    # 1. heavy tails
    oracle = sigma.copy()  # each image's arc sigma rescaled by its own rms z
    for i in range(len(z)):
        if arc[i].sum() > 10:
            oracle[i] = sigma[i] * np.sqrt(np.mean(z[i][arc[i]] ** 2))
    kurt = [np.mean(z[i][arc[i]] ** 4) / np.mean(z[i][arc[i]] ** 2) ** 2
            for i in range(len(z)) if arc[i].sum() > 10]  # fmt: skip
    out["arc_coverage"] = {"shipped": arc_coverage(r, sigma, arc),
                           "per_image_oracle": arc_coverage(r, oracle, arc)}  # fmt: skip
    out["arc_kurtosis_within_image_p10_p50_p90"] = [float(v) for v in
                                                    np.percentile(kurt, [10, 50, 90])]  # fmt: skip

    # 2. what predicts the arc error
    lr = grid["lr"].astype(np.float64)
    noise = np.array([noise_sigma_mad(im) for im in lr])
    hr_inst = load_preset("survey-mix").hr  # the HR target of the training data and the grid
    scale = sr.shape[-1] // lr.shape[-1]
    hr_fwhm = hr_inst.psf_fwhm_pix
    blur = torch.tensor([blur_sigma(f, scale, hr_fwhm) for f in grid["fwhm"]])
    a_sr = reobserve(torch.from_numpy(sr.astype(np.float64))[:, None], scale, blur)[:, 0].numpy()
    chi = np.abs(lr - a_sr) / noise[:, None, None]
    chi = np.repeat(np.repeat(chi, scale, -2), scale, -1)
    grad = np.stack([np.hypot(sobel(s, 0), sobel(s, 1)) for s in sr]) / sigma
    lap = (
        np.stack(
            [
                np.abs(gaussian_filter(s, 1, order=(2, 0)) + gaussian_filter(s, 1, order=(0, 2)))
                for s in sr
            ]
        )
        / sigma
    )
    rel = sr / sr.max((1, 2), keepdims=True)
    ar = np.abs(r)
    out["spearman_abs_error_on_arcs"] = {
        "lr_residual": rho(chi[arc], ar[arc]),
        "gradient_over_sigma": rho(grad[arc], ar[arc]),
        "laplacian_over_sigma": rho(lap[arc], ar[arc]),
        "sr_over_peak": rho(rel[arc], ar[arc]),
    }
    if args.member:
        member = load_model(args.member, device="cpu")
        stem = Path(args.member).stem if Path(args.member).exists() else args.member
        for name, d, key in (("grid", grid, "grid"), ("survey-mix", train, "train")):
            other = member_sr(member, d, args.cache / f"member-{stem}-{key}-{len(d['lr'])}.npy")
            dd, rr, aa = d["sr"] - other, d["hr"] - d["sr"], d["arc"]
            per_e = [np.mean(rr[i][aa[i]] ** 2) for i in range(len(rr)) if aa[i].any()]
            per_d = [np.mean(dd[i][aa[i]] ** 2) for i in range(len(rr)) if aa[i].any()]
            out[f"member_disagreement_{name}"] = {
                "spearman_pixel_arc": rho(np.abs(dd[aa]), np.abs(rr[aa])),
                "spearman_per_image_arc": float(spearmanr(per_e, per_d)[0]),
            }

    # 3. refits of the three-term model
    keys = ("pixel_scale", "exposure_time", "sky_brightness", "read_noise")
    target = {k: model.uncertainty["target_noise"][k] for k in keys}
    refits = {"shipped": cells_within(grid, r, sigma)}
    for name, d in fits.items():
        k = slice(0, args.n_fit)
        part = [d[x][k] for x in ("sr", "sig", "hr", "u")]
        for label, objective, use_arc in (("nll", "nll", False), ("nll+arc", "nll", True),
                                          ("coverage+arc", "coverage", True)):  # fmt: skip
            coef = fit_calibration(*part, d["arc"][k] if use_arc else None, target,
                                   objective=objective)  # fmt: skip
            s = calibrated_sigma(sr, grid["sig"], grid["u"],
                                 {"coefficients": coef, "target_noise": target})  # fmt: skip
            refits[f"{name} {label}"] = cells_within(grid, r, s)
            print(f"  refit on {name}, {label}: {refits[f'{name} {label}']}/24 cells", flush=True)
    out["refit_cells_within"] = refits
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out, indent=1))
    a, o = out["arc_coverage"]["shipped"], out["arc_coverage"]["per_image_oracle"]
    print(f"arc 1-sigma coverage: shipped {100 * a[0]:.1f}%, per-image oracle {100 * o[0]:.1f}% "
          f"(Gaussian 68.3%)")  # fmt: skip


if __name__ == "__main__":
    main()
