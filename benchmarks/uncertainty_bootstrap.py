"""Uncertainty study: a re-observation bootstrap of the SR error, against the shipped 1-sigma map.

The bootstrap asks the observation itself how wrong the SR image can be. The SR image plays the
true sky: it is re-observed by the LR instrument (``lenssr.inference.consistency.reobserve``:
the PSF difference and the pixel binning), the residuals ``r = lr - A(sr)`` of the real
observation are given random signs (a wild bootstrap: each LR pixel keeps its own noise level,
Poisson and lens light included, with no noise model and in any units), and the network
super-resolves each of the ``K`` new observations ``A(sr) + eps_k r`` (the package's
``lenssr.inference.bootstrap.bootstrap_terms``; this study records every draw on its way
through, as its bias term ``bb2`` needs them, with signs seeded per image). The spread of
``sr*_k - sr`` follows the image's own morphology, PSF and noise, so it cannot be fooled by a
source family or an instrument the training never saw, which is where the shipped map fails.

Per HR pixel (:func:`terms`):

- ``b2``: ``mean_k (sr*_k - sr)^2`` (smoothed by a 1-pixel Gaussian; K = 8);
- ``bn2``: the variance of the ``sr*_k`` around their mean (the noise response alone);
- ``bb2``: the squared mean shift ``(mean_k sr*_k - sr)^2`` less its noise part (the model's
  loss of the image's own detail; smoothed by 2 pixels);
- ``t2``: the HR target's own noise at the SR value (``variance_terms``' ``target``);
- ``ship2``: the square of the shipped map (three-term calibration x variance network).

Each variant is ``sigma^2 = sum_t exp(2 (k0 + k1 (u + 2.5) + k2 (fwhm - 2))) term_t`` with ``u``
the relative LR noise and ``fwhm`` the LR PSF FWHM [LR pixels], fitted by the Gaussian
likelihood on the fit sets (``*g``: then times one factor fitted to the 1- and 2-sigma coverages
of the fit sets). Fit sets: 300 ``survey-mix`` pairs (seed 1000) and 100 of the morphology-shift
preset (seed 5000). Development sets (never fitted): ``dev-mix`` (survey-mix, seed 9500),
``dev-stress`` (morphology shift, seed 9000), ``dev-faint`` (faint, no lens light, seed 9700),
150 pairs each, and a development grid of sixteen cells that are not test cells (PSF 0.15" and
0.27"; 250 s, 400 s, 2500 s and 6000 s, which bracket the test grid's 200-5000 s; lens light on
and off; morphology-shift sources; 20 systems each, seed 300).
``--grid``: then the test grid (24 cells of ``shapelets`` sources, 20 systems each, seed 100,
as ``uncertainty_coverage.py``), for the variants named by ``--grid-methods`` only.

Usage::

    python benchmarks/uncertainty_bootstrap.py --only fit-mix      # render + predict one set
    python benchmarks/uncertainty_bootstrap.py [--grid] [--out docs/uncertainty/bootstrap]

Sets are cached in ``--cache`` (per weights hash), so several ``--only`` runs can share the work.
Prints one comparable figure: development sets (of 19) within target for the dev-chosen
bootstrap variant and for the shipped map, measured in the same run (and the test grid's, with
``--grid``).
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import time
from pathlib import Path

import numpy as np
import torch
from scipy.ndimage import gaussian_filter
from scipy.optimize import minimize

from lenssr.data.normalize import noise_sigma_mad
from lenssr.inference.api import load_model
from lenssr.inference.bootstrap import bootstrap_terms
from lenssr.inference.uncertainty import (
    GAUSS_1SIGMA,
    GAUSS_2SIGMA,
    calibrated_sigma,
    raw_predictions,
    render_calibration_set,
    variance_terms,
)
from lenssr.simulation.grid import grid_cells, render_cell, render_systems
from lenssr.simulation.presets import load_preset

STRESS = "configs/uncertainty/stress-preset.yaml"
FAINT = "configs/uncertainty/faint-preset.yaml"
K = 8
#: name -> (preset or ``cell:psf,exposure,light`` of the stress morphologies, n, seed)
FIT = {"fit-mix": ("survey-mix", 300, 1000), "fit-stress": (STRESS, 100, 5000)}
DEV = {
    "dev-mix": ("survey-mix", 150, 9500),
    "dev-stress": (STRESS, 150, 9000),
    "dev-faint": (FAINT, 150, 9700),
    **{
        f"dg-{p}-{t}-{light}": (f"cell:{p},{t},{light}", 20, 300)
        for p in (0.15, 0.27)
        for t in (250, 400, 2500, 6000)
        for light in ("light", "nolight")
    },
}
GRID = {f"grid-{c.name}": (f"grid:{c.name}", 20, 100) for c in grid_cells()}
VARIANTS = {
    "shipped": ["ship2"],
    "ship+boot": ["ship2", "b2"],
    "boot+t": ["b2", "t2"],
    "split+t": ["bn2", "bb2", "t2"],
}
TOL1, TOL2 = 0.06, 0.03


def render(spec: tuple[str, int, int]) -> dict:
    """``lr, hr, arc, fw`` [LR pixels] of a set spec."""
    preset, n, seed = spec
    if preset.startswith("grid:"):
        cell = {c.name: c for c in grid_cells()}[preset[5:]]
        g = render_cell(cell, n, seed=seed)
        return {"lr": g.lr, "hr": g.hr, "arc": g.arc, "fw": np.full(n, cell.psf_fwhm / 0.10)}
    if preset.startswith("cell:"):
        psf, texp, light = preset[5:].split(",")
        p = load_preset(STRESS, {"lr_mixture.enabled": False, "lr.psf_fwhm": float(psf),
                                 "lr.exposure_time": float(texp),
                                 "lens_light.p_off": 0.0 if light == "light" else 1.0})  # fmt: skip
        d = render_systems(p, n, seed)
        return {"lr": d["lr"], "hr": d["hr"], "arc": d["arc"],
                "fw": d["psf_fwhm"] / float(p.lr.pixel_scale)}  # fmt: skip
    c = render_calibration_set(preset, n, seed)
    return {"lr": c["lr"], "hr": c["hr"], "arc": c["arc"], "fw": c["psf_fwhm"] / c["pixel_scale"]}


def bootstrap(model, lr: np.ndarray, sr: np.ndarray, fw: float, hr_fwhm: float, seed) -> np.ndarray:
    """``K`` draws ``sr*_k - sr`` ``(K, H, W)`` of one LR image ``(h, w)`` and its SR image: the
    package's bootstrap (``bootstrap_terms``), every draw recorded on its way through."""
    draws = []

    def record(batch: np.ndarray, noise: float) -> np.ndarray:
        draws.append(model.upscale(batch, psf_fwhm=float(fw), pixel_scale=1.0, noise_sigma=noise))
        return draws[-1]

    noise = np.array([noise_sigma_mad(np.nan_to_num(lr.astype(np.float64)))])
    bootstrap_terms(record, lr[None], sr[None], model.scale, float(fw), hr_fwhm, noise, K, seed)
    return np.concatenate(draws) - sr[None]


