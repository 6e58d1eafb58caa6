"""Simulation throughput: pairs/s of the whole ``lenssr simulate --preset default`` command.

Runs the real command line (process start, imports, rendering, noise, HDF5 writing) with cdm
substructure (``--classes cdm``) and 2 workers, for 25 and 500 subhalos, and prints the median
pairs/s of several runs, one line per configuration. Targets on a 2-core machine: >= 40 pairs/s
with 25 subhalos, >= 15 pairs/s with 500.

A second line per configuration compares the renderer with a plain lenstronomy per-profile
loop of the same systems, in the same process and run (DeepLenseSim style: per system one
``LensModel(["SIE", "SHEAR"] + ["POINT_MASS"] * n_subhalos)``, and per instrument one
lenstronomy ``ImageModel`` on the same 0.025" fine grid, i.e. the instrument's pixels with its
supersampling, Gaussian PSF, elliptical Sersic source and lens light). The reference renders
the base Sersic source only (no knots or morphology family) and no noise, so it does less work
than lenssr; ``ratio`` = lenssr's noiseless pairs/s over the reference's (> 1: lenssr faster).

Usage: ``python benchmarks/bench_simulate.py [--n 1000] [--repeats 3] [--workers 2]
[--ref-n 4] [--threads 1]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def run_once(n: int, n_sub: int, workers: int, out: Path) -> float:
    """Wall-clock seconds of one ``lenssr simulate`` run."""
    cmd = [
        sys.executable, "-m", "lenssr.cli", "simulate", "--preset", "default", "--n", str(n),
        "--out", str(out), "--seed", "0", "--workers", str(workers), "--classes", "cdm",
        "--set", f"subhalos.n={n_sub}", "--no-progress",
    ]  # fmt: skip
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def cdm_systems(n_sub: int, n: int, seed: int = 0) -> tuple[object, list]:
    """``(preset, systems)``: ``n`` cdm systems of the default preset with ``n_sub`` subhalos."""
    from lenssr.simulation.presets import load_preset, parse_overrides
    from lenssr.simulation.sampling import distances_for, sample_system

    preset = load_preset("default", parse_overrides([f"subhalos.n={n_sub}"]))
    distances = distances_for(preset)
    systems = [
        sample_system(preset, np.random.default_rng([seed, i]), 1, distances) for i in range(n)
    ]
    return preset, systems


def lenssr_pairs_per_second(preset, systems: list) -> float:
    """Noiseless HR/LR pairs per second of :class:`lenssr.simulation.render.Renderer`
    (one renderer built beforehand, as each worker process does)."""
    from lenssr.simulation.render import Renderer

    renderer = Renderer(preset)
    renderer.render(systems[0])  # warm-up: FFT plans, deflection kernels
    t0 = time.perf_counter()
    for system in systems:
        renderer.render(system)
    return len(systems) / (time.perf_counter() - t0)


def reference_pairs_per_second(preset, systems: list) -> float:
    """Pairs per second of the plain lenstronomy loop: every subhalo its own POINT_MASS
    profile, one ``ImageModel`` per instrument and system (HR and LR images, no noise)."""
    from lenstronomy.Data.imaging_data import ImageData
    from lenstronomy.Data.psf import PSF
    from lenstronomy.ImSim.image_model import ImageModel
    from lenstronomy.LensModel.lens_model import LensModel
    from lenstronomy.LightModel.light_model import LightModel
    from lenstronomy.Util.simulation_util import data_configure_simple

    from lenssr.simulation.sampling import distances_for

    theta_e2_per_msun = distances_for(preset).theta_e2_per_msun
    t0 = time.perf_counter()
    for system in systems:
        p = system.params
        lens = LensModel(["SIE", "SHEAR"] + ["POINT_MASS"] * system.sub_mass.size)
        kwargs_lens = [
            {
                "theta_E": p["theta_e"], "e1": p["lens_e1"], "e2": p["lens_e2"],
                "center_x": p["lens_x"], "center_y": p["lens_y"],
            },
            {
                "gamma1": p["gamma1"], "gamma2": p["gamma2"],
                "ra_0": p["lens_x"], "dec_0": p["lens_y"],
            },
        ] + [
            {"theta_E": float(np.sqrt(m * theta_e2_per_msun)), "center_x": x, "center_y": y}
            for x, y, m in zip(system.sub_x, system.sub_y, system.sub_mass, strict=True)
        ]  # fmt: skip
        kwargs_source = [
            {
                "amp": p["source_amp"], "R_sersic": p["source_r_sersic"],
                "n_sersic": p["source_n_sersic"], "e1": p["source_e1"], "e2": p["source_e2"],
                "center_x": p["source_x"], "center_y": p["source_y"],
            }
        ]  # fmt: skip
        kwargs_light = [
            {
                "amp": p["lens_light_amp"], "R_sersic": p["lens_light_r_sersic"],
                "n_sersic": p["lens_light_n_sersic"], "e1": p["lens_light_e1"],
                "e2": p["lens_light_e2"], "center_x": p["lens_x"], "center_y": p["lens_y"],
            }
        ]  # fmt: skip
        for inst in (preset.hr, preset.lr):
            data = ImageData(**data_configure_simple(inst.num_pix, inst.pixel_scale, 1.0, 1.0))
            model = ImageModel(
                data,
                PSF(psf_type="GAUSSIAN", fwhm=inst.psf_fwhm),
                lens_model_class=lens,
                source_model_class=LightModel(["SERSIC_ELLIPSE"]),
                lens_light_model_class=LightModel(["SERSIC_ELLIPSE"]),
                kwargs_numerics={"supersampling_factor": inst.supersampling},
            )
            model.image(kwargs_lens, kwargs_source, kwargs_light)
    return len(systems) / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1000, help="pairs per run")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--ref-n", type=int, default=4, help="systems of the in-process comparison")
    ap.add_argument(
        "--threads", type=int, default=None, help="OpenMP/BLAS threads of the simulate runs"
    )
    args = ap.parse_args()
    if args.threads:
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[var] = str(args.threads)
    for n_sub, target in ((25, 40.0), (500, 15.0)):
        rates = []
        with tempfile.TemporaryDirectory() as tmp:
            for k in range(args.repeats):
                wall = run_once(args.n, n_sub, args.workers, Path(tmp) / f"run{k}.h5")
                rates.append(args.n / wall)
        med = statistics.median(rates)
        print(
            f"bench_simulate preset=default classes=cdm n_subhalos={n_sub} workers={args.workers} "
            f"n={args.n}: {med:.1f} pairs/s (median of {args.repeats}; "
            f"min {min(rates):.1f}, max {max(rates):.1f}; target >= {target:.0f})"
        )
        preset, systems = cdm_systems(n_sub, args.ref_n)
        ref = reference_pairs_per_second(preset, systems)
        ours = lenssr_pairs_per_second(preset, systems)
        print(
            f"bench_simulate vs_lenstronomy_loop n_subhalos={n_sub} n={args.ref_n} (1 process, "
            f"noiseless): lenssr {ours:.2f} pairs/s, per-profile lenstronomy {ref:.3f} pairs/s, "
            f"ratio {ours / ref:.1f}"
        )


if __name__ == "__main__":
    main()
