"""Generate a training config's data when it is missing (``data.simulate`` in the YAML).

With ``data.simulate.preset`` set, ``data.train`` and ``data.val`` are HDF5 files that
``lenssr simulate`` writes on first use (same preset, ``n`` and seed every time, so the files
are identical wherever they are made). This is what makes a shipped model reproducible with
one command: ``lenssr train --config configs/hybrid.yaml``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from lenssr.errors import ConfigError


def ensure_data(config: dict[str, Any], progress: bool = True) -> list[Path]:
    """Simulate ``data.train`` / ``data.val`` when ``data.simulate.preset`` is set and they are
    missing.

    Only rank 0 of a distributed run simulates; the other ranks wait for the files.
    Returns the paths that were written by this call.
    """
    data = config["data"]
    spec = data.get("simulate") or {}
    preset = spec.get("preset")
    if not preset:
        return []
    jobs = []
    for key, n_key, seed_key in (("train", "n_train", "seed_train"), ("val", "n_val", "seed_val")):
        path = data.get(key)
        if not path:
            continue
        path = Path(path)
        if path.suffix not in (".h5", ".hdf5"):
            raise ConfigError(f"data.simulate writes HDF5 files; data.{key} is {str(path)!r}")
        if not path.exists():
            jobs.append((path, int(spec[n_key]), int(spec[seed_key])))
    if not jobs:
        return []
    if int(os.environ.get("RANK", "0")) != 0:
        while not all(p.exists() for p, _, _ in jobs):
            time.sleep(2.0)
        return []
    from lenssr.simulation import simulate

    written = []
    for path, n, seed in jobs:
        path.parent.mkdir(parents=True, exist_ok=True)
        simulate(preset, n=n, out=path, seed=seed, workers=int(spec["workers"]), progress=progress)
        written.append(path)
    return written