def predict(model, d: dict, seed: int, hr_fwhm: float) -> dict:
    """The set's SR, shipped map, three-term map and bootstrap draws."""
    sr, raw, u = raw_predictions(model, d["lr"], d["fw"])
    three_term = {k: v for k, v in model.uncertainty.items() if k != "variance_net"}
    out = {**d, "sr": sr, "raw": raw, "u": u,
           "three": calibrated_sigma(sr, raw, u, three_term)}  # fmt: skip
    shipped, boot = [], []
    for i in range(len(sr)):
        kw = {"psf_fwhm": float(d["fw"][i]), "pixel_scale": 1.0}
        shipped.append(model.upscale(d["lr"][i : i + 1], return_sigma=True, **kw)[1][0])
        boot.append(bootstrap(model, d["lr"][i], sr[i], d["fw"][i], hr_fwhm, [seed, i, 77]))
    out["shipped"] = np.stack(shipped)
    out["boot"] = np.stack(boot).astype(np.float32)
    return out


def cached(model, name: str, spec, cache: Path, model_hash: str, hr_fwhm: float) -> dict:
    path = cache / f"{name}.npz"
    if path.is_file():
        with np.load(path) as f:
            if str(f["model"]) == model_hash:
                return {k: f[k] for k in f.files if k != "model"}
    t0 = time.time()
    d = predict(model, render(spec), spec[2], hr_fwhm)
    cache.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, model=np.array(model_hash), **d)
    print(f"  {name}: {len(d['lr'])} pairs in {time.time() - t0:.0f} s", flush=True)
    return d


