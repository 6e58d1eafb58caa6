"""End-to-end throughput of the web server vs the CLI on the same zip of LR images.

Task: a zip of ``--n`` (1000) LR images of 75x75 ``.npy`` upscaled x2. The web run starts
``lenssr serve`` in a subprocess on a free localhost port, warms it up with a one-image job (the
model is loaded once per server), then times upload (``POST /api/jobs``) + polling
(``GET /api/jobs/{id}``) + download (``GET .../result.zip``). The CLI run times
``lenssr upscale in.zip -o out.zip`` as a fresh process (Python and torch start-up included,
as a user would run it). Both results are checked to be identical, member by member.

Usage: ``python benchmarks/bench_web.py [--n 1000] [--model bicubic|hybrid] [--size 75]``.
``--model`` defaults to the shipped ``hybrid`` when present, else ``bicubic``. Prints the
images/s of both paths and their ratio (web / CLI, > 1 = the web path is faster).
"""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import httpx
import numpy as np


def make_zip(path: Path, n: int, size: int, seed: int = 0) -> Path:
    """``n`` random ``(size, size)`` float32 ``.npy`` images in ``LR/`` of a zip."""
    rng = np.random.default_rng(seed)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for i in range(n):
            buf = io.BytesIO()
            np.save(buf, rng.random((size, size), dtype=np.float32), allow_pickle=False)
            zf.writestr(f"LR/img_{i:05d}.npy", buf.getvalue())
    return path


def lenssr_cmd() -> list[str]:
    """How to run the ``lenssr`` CLI with this interpreter."""
    return [sys.executable, "-m", "lenssr.cli"]


def run_job(client: httpx.Client, zip_path: Path, model: str, out: Path) -> None:
    """Upload, poll until done, download the result to ``out``."""
    with zip_path.open("rb") as fh:
        r = client.post(
            "/api/jobs",
            files={"files[]": (zip_path.name, fh, "application/zip")},
            data={"model": model, "scale": "2"},
        )
    r.raise_for_status()
    job_id = r.json()["id"]
    while True:
        job = client.get(f"/api/jobs/{job_id}").json()
        if job["status"] in ("done", "failed"):
            break
        time.sleep(0.05)
    if job["status"] != "done":
        raise RuntimeError(f"web job failed: {job['error']}")
    with client.stream("GET", job["result"]) as resp, out.open("wb") as fh:
        resp.raise_for_status()
        for chunk in resp.iter_bytes():
            fh.write(chunk)


def bench_web(zip_path: Path, warm_zip: Path, model: str, out: Path) -> float:
    """Seconds for one web job of ``zip_path`` on a warm server."""
    from lenssr.web.local import serve_process

    with (
        serve_process("--model", model, "--max-upload-mb", "1024") as url,
        httpx.Client(base_url=url, timeout=600) as client,
    ):
        run_job(client, warm_zip, model, out.with_name("warm.zip"))
        t0 = time.perf_counter()
        run_job(client, zip_path, model, out)
        return time.perf_counter() - t0


def bench_cli(zip_path: Path, model: str, out: Path) -> float:
    """Seconds for ``lenssr upscale zip -o out --model model`` as a fresh process."""
    t0 = time.perf_counter()
    subprocess.run(
        [*lenssr_cmd(), "upscale", str(zip_path), "-o", str(out), "--model", model, "-q"],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - t0


def same_zips(a: Path, b: Path) -> bool:
    """True when both archives hold the same members with the same bytes."""
    with zipfile.ZipFile(a) as za, zipfile.ZipFile(b) as zb:
        names = za.namelist()
        return names == zb.namelist() and all(za.read(n) == zb.read(n) for n in names)


def main(argv: list[str] | None = None) -> None:
    """Run both paths on one zip and print images/s and the ratio."""
    from lenssr.models import shipped_models

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="number of images")
    parser.add_argument("--size", type=int, default=75, help="LR side (pixels)")
    parser.add_argument("--model", default=None, help="bicubic or a shipped model name")
    args = parser.parse_args(argv)
    model = args.model or ("hybrid" if "hybrid" in shipped_models() else "bicubic")

    with tempfile.TemporaryDirectory(prefix="bench-web-") as tmp:
        folder = Path(tmp)
        src = make_zip(folder / "lr.zip", args.n, args.size)
        warm = make_zip(folder / "warm.zip", 1, args.size, seed=1)
        web_s = bench_web(src, warm, model, folder / "web.zip")
        cli_s = bench_cli(src, model, folder / "cli.zip")
        identical = same_zips(folder / "web.zip", folder / "cli.zip")
    web_ips, cli_ips = args.n / web_s, args.n / cli_s
    print(
        f"bench_web model={model} n={args.n} size={args.size}x{args.size} x2 "
        f"cpus={os.cpu_count()} identical={identical}"
    )
    print(f"web  (upload+poll+download, warm server): {web_s:8.2f} s  {web_ips:8.1f} images/s")
    print(f"cli  (lenssr upscale, fresh process):     {cli_s:8.2f} s  {cli_ips:8.1f} images/s")
    print(f"ratio web/cli images/s: {web_ips / cli_ips:.2f}")


if __name__ == "__main__":
    main()
