"""``lenssr serve --work-dir``: a job survives the server being killed (SIGKILL) or stopped
(Ctrl-C) mid-job: at the next start it runs again from its input to the same result, and a
finished job is served again until its TTL."""

from __future__ import annotations

import io
import json
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import httpx
import numpy as np
import pytest

from lenssr.web.local import free_port

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def lr_zip(n: int) -> bytes:
    rng = np.random.default_rng(1)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for i in range(n):
            b = io.BytesIO()
            np.save(b, rng.random((48, 48), dtype=np.float32))
            zf.writestr(f"lr/{i:04d}.npy", b.getvalue())
    return buf.getvalue()


def start_server(work: Path, port: int) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "lenssr.cli", "serve", "--port", str(port), "--model",
           "bicubic", "--work-dir", str(work)]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    end = time.time() + 120
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        assert proc.poll() is None and time.time() < end, "server did not start"
        time.sleep(0.2)


def job(url: str, job_id: str) -> dict:
    return httpx.get(f"{url}/api/jobs/{job_id}", timeout=10).json()


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["SIGKILL", "SIGINT"])
def test_interrupted_job_runs_again_after_restart(tmp_path: Path, sig: int) -> None:
    from lenssr.inference import upscale_path

    work, port = tmp_path / "work", free_port()
    url = f"http://127.0.0.1:{port}"
    raw = lr_zip(600)
    proc = start_server(work, port)
    try:
        small = httpx.post(
            f"{url}/api/jobs", files={"files[]": ("s.zip", lr_zip(2))}, timeout=30
        ).json()["id"]
        r = httpx.post(
            f"{url}/api/jobs", files={"files[]": ("big.zip", raw)}, data={"tta": "true"}, timeout=60
        )
        big = r.json()["id"]
        end = time.time() + 120
        while job(url, big)["done"] < 5 or job(url, small)["status"] != "done":
            assert time.time() < end, job(url, big)
            time.sleep(0.05)
        proc.send_signal(sig)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    saved = json.loads((work / big / "job.json").read_text())
    assert saved["status"] == ("running" if sig == signal.SIGKILL else "queued"), saved
    proc = start_server(work, port)
    try:
        assert job(url, small)["status"] == "done"  # finished: served again
        end = time.time() + 300
        while (state := job(url, big))["status"] in ("queued", "running"):
            assert time.time() < end, state
            time.sleep(0.1)
        assert state["status"] == "done" and state["done"] == 600 and state["skipped"] == []
        result = httpx.get(f"{url}{state['result']}", timeout=60).content
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    (tmp_path / "in.zip").write_bytes(raw)
    upscale_path(tmp_path / "in.zip", tmp_path / "cli.zip", model="bicubic", tta=True,
                 progress=False, batch_size=1)  # fmt: skip
    with zipfile.ZipFile(io.BytesIO(result)) as web, zipfile.ZipFile(tmp_path / "cli.zip") as cli:
        assert web.namelist() == [*cli.namelist(), "report.json"]
        assert all(web.read(n) == cli.read(n) for n in cli.namelist())
    assert not list(work.glob("*/*.partial"))
