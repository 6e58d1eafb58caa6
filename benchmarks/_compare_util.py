"""Helpers shared by the comparison benchmarks: data subsets, evaluation and a table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import h5py
import numpy as np


def subset_pairs(source: Path, n: int, out: Path) -> tuple[Path, int]:
    """The first ``n`` pairs of an HDF5 pair file as a new file (the source when it has no
    more than ``n``); returns ``(path, number of pairs)``."""
    with h5py.File(source, "r") as f:
        total = int(f["lr"].shape[0])
        if n >= total:
            return source, total
        out.parent.mkdir(parents=True, exist_ok=True)
        with h5py.File(out, "w") as g:
            for key in ("lr", "hr", "label"):
                if key in f:
                    g[key] = np.asarray(f[key][:n])
            for key, value in f.attrs.items():
                g.attrs[key] = value
    return out, n


def evaluate_checkpoints(
    checkpoints: dict[str, Path], val: Path, n: int, device: str
) -> dict[str, dict[str, float]]:
    """PSNR, SSIM and hallucination number (``lenssr.evaluation.evaluate``) per checkpoint;
    ``bicubic`` is always included."""
    from lenssr.evaluation import evaluate
    from lenssr.inference import load_model
    from lenssr.inference.api import SRModel

    models = []
    for label, path in checkpoints.items():  # named by label: several files are "best"
        loaded = load_model(path, device=device)
        models.append(SRModel(loaded.module, loaded.descriptor, name=label, device=device))
    result = evaluate(models, data=val, n=n, device=device)
    rows: dict[str, dict[str, float]] = {}
    for model in result.models:
        summary = model.summary()
        rows[model.name] = {
            "psnr": summary["psnr"]["mean"],
            "ssim": summary["ssim"]["mean"],
            "hallucination": summary["hallucination"],
        }
    return rows


def print_table(header: list[str], rows: list[list[Any]]) -> None:
    """A Markdown table (floats with 4 significant decimals)."""

    def fmt(v: Any) -> str:
        return f"{v:.4f}" if isinstance(v, float) else str(v)

    cells = [header, *[[fmt(v) for v in r] for r in rows]]
    widths = [max(len(c[i]) for c in cells) for i in range(len(header))]
    line = "| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |"
    print(line)
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in cells[1:]:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |")