def terms(d: dict, target: dict) -> dict:
    """The per-pixel variance terms of the module docstring, and the residual ``r``."""
    bt = d["boot"].astype(np.float64)
    bn2 = gaussian_filter(bt.var(1) * K / (K - 1), (0, 1, 1))
    bias = np.clip(bt.mean(1) ** 2 - bn2 * (1 + 1 / K), 0, None)
    return {
        "b2": gaussian_filter((bt**2).mean(1), (0, 1, 1)),
        "bn2": bn2,
        "bb2": gaussian_filter(bias, (0, 2, 2)),
        "t2": variance_terms(d["sr"], d["raw"], target)["target"],
        "ship2": d["shipped"].astype(np.float64) ** 2,
        "r": d["hr"].astype(np.float64) - d["sr"],
        "arc": d["arc"].astype(bool),
        "u": np.broadcast_to(d["u"][:, None, None], d["sr"].shape),
        "fw": np.broadcast_to(d["fw"][:, None, None], d["sr"].shape),
    }


def variance(t: dict, theta: np.ndarray, names: list[str], idx=slice(None)) -> np.ndarray:
    v = 1e-30
    for i, n in enumerate(names):
        k = theta[3 * i : 3 * i + 3]
        v = (
            v
            + np.exp(2 * (k[0] + k[1] * (t["u"][idx] + 2.5) + k[2] * (t["fw"][idx] - 2)))
            * (t[n][idx])
        )
    return v


def fit(fits: list[dict], names: list[str]) -> np.ndarray:
    """Likelihood fit on 200000 pixels + 100000 arc pixels of each fit set."""
    rng = np.random.default_rng(0)
    keys = [*names, "r", "u", "fw"]
    rows: dict[str, list] = {k: [] for k in keys}
    for t in fits:
        for pool in (np.arange(t["r"].size), np.flatnonzero(t["arc"].ravel())):
            ix = rng.choice(pool, 200000 if pool.size == t["r"].size else 100000)
            for k in keys:
                rows[k].append(np.asarray(t[k]).reshape(-1)[ix])
    cat = {k: np.concatenate(v) for k, v in rows.items()}

    def nll(theta: np.ndarray) -> float:
        v = variance(cat, theta, names)
        return float(np.mean(np.log(v) + cat["r"] ** 2 / v))

    return minimize(nll, np.zeros(3 * len(names)), method="L-BFGS-B").x


def coverages(t: dict, sigma: np.ndarray) -> list[float]:
    z = np.abs(t["r"]) / sigma
    za = z[t["arc"]]
    return [float(np.mean(z <= 1)), float(np.mean(z <= 2)), float(np.mean(za <= 1)),
            float(np.mean(za <= 2))]  # fmt: skip


def arc_scale(t: dict, sigma: np.ndarray) -> list[float]:
    """Mean and standard deviation over the images of ``log(rms(hr - sr) / rms(sigma))`` on
    their arc pixels: a map's bias for this set, and its scatter from image to image."""
    v = [0.5 * np.log(np.mean(t["r"][i][a] ** 2) / np.mean(sigma[i][a] ** 2))
         for i, a in enumerate(t["arc"]) if a.sum() >= 5]  # fmt: skip
    return [float(np.mean(v)), float(np.std(v))]


def worst(c: list[float]) -> float:
    return max(abs(c[0] - GAUSS_1SIGMA) / TOL1, abs(c[1] - GAUSS_2SIGMA) / TOL2,
               abs(c[2] - GAUSS_1SIGMA) / TOL1, abs(c[3] - GAUSS_2SIGMA) / TOL2)  # fmt: skip


