"""Make docs/figures/pairs.png: example LR/HR pairs of the default preset, one row per class.

Run: .venv/bin/python docs/figures/make_pairs_figure.py
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import h5py
import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from lenssr.evaluation.evaluator import asinh_stretch  # noqa: E402
from lenssr.simulation import simulate  # noqa: E402

OUT = Path(__file__).resolve().parent / "pairs.png"


def main(per_class: int = 3, seed: int = 7) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "pairs.h5"
        simulate("default", n=3 * per_class, out=path, seed=seed, workers=1, progress=False)
        with h5py.File(path) as f:
            lr, hr, label = f["lr"][:], f["hr"][:], f["label"][:]
            names = json.loads(f.attrs["classes"])
            lr_scale, hr_scale = f.attrs["lr_pixel_scale"], f.attrs["hr_pixel_scale"]
    fig, axes = plt.subplots(3, 2 * per_class, figsize=(2.2 * 2 * per_class, 7.2))
    for c, name in enumerate(names):
        idx = np.flatnonzero(label == c)[:per_class]
        for j, i in enumerate(idx):
            vmin, vmax = float(hr[i].min()), float(hr[i].max())
            for k, (img, kind, ps) in enumerate(((lr[i], "LR", lr_scale), (hr[i], "HR", hr_scale))):
                ax = axes[c, 2 * j + k]
                half = img.shape[0] * ps / 2
                ax.imshow(
                    asinh_stretch(img, vmin, vmax),
                    origin="lower",
                    cmap="magma",
                    extent=(-half, half, -half, half),
                )
                ax.set_title(f'{name} {kind} {img.shape[0]}px @ {ps:.2f}"', fontsize=8)
                ax.set_xticks([])
                ax.set_yticks([])
    fig.suptitle('lenssr default preset: LR 75x75 @ 0.10"/px vs HR 150x150 @ 0.05"/px (asinh)')
    fig.tight_layout()
    fig.savefig(OUT, dpi=90)
    print(OUT)


if __name__ == "__main__":
    main()
