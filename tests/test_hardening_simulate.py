"""``lenssr simulate``: Ctrl-C with worker processes stops promptly and a re-run resumes to the
same data; a finished re-run says so; an HDF5 output needs an HDF5 name."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from lenssr.cli import main

SMALL = ["--set", "hr.num_pix=40", "--set", "lr.num_pix=20"]


def simulate_cmd(out: Path, n: int, workers: int) -> list[str]:
    return [
        sys.executable, "-m", "lenssr.cli", "simulate", "--n", str(n), "--out", str(out),
        "--seed", "5", "--workers", str(workers), "--chunk-size", "8", "--no-progress", *SMALL,
    ]  # fmt: skip


def test_ctrl_c_with_workers_stops_and_rerun_resumes(tmp_path: Path, interruptible: dict) -> None:
    out = tmp_path / "sim.h5"
    partial = out.with_name("sim.h5.partial")
    proc = subprocess.Popen(
        simulate_cmd(out, 400, 2),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **interruptible,  # its own process group: SIGINT reaches it as Ctrl-C would
    )
    end = time.time() + 240
    while True:  # wait until at least one chunk is on disk
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        if partial.exists():
            try:  # the writer holds the file open: read it without a lock
                with h5py.File(partial, "r", locking=False) as f:
                    if int(f.attrs.get("n_done", 0)) >= 8:
                        break
            except OSError:
                pass  # caught mid-write
        assert time.time() < end, "no chunk written"
        time.sleep(0.5)
    t0 = time.time()
    os.killpg(proc.pid, signal.SIGINT)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail("simulate --workers 2 hung after Ctrl-C")
    stopped_in = time.time() - t0
    err = proc.stderr.read() if proc.stderr else ""
    assert stopped_in < 30 and "Traceback" not in err, err
    assert not out.exists() and partial.exists()
    with h5py.File(partial, "r") as f:
        done = int(f.attrs["n_done"])
    assert 8 <= done < 400

    # A re-run resumes; its data equal an uninterrupted run's (checked on the first samples).
    assert (
        subprocess.run(simulate_cmd(out, 400, 2), capture_output=True, timeout=900).returncode == 0
    )
    ref = tmp_path / "ref.h5"
    small_ref = subprocess.run(simulate_cmd(ref, 16, 1), capture_output=True, timeout=600)
    assert small_ref.returncode == 0
    with h5py.File(out, "r") as a, h5py.File(ref, "r") as b:
        assert a["lr"].shape[0] == 400
        np.testing.assert_array_equal(a["lr"][:16], b["lr"][:16])
        np.testing.assert_array_equal(a["hr"][:16], b["hr"][:16])


def test_finished_rerun_says_nothing_to_do_and_hdf5_name_checked(tmp_path: Path, capsys) -> None:
    out = tmp_path / "s.h5"
    args = ["simulate", "--n", "3", "--out", str(out), "--seed", "1", "--no-progress", *SMALL]
    with pytest.raises(SystemExit) as first:
        main(args)
    assert first.value.code in (0, None)
    assert capsys.readouterr().out.startswith("wrote 3 pairs")
    with pytest.raises(SystemExit) as again:
        main(args)
    assert again.value.code in (0, None)
    assert "already holds these 3 pairs" in capsys.readouterr().out
    with pytest.raises(SystemExit) as bad:
        main(["simulate", "--n", "3", "--out", str(tmp_path / "s.txt"), *SMALL])
    assert bad.value.code == 2
    err = capsys.readouterr().err
    assert "s.txt" in err and ".h5" in err and err.count("\n") == 1
    assert not (tmp_path / "s.txt").exists()
