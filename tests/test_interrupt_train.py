"""``lenssr train`` interrupted (Ctrl-C or SIGKILL) loses nothing: ``--resume`` reaches the
same weights as an uninterrupted run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from lenssr.training import train


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["ctrl-c", "kill"])
def test_interrupted_train_resumes_to_the_same_weights(
    sig: signal.Signals, blob_pairs: Path, tmp_path: Path, train_config, interruptible: dict
) -> None:
    steps = 1500
    ref = train_config(blob_pairs, tmp_path / "ref", steps=steps, val={"every_steps": 50})
    train(ref, quiet=True)

    out = tmp_path / "run"
    cfg = train_config(blob_pairs, out, steps=steps, val={"every_steps": 50})
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    cmd = [sys.executable, "-m", "lenssr.cli", "train", "--config", str(path), "--quiet"]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, **interruptible)
    state = out / "last.state.pt"
    end = time.time() + 240
    while not state.exists():  # interrupt after the first checkpoint, mid-run
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        assert time.time() < end, "no checkpoint written"
        time.sleep(0.02)
    os.killpg(proc.pid, sig)
    proc.wait(timeout=60)
    err = proc.stderr.read() if proc.stderr else ""
    assert "Traceback" not in err, err
    done = int(torch.load(state, weights_only=False)["step"])
    assert done < steps, "the run finished before it was interrupted"

    resumed = subprocess.run([*cmd, "--resume"], capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    a = load_file(str(out / "last.safetensors"))
    b = load_file(str(tmp_path / "ref" / "last.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