def global_factor(fits: list[dict], sigmas: list[np.ndarray]) -> float:
    """One factor minimising the squared tolerance distances of the four pooled coverages."""
    z = np.sort(
        np.concatenate([(np.abs(t["r"]) / s).ravel() for t, s in zip(fits, sigmas, strict=True)])
    )
    za = np.sort(
        np.concatenate([(np.abs(t["r"]) / s)[t["arc"]] for t, s in zip(fits, sigmas, strict=True)])
    )
    best, out = np.inf, 1.0
    for f in np.exp(np.linspace(-1, 1, 401)):
        c = [np.searchsorted(a, k * f, "right") / a.size for a in (z, za) for k in (1, 2)]
        loss = sum(((c[i] - g) / tol) ** 2 for i, (g, tol) in
                   enumerate([(GAUSS_1SIGMA, TOL1), (GAUSS_2SIGMA, TOL2)] * 2))  # fmt: skip
        if loss < best:
            best, out = loss, float(f)
    return out


def table(results: dict, names: list[str]) -> list[str]:
    head = "| variant | sets within target | worst miss (tolerances) | "
    lines = [head + " | ".join(names) + " |",
             "| --- | --- | --- | " + " | ".join("---" for _ in names) + " |"]  # fmt: skip
    for v, rows in results.items():
        cells = [rows[n] for n in names]
        ok = sum(worst(c) <= 1 for c in cells)
        lines.append(f"| {v} | {ok}/{len(cells)} | {max(worst(c) for c in cells):.2f} | " +
                     " | ".join("{:.0f}/{:.0f}, {:.0f}/{:.0f}".format(*(100 * x for x in c)) +
                                ("" if worst(c) <= 1 else " ✗") for c in cells) + " |")  # fmt: skip
    return lines


def scale_table(scales: dict[str, dict]) -> list[str]:
    names = list(next(iter(scales.values())))
    return ["| variant | " + " | ".join(names) + " |",
            "| --- | " + " | ".join("---" for _ in names) + " |",
            *(f"| {v} | " + " | ".join("{:+.2f} / {:.2f}".format(*r[n]) for n in names) + " |"
              for v, r in scales.items())]  # fmt: skip


def dev_maps(model, model_hash: str, hr_fwhm: float, args) -> None:
    """Coverage of each ``label=checkpoint`` model's own 1-sigma map (``upscale(...,
    return_sigma=True)``, exactly what ``--uncertainty`` writes) on the development sets."""
    results: dict[str, dict] = {}
    for item in args.maps.split(","):
        label, _, ckpt = item.partition("=")
        m = load_model(ckpt or label, device="cpu", backend="torch")
        t0 = time.time()
        for n in DEV:
            d = cached(model, n, DEV[n], args.cache, model_hash, hr_fwhm)
            sr, sig = zip(*(m.upscale(d["lr"][i : i + 1], return_sigma=True,
                                      psf_fwhm=float(d["fw"][i]), pixel_scale=1.0)
                            for i in range(len(d["lr"]))), strict=True)  # fmt: skip
            t = {"r": d["hr"] - np.concatenate(sr).astype(np.float64), "arc": d["arc"]}
            results.setdefault(label, {})[n] = coverages(t, np.concatenate(sig).astype(np.float64))
        print(f"{label}: {time.time() - t0:.0f} s", {n: round(worst(c), 2)
              for n, c in results[label].items()}, flush=True)  # fmt: skip
    report_dev(results, args.out, "dev-maps", "each model's own map (`upscale(return_sigma="
               "True)`)", f"--maps {args.maps}")  # fmt: skip


def report_dev(
    results: dict,
    out: Path | None,
    stem: str,
    what: str,
    flags: str,
    script: str = "uncertainty_bootstrap.py",
) -> None:
    """Print the development table of ``results`` (label -> set -> coverages) and, with
    ``out``, write it as ``<stem>.json`` and ``<stem>.md`` (naming the command ``python
    benchmarks/<script> <flags>``); then each label's sets in target."""
    lines = table(results, list(DEV))
    print("\n".join(lines))
    if out:
        out.mkdir(parents=True, exist_ok=True)
        (out / f"{stem}.json").write_text(json.dumps(results, indent=1) + "\n")
        head = (f"Coverage (%) 1σ / 2σ over all pixels, then over the arc pixels, of {what} on "
                "the development sets; ✗ outside target. "
                f"`python benchmarks/{script} {flags}`.")  # fmt: skip
        (out / f"{stem}.md").write_text(head + "\n\n" + "\n".join(lines) + "\n")
    for label, r in results.items():
        print(f"development sets within target: {label} "
              f"{sum(worst(c) <= 1 for c in r.values())}/{len(r)} "
              f"(worst {max(map(worst, r.values())):.2f})")  # fmt: skip


