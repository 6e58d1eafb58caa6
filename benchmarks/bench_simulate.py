"""Simulation throughput: pairs/s of the whole ``lenssr simulate --preset default`` command.

Runs the real command line (process start, imports, rendering, noise, HDF5 writing) with cdm
substructure (``--classes cdm``) and 2 workers, for 25 and 500 subhalos, and prints the median
pairs/s of several runs, one line per configuration. Targets on a 2-core machine: >= 40 pairs/s
with 25 subhalos, >= 15 pairs/s with 500.

Usage: ``python benchmarks/bench_simulate.py [--n 1000] [--repeats 3] [--workers 2]``.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1000, help="pairs per run")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
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


if __name__ == "__main__":
    main()
