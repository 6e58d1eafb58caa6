"""Interrupting ``lenssr upscale`` on a zip (Ctrl-C, or SIGKILL) never leaves a partial archive
under the output's name, and a re-run gives the same result as an uninterrupted run."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

N_IMAGES = 2500


@pytest.fixture(scope="module")
def big_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("interrupt") / "in.zip"
    rng = np.random.default_rng(0)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for i in range(N_IMAGES):
            buf = io.BytesIO()
            np.save(buf, rng.random((64, 64), dtype=np.float32))
            zf.writestr(f"lr/{i:05d}.npy", buf.getvalue())
    return path


def upscale_cmd(inp: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "lenssr.cli", "upscale", str(inp), "-o", str(out),
            "--model", "bicubic", "-q", "--batch-size", "1"]  # fmt: skip


def start_and_interrupt(
    inp: Path, out: Path, sig: int, interruptible: dict
) -> subprocess.CompletedProcess:
    partial = out.with_name(out.name + ".partial")
    proc = subprocess.Popen(
        upscale_cmd(inp, out),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **interruptible,
    )
    end = time.time() + 120
    while not (partial.exists() and partial.stat().st_size > 100_000):
        assert proc.poll() is None, "finished before it could be interrupted"
        assert time.time() < end
        time.sleep(0.02)
    os.killpg(proc.pid, sig)
    stdout, stderr = proc.communicate(timeout=30)
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["SIGINT", "SIGKILL"])
def test_interrupted_upscale_leaves_no_partial_zip_and_rerun_is_identical(
    big_zip: Path, tmp_path: Path, sig: int, interruptible: dict
) -> None:
    out = tmp_path / "out.zip"
    partial = out.with_name("out.zip.partial")
    stopped = start_and_interrupt(big_zip, out, sig, interruptible)
    assert not out.exists()
    if sig == signal.SIGINT:
        assert stopped.returncode == 130  # lenssr.cli.main: "interrupted", exit 130
        assert "Traceback" not in stopped.stderr
        assert not partial.exists()
    else:
        assert stopped.returncode == -signal.SIGKILL  # nothing can clean up after SIGKILL ...
    rerun = subprocess.run(upscale_cmd(big_zip, out), capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    assert rerun.stdout.startswith(f"{N_IMAGES} processed, 0 skipped")
    assert not partial.exists()  # ... and the re-run replaces what it left
    ref = tmp_path / "ref.zip"
    assert (
        subprocess.run(upscale_cmd(big_zip, ref), capture_output=True, timeout=600).returncode == 0
    )
    with zipfile.ZipFile(out) as a, zipfile.ZipFile(ref) as b:
        assert a.namelist() == b.namelist()
        assert all(a.read(n) == b.read(n) for n in a.namelist()[:: N_IMAGES // 50])