def dev_sets(model, hr_fwhm: float, cache: Path):
    """``(name, d)`` of each development set: the pairs and ``--model``'s raw predictions and
    bootstrap (``variance_net.predicted_set``) without its variance network, computed once and
    cached as ``features-<set>.npz`` (keyed by the descriptor less the variance network)."""
    from lenssr.inference import variance_net as vn

    section = model.uncertainty.get("variance_net") or {}
    boot = section.get("bootstrap") or {"draws": 8, "seed": 0, "hr_psf_fwhm_pix": hr_fwhm}
    # the features depend on the SR network and the three-term calibration, not on the network
    desc = copy.deepcopy(model.descriptor)
    desc.get("uncertainty", {}).pop("variance_net", None)
    key = hashlib.sha256((json.dumps(desc, sort_keys=True) + str(boot)).encode()).hexdigest()
    for n in DEV:
        path = cache / f"features-{n}.npz"
        d = None
        if path.is_file():
            with np.load(path) as f:
                if str(f["model"]) == key:
                    d = {k: f[k] for k in f.files if k != "model"}
        if d is None:
            c = render(DEV[n])
            d = vn.predicted_set(model, c["lr"], c["hr"], c["arc"], c["fw"], boot)
            cache.mkdir(parents=True, exist_ok=True)
            np.savez_compressed(path, model=np.array(key), **d)
        yield n, d


