"""Inference throughput: images/s of every shipped model, PyTorch vs ONNX Runtime, on CPU.

Task: LR 75x75 -> HR 150x150, one batch of 64 images through ``upscale`` (normalisation,
padding and cropping included). The reference is EDSR-baseline (64 features, 16 residual
blocks, randomly initialised: speed does not depend on the weights), measured in the same run,
so the ``vs_edsr`` ratio (model images/s / EDSR images/s, > 1 = faster) is comparable across
machines. When no weights are shipped yet, the zoo architectures are timed at their default
configurations with random weights (marked ``random``).

Usage: ``python benchmarks/bench_inference.py [--batch 64] [--size 75] [--repeats 2]
[--backends torch,onnxruntime] [--models hybrid,edsr] [--threads N]``. Prints one line per model.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from lenssr.inference.api import SRModel, load_model
from lenssr.inference.base import Upscaler
from lenssr.inference.onnx_export import OnnxSRModel, export_onnx
from lenssr.models.registry import create_model
from lenssr.models.zoo import shipped_models

DEFAULT_ARCHS = ("hybrid", "edsr", "srcnn", "lapsrn", "esrgan", "bicubic")


def images_per_second(
    run: Callable[[np.ndarray], np.ndarray], x: np.ndarray, repeats: int
) -> float:
    """Best-of-``repeats`` throughput of ``run(x)`` (images/s) after one warm-up call."""
    run(x[: min(4, len(x))])
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        run(x)
        best = min(best, time.perf_counter() - t0)
    return len(x) / best


def candidates(selected: list[str] | None) -> dict[str, tuple[SRModel, str]]:
    """``name -> (model, origin)``: shipped checkpoints, else default-config random zoo models."""
    torch.manual_seed(0)
    shipped = shipped_models()
    models: dict[str, tuple[SRModel, str]] = {}
    names = selected or (list(shipped) if shipped else list(DEFAULT_ARCHS))
    for name in names:
        if name in shipped:
            models[name] = (load_model(name, device="cpu"), "shipped")
        else:
            module = create_model(name)
            origin = "random" if any(True for _ in module.parameters()) else "no weights"
            models[name] = (SRModel(module, name=name, device="cpu"), origin)
    return models


def bench_model(
    model: SRModel, x: np.ndarray, backends: list[str], repeats: int, workdir: Path
) -> dict[str, float]:
    """Images/s per backend for one model at its default scale."""
    runners: dict[str, Upscaler] = {}
    if "torch" in backends:
        runners["torch"] = model
    if "onnxruntime" in backends:
        runners["onnxruntime"] = OnnxSRModel(
            export_onnx(model, workdir / f"{model.name}.onnx"), device="cpu"
        )
    return {
        name: images_per_second(lambda a, r=r: r.upscale(a, batch_size=len(a), tile=0), x, repeats)
        for name, r in runners.items()
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--size", type=int, default=75, help="LR side in pixels")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--backends", default="torch,onnxruntime")
    parser.add_argument("--models", default=None, help="comma-separated names (default: all)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    backends = args.backends.split(",")
    x = np.random.default_rng(0).random((args.batch, args.size, args.size), dtype=np.float32)

    torch.manual_seed(0)
    edsr = SRModel(create_model("edsr", num_feat=64, num_block=16), name="edsr-baseline")
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        selected = args.models.split(",") if args.models else None
        ref_start = bench_model(edsr, x, backends, args.repeats, workdir)
        results = {
            name: (origin, bench_model(model, x, backends, args.repeats, workdir))
            for name, (model, origin) in candidates(selected).items()
        }
        ref_end = bench_model(edsr, x, backends, args.repeats, workdir)
    # the reference is timed before and after the models; its best is the ratio's denominator,
    # and the start/end spread shows how noisy the machine was during the run
    ref = {b: max(ref_start[b], ref_end[b]) for b in backends}
    print(
        f"# lenssr inference, CPU ({torch.get_num_threads()} threads), "
        f"{args.size}x{args.size} -> x2, batch {args.batch}, best of {args.repeats}"
    )
    for name, (origin, ips) in results.items():
        parts = [f"{name:<13} ({origin})"]
        for b in backends:
            parts.append(f"{b} {ips[b]:8.1f} img/s (vs_edsr {ips[b] / ref[b]:6.2f})")
        if len(backends) == 2:
            parts.append(f"ort/torch {ips[backends[1]] / ips[backends[0]]:.2f}")
        print("  ".join(parts))
    print(
        "edsr-baseline (random)  "
        + "  ".join(
            f"{b} {ref[b]:8.1f} img/s (start {ref_start[b]:.1f}, end {ref_end[b]:.1f})"
            for b in backends
        )
    )


if __name__ == "__main__":
    main()
