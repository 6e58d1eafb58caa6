"""Golden PSNR values of the shipped weights: how they are measured, and their regeneration.

Every shipped model (``src/lenssr/models/weights/<name>.safetensors``) is run by
``lenssr.load_model(name, device="cpu")`` on a fixed set of pairs simulated by seed (the first
``N`` pairs of the held-out test set: ``simulate(PRESET, n=N, seed=SEED)``), and its mean PSNR
(dB, the convention of :mod:`lenssr.evaluation.metrics`) is compared by ``tests/test_golden.py``
with the value stored in ``tests/golden/golden.json`` under the weights file's sha256.

After shipping new weights (or changing the simulation), regenerate the table and commit it::

    .venv/bin/python tests/golden/regen.py

``--only NAME`` re-measures one model and keeps the other entries as they are.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
from pathlib import Path

import h5py
import numpy as np

PRESET = "default"
SEED = 2  # the seed of data/default-test.h5: the set is its first N pairs
N = 16
TABLE = Path(__file__).resolve().with_name("golden.json")
REGEN = "python tests/golden/regen.py"


def make_golden_set(path: Path) -> Path:
    """Simulate the N golden pairs (LR 75x75 -> HR 150x150 with the default preset) to ``path``."""
    from lenssr.simulation import simulate

    return simulate(PRESET, n=N, out=path, seed=SEED, workers=1, progress=False)


def read_pairs(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """LR (N, h, w) and HR (N, H, W) float32 surface brightness of a golden set."""
    with h5py.File(path, "r") as f:
        return f["lr"][...].astype(np.float32), f["hr"][...].astype(np.float32)


def data_sha256(lr: np.ndarray, hr: np.ndarray) -> str:
    """sha256 of the LR and HR float32 bytes: changes when the simulation changes."""
    h = hashlib.sha256()
    for a in (lr, hr):
        h.update(np.ascontiguousarray(a, dtype=np.float32).tobytes())
    return h.hexdigest()


def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes (a weights file)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def measure_psnr(name: str, lr: np.ndarray, hr: np.ndarray) -> float:
    """Mean PSNR (dB) of the shipped model ``name`` on the pairs, on CPU, without TTA."""
    import torch

    from lenssr import load_model
    from lenssr.evaluation.metrics import psnr

    torch.manual_seed(0)
    model = load_model(name, device="cpu")
    sr = model.upscale(lr, batch_size=N)
    values = np.asarray(psnr(sr, hr), dtype=np.float64)
    return float(values[np.isfinite(values)].mean())


def card_psnr(weights: Path) -> float:
    """The test PSNR mean (dB) recorded in the weights' descriptor (``<name>.json``)."""
    desc = json.loads(weights.with_suffix(".json").read_text())
    return float(desc["metrics"]["psnr"]["mean"])


def regenerate(only: list[str] | None = None) -> dict:
    """Measure the shipped models (all, or ``only``) and write :data:`TABLE`; returns it."""
    from lenssr.models import shipped_models

    shipped = shipped_models()
    unknown = sorted(set(only or []) - set(shipped))
    if unknown:
        raise SystemExit(f"not shipped: {', '.join(unknown)} (shipped: {', '.join(shipped)})")
    old = json.loads(TABLE.read_text())["models"] if TABLE.is_file() and only else {}
    with tempfile.TemporaryDirectory() as tmp:
        lr, hr = read_pairs(make_golden_set(Path(tmp) / "golden.h5"))
    models = {k: v for k, v in old.items() if k in shipped}
    for name in sorted(only or shipped):
        weights = shipped[name]
        models[name] = {
            "sha256": file_sha256(weights),
            "psnr": round(measure_psnr(name, lr, hr), 4),
            "card_psnr": round(card_psnr(weights), 4),
        }
        print(f"{name}: {models[name]['psnr']:.4f} dB (card {models[name]['card_psnr']:.2f} dB)")
    table = {
        "about": f"mean PSNR (dB) of each shipped model on simulate({PRESET!r}, n={N}, "
        f"seed={SEED}); regenerate with `{REGEN}`",
        "preset": PRESET,
        "seed": SEED,
        "n": N,
        "data_sha256": data_sha256(lr, hr),
        "models": dict(sorted(models.items())),
    }
    TABLE.write_text(json.dumps(table, indent=2) + "\n")
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", help="re-measure only this model (repeatable)")
    args = parser.parse_args(argv)
    regenerate(args.only)
    print(f"wrote {TABLE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
