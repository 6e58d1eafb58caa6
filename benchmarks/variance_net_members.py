"""The variance network's members one by one and together: coverage on two development sets
and on the instrument grid.

The members of ``lenssr.inference.variance_net`` differ only in their seed. This prints, for each
member alone and for the ensemble that ships (the mean of their log-factors), the pooled 1- and
2-sigma coverage over all pixels and over the lensed-arc pixels of

- ``dev-stress``: 200 pairs of ``configs/uncertainty/stress-preset.yaml``, seed 9000 (the
  morphology-shift preset, systems the training never drew);
- ``dev-mix``: 200 ``survey-mix`` pairs, seed 9500;
- ``dev-faint``: 200 pairs of ``configs/uncertainty/faint-preset.yaml`` (lens light subtracted,
  fainter sources, shorter exposures: the high relative-noise regime), seed 9700;

and, with ``--grid``, the number of instrument-grid cells (24, 20 shapelet-source systems each,
seed 100, as ``benchmarks/uncertainty_coverage.py``) with all four coverages in target. The
development sets choose between recipes; the grid only reports.

Usage::

    python benchmarks/variance_net_members.py [--model hybrid] [--grid] [--cache runs/variance-net]

Prints one comparable figure: the ensemble's grid cells within target against the three-term
calibration's, measured in the same run (with ``--grid``), else its development-set coverage.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from uncertainty_posthoc import cached_set, grid_chunks, per_cell

from lenssr.inference import variance_net as vn
from lenssr.inference.api import load_model
from lenssr.inference.uncertainty import coverage

DEV = (
    {"name": "dev-stress", "preset": "configs/uncertainty/stress-preset.yaml", "n": 200,
     "seed": 9000},
    {"name": "dev-mix", "preset": "survey-mix", "n": 200, "seed": 9500},
    {"name": "dev-faint", "preset": "configs/uncertainty/faint-preset.yaml", "n": 200,
     "seed": 9700},
)  # fmt: skip


def pooled(r: np.ndarray, sigma: np.ndarray, arc: np.ndarray) -> dict[str, dict]:
    zero = np.zeros_like(r)
    return {"all": coverage(zero, sigma, r), "arc": coverage(zero, sigma, r, arc.astype(bool))}


def line(c: dict[str, dict]) -> str:
    return (f"all {100 * c['all']['cov1']:.1f} / {100 * c['all']['cov2']:.1f}, "
            f"arcs {100 * c['arc']['cov1']:.1f} / {100 * c['arc']['cov2']:.1f}")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="hybrid")
    ap.add_argument("--grid", action="store_true")
    ap.add_argument("--cache", type=Path, default=Path("runs/variance-net"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.time()
    model = load_model(args.model, device="cpu", backend="torch")
    section = model.uncertainty.pop("variance_net", None)
    if not section:
        raise SystemExit(f"{args.model}: the descriptor names no variance network")
    ens = vn.load_variance_net(model.weights_dir / section["file"], section)
    model_hash = section["weights_sha256_16"]  # the SR weights the network was trained on
    boot = section.get("bootstrap")  # the re-observation bootstrap features, when it takes them
    sets = {s["name"]: vn.rendered_set(model, s, args.cache, model_hash, boot) for s in DEV}
    if args.grid:
        sets["grid"] = cached_set(model, args.cache / f"grid-20-100-{model_hash}.npz",
                                  lambda: grid_chunks(20, 100))  # fmt: skip
        if boot:  # the grid's bootstrap, cached beside it
            path = args.cache / f"grid-20-100-{model_hash}-boot{boot['draws']}-{boot['seed']}.npz"
            if not path.is_file():
                np.savez_compressed(path, **vn.set_bootstrap(model, sets["grid"], boot))
            with np.load(path) as f:
                sets["grid"] = {**sets["grid"], **{k: f[k] for k in vn.BOOT_KEYS}}
    nets = {"three-term": None, "ensemble": ens}
    nets.update({f"member {k}": m for k, m in enumerate(ens.members)})
    report: dict = {"model": args.model, "members": len(ens.members)}
    for name, d in sets.items():
        x, r, ls, arc = (t.numpy() for t in vn.set_tensors(model, d))
        report[name] = {}
        for label, net in nets.items():
            sigma = np.exp(ls + (0.0 if net is None else vn.log_factor(net, x)))
            if name == "grid":
                cells = per_cell(d, r, sigma)
                got = int(sum(c["within"] for c in cells.values()))
                report[name][label] = {"cells_within": got, "pooled": pooled(r, sigma, arc)}
                print(f"{name} {label}: {got}/24 cells within target", flush=True)
            else:
                report[name][label] = pooled(r, sigma, arc)
                print(f"{name} {label}: {line(report[name][label])}", flush=True)
    report["wall_s"] = round(time.time() - t0, 1)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1) + "\n")
    if args.grid:
        g = report["grid"]
        print(f"variance-net ensemble: {g['ensemble']['cells_within']}/24 grid cells within target "
              f"(three-term calibration: {g['three-term']['cells_within']}/24)")  # fmt: skip
    else:
        print(f"variance-net ensemble on dev-stress: {line(report['dev-stress']['ensemble'])}")


if __name__ == "__main__":
    main()