def dev_nets(model, hr_fwhm: float, args) -> None:
    """Coverage of variance-network weights (``label=file.sigma.safetensors``, all trained for
    ``--model``'s SR network and three-term calibration) on the development sets, through the
    training path (``variance_net.set_tensors``, the features ``upscale(return_sigma=True)``
    builds, tested equal), on the cached features of :func:`dev_sets`, so a recipe variant is
    scored in a minute or two."""
    from safetensors import safe_open

    from lenssr.inference import variance_net as vn

    names = list(vn.FEATURES) + list(vn.BOOT_FEATURES)
    nets = {}
    for item in args.nets.split(","):
        label, _, path = item.partition("=")
        with safe_open(path, "pt") as f:
            sec = json.loads(f.metadata()["lenssr_variance_net"])
        idx = [names.index(k) for k in sec["features"]]
        nets[label] = (vn.load_variance_net(Path(path), sec), idx)
    results: dict[str, dict] = {}
    for n, d in dev_sets(model, hr_fwhm, args.cache):
        x, r, ls, arc = vn.set_tensors(model, d)
        t = {"r": r.numpy().astype(np.float64), "arc": arc.numpy().astype(bool)}
        results.setdefault("three-term", {})[n] = coverages(t, np.exp(ls.numpy()))
        for label, (net, idx) in nets.items():
            lf = vn.log_factor(net, np.ascontiguousarray(x.numpy()[:, idx]))
            results.setdefault(label, {})[n] = coverages(t, np.exp(ls.numpy() + lf))
        print(n, {v: round(worst(r_[n]), 2) for v, r_ in results.items()}, flush=True)
    report_dev(results, args.out, "dev-nets", "variance-network weights (training path)",
               f"--nets {args.nets}")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="hybrid")
    ap.add_argument("--only", default=None, help="render and cache these sets (comma list)")
    ap.add_argument("--grid", action="store_true", help="also test on the instrument grid")
    ap.add_argument("--grid-methods", default="shipped,ship+boot")
    ap.add_argument("--cache", type=Path, default=Path("runs/uncertainty-bootstrap"))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--maps", default=None,
                    help="label=checkpoint,...: score these models' upscale(return_sigma=True) "
                    "maps on the development sets instead")  # fmt: skip
    ap.add_argument("--nets", default=None,
                    help="label=file.sigma.safetensors,...: score these variance networks of "
                    "--model on the development sets (training path, cached features)")  # fmt: skip
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.time()
    model = load_model(args.model, device="cpu", backend="torch")
    model_hash = hashlib.sha256(json.dumps(model.descriptor, sort_keys=True).encode()).hexdigest()
    hr = load_preset("survey-mix").hr
    hr_fwhm = hr.psf_fwhm_pix
    specs = {**FIT, **DEV, **GRID}
    if args.only:
        for name in args.only.split(","):
            cached(model, name, specs[name], args.cache, model_hash, hr_fwhm)
        return
    if args.maps:
        dev_maps(model, model_hash, hr_fwhm, args)
        return
    if args.nets:
        dev_nets(model, hr_fwhm, args)
        return
    target = model.uncertainty["target_noise"]

    def load(name: str) -> dict:
        return terms(cached(model, name, specs[name], args.cache, model_hash, hr_fwhm), target)

    fits = [load(n) for n in FIT]
    thetas, factors = {}, {}
    for v, names in VARIANTS.items():
        thetas[v] = fit(fits, names) if v != "shipped" else np.zeros(3)
        factors[v] = global_factor(fits, [np.sqrt(variance(t, thetas[v], names)) for t in fits])
    dev: dict[str, dict] = {}
    scales: dict[str, dict] = {}
    for n in DEV:
        t = load(n)
        for v, names in VARIANTS.items():
            s = np.sqrt(variance(t, thetas[v], names))
            dev.setdefault(v, {})[n] = coverages(t, s)
            dev.setdefault(v + "*g", {})[n] = coverages(t, factors[v] * s)
            scales.setdefault(v, {})[n] = arc_scale(t, s)
        print(n, {v: round(worst(r[n]), 2) for v, r in dev.items()}, flush=True)
    score = {v: (sum(worst(c) <= 1 for c in r.values()), max(map(worst, r.values())))
             for v, r in dev.items()}  # fmt: skip
    grid: dict[str, dict] = {}
    gscales: dict[str, dict] = {}
    if args.grid:
        for n in GRID:
            t = load(n)
            for v in args.grid_methods.split(","):
                base = v.removesuffix("*g")
                s = np.sqrt(variance(t, thetas[base], VARIANTS[base]))
                grid.setdefault(v, {})[n[5:]] = coverages(
                    t, factors[base] * s if v.endswith("*g") else s
                )
                if not v.endswith("*g"):
                    gscales.setdefault(v, {})[n[5:]] = arc_scale(t, s)
            print(n, {v: round(worst(r[n[5:]]), 2) for v, r in grid.items()}, flush=True)
    report = {
        "model": args.model,
        "fit": {
            v: {"theta": np.round(thetas[v], 4).tolist(), "factor": factors[v]} for v in VARIANTS
        },  # fmt: skip
        "dev": dev,
        "dev_score": score,
        "grid": grid,
        "arc_scale": {"dev": scales, "grid": gscales},
        "wall_s": round(time.time() - t0, 1),
    }
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "bootstrap.json").write_text(json.dumps(report, indent=1) + "\n")
        md = ["Coverage (%) 1σ / 2σ over all pixels, then over the arc pixels; ✗ outside target "
              "(1σ 68.3 ± 6, 2σ 95.4 ± 3). `python benchmarks/uncertainty_bootstrap.py "
              f"{'--grid ' if args.grid else ''}--out {args.out}`.", "",
              "## Development sets (never fitted)", "", *table(dev, list(DEV))]  # fmt: skip
        if grid:
            md += ["", "## Test: the instrument grid (shapelet sources)", "",
                   *table(grid, [n[5:] for n in GRID])]  # fmt: skip
        md += [
            "",
            "## Per-image scale on the arcs",
            "",
            "Mean / standard deviation over the images of log(rms error / rms sigma) on "
            "their arc pixels (0: right on average; the set's bias, then its scatter).",
            "",
        ]
        for sc in (scales, gscales):
            if sc:
                md += [*scale_table(sc), ""]
        (args.out / "bootstrap.md").write_text("\n".join(md) + "\n")
    best = min(
        (v for v in dev if v not in ("shipped", "shipped*g")),
        key=lambda v: (-score[v][0], score[v][1]),
    )
    print(
        f"development cells within target: {best} {score[best][0]}/{len(DEV)} "
        f"(worst {score[best][1]:.2f}) vs shipped {score['shipped'][0]}/{len(DEV)} "
        f"(worst {score['shipped'][1]:.2f})"
    )
    for v, r in grid.items():
        print(f"grid cells within target: {v} {sum(worst(c) <= 1 for c in r.values())}/{len(r)}")


if __name__ == "__main__":
    main()
