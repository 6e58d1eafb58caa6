"""Inference throughput: images/s of every shipped model, PyTorch vs ONNX Runtime, on CPU.

Task: LR 75x75 -> HR 150x150, one batch of 64 images through ``upscale`` (normalisation,
padding and cropping included). The reference is EDSR-baseline (64 features, 16 residual
blocks, randomly initialised: speed does not depend on the weights), measured in the same run,
so the ``vs_edsr`` ratio (model images/s / EDSR images/s, > 1 = faster) is comparable across
machines. When no weights are shipped yet, the zoo architectures are timed at their default
configurations with random weights (marked ``random``).

How close to the limit: each line also gives the model's GFLOP per image (``GFLOP/img``: 2 x the
multiply-adds of its convolutions, linear layers and attention matmuls on one padded LR image,
counted by ``torch.utils.flop_counter.FlopCounterMode``; interpolation and element-wise ops are
not counted) and the GFLOP/s each backend reaches (GFLOP/img x images/s), as a fraction of the
machine's sgemm roof (``roof``: best GFLOP/s of a 2048x2048 float32 ``torch.mm`` with the same
threads, measured in the same run). The ONNX Runtime model is the one ``lenssr.load_model``
runs on CPU by default (cached export, :mod:`lenssr.inference.backend`), with the same threads:
with N > 1 threads it runs a batch as N single-thread sessions on slices of it at once; backend
``onnxruntime-1session`` is the same graph as one N-thread session, for comparison.

Usage: ``python benchmarks/bench_inference.py [--batch 64] [--size 75] [--repeats 2]
[--backends torch,onnxruntime] [--models hybrid,edsr,label=CHECKPOINT] [--threads N]``. Prints one
line per model.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
import torch
from instrument_grid import parse_models  # same folder

from lenssr.inference.api import SRModel, load_model
from lenssr.inference.backend import select_backend
from lenssr.inference.base import Upscaler, pad_to_multiple_np
from lenssr.models.registry import create_model
from lenssr.models.zoo import shipped_models

#: Backend name of ONNX Runtime with one session (its intra-op threads) for every batch.
ONE_SESSION = "onnxruntime-1session"
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


def sgemm_roof(n: int = 2048, repeats: int = 5) -> float:
    """Best GFLOP/s of an ``n x n`` float32 matrix product (``2 n^3`` FLOP) with torch."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t0)
    return 2.0 * n**3 / best / 1e9


def gflop_per_image(model: SRModel, size: int) -> float:
    """GFLOP (2 x multiply-adds of conv / linear / matmul / attention) of one ``size x size``
    LR image (padded to the model's multiple) at the model's default scale."""
    from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

    def sdpa(q: torch.Size, k: torch.Size, v: torch.Size, *args, **kwargs) -> int:
        return sdpa_flop_count(q, k, v)

    # the CPU attention kernels have no formula in torch's table (they would count as 0)
    aten = torch.ops.aten
    attention = {
        aten.scaled_dot_product_attention: sdpa,
        aten._scaled_dot_product_flash_attention_for_cpu: sdpa,
    }
    x = pad_to_multiple_np(np.zeros((1, size, size), np.float32), model.size_multiple)[:, None]
    cond = np.array([[1.8, -2.0]], np.float32) if model.conditioned else None
    with FlopCounterMode(display=False, custom_mapping=attention) as counter:
        model._forward(np.ascontiguousarray(x), model.scale, cond=cond)
    return counter.get_total_flops() / 1e9


def candidates(selected: list[str] | None) -> dict[str, tuple[SRModel, str]]:
    """``name -> (model, origin)``: shipped checkpoints, else default-config random zoo models."""
    torch.manual_seed(0)
    shipped = shipped_models()
    models: dict[str, tuple[SRModel, str]] = {}
    names = selected or (list(shipped) if shipped else list(DEFAULT_ARCHS))
    for name, target in parse_models(",".join(names)).items():
        if target != name:  # "label=checkpoint": a run's weights
            models[name] = (load_model(target, device="cpu", backend="torch"), "checkpoint")
        elif name in shipped:
            models[name] = (load_model(name, device="cpu", backend="torch"), "shipped")
        else:
            module = create_model(name)
            origin = "random" if any(True for _ in module.parameters()) else "no weights"
            models[name] = (SRModel(module, name=name, device="cpu"), origin)
    return models


def bench_model(
    model: SRModel, x: np.ndarray, backends: list[str], repeats: int
) -> dict[str, float]:
    """Images/s per backend for one model at its default scale."""
    runners: dict[str, Upscaler] = {
        b: select_backend(model, "onnxruntime", data_parallel=False)
        if b == ONE_SESSION
        else select_backend(model, b)
        for b in backends
    }
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
    parser.add_argument(
        "--threads", type=int, default=None, help="torch and ONNX Runtime intra-op threads"
    )
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    backends = args.backends.split(",")
    x = np.random.default_rng(0).random((args.batch, args.size, args.size), dtype=np.float32)

    torch.manual_seed(0)
    edsr = SRModel(create_model("edsr", num_feat=64, num_block=16), name="edsr-baseline")
    selected = args.models.split(",") if args.models else None
    roof_start = sgemm_roof()
    ref_start = bench_model(edsr, x, backends, args.repeats)
    results = {
        name: (
            origin,
            gflop_per_image(model, args.size),
            bench_model(model, x, backends, args.repeats),
        )
        for name, (model, origin) in candidates(selected).items()
    }
    ref_end = bench_model(edsr, x, backends, args.repeats)
    roof = max(roof_start, sgemm_roof())
    ref_gflop = gflop_per_image(edsr, args.size)
    # the reference is timed before and after the models; its best is the ratio's denominator,
    # and the start/end spread shows how noisy the machine was during the run
    ref = {b: max(ref_start[b], ref_end[b]) for b in backends}
    print(
        f"# lenssr inference, CPU ({torch.get_num_threads()} threads), "
        f"{args.size}x{args.size} -> x2, batch {args.batch}, best of {args.repeats}"
    )
    print(f"sgemm roof (float32 2048x2048 torch.mm): {roof:.1f} GFLOP/s")

    def reach(gflop: float, ips: float) -> str:
        return f"{gflop * ips:6.1f} GFLOP/s, roof {gflop * ips / roof:4.2f}" if gflop else "-"

    for name, (origin, gflop, ips) in results.items():
        parts = [f"{name:<13} ({origin})  GFLOP/img {gflop:7.2f}"]
        for b in backends:
            parts.append(
                f"{b} {ips[b]:8.1f} img/s ({reach(gflop, ips[b])}; vs_edsr {ips[b] / ref[b]:6.2f})"
            )
        if len(backends) == 2:
            short = {"torch": "torch", "onnxruntime": "ort", ONE_SESSION: "ort-1session"}
            a, b = (short.get(k, k) for k in backends)
            parts.append(f"{b}/{a} {ips[backends[1]] / ips[backends[0]]:.2f}")
        print("  ".join(parts))
    print(
        f"edsr-baseline (random)  GFLOP/img {ref_gflop:7.2f}  "
        + "  ".join(
            f"{b} {ref[b]:8.1f} img/s ({reach(ref_gflop, ref[b])}; start {ref_start[b]:.1f}, "
            f"end {ref_end[b]:.1f})"
            for b in backends
        )
    )


if __name__ == "__main__":
    main()
