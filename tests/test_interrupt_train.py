"""``lenssr train``, ``lenssr pretrain`` and ``lenssr gan`` interrupted (Ctrl-C or SIGKILL) lose
nothing: ``--resume`` reaches the same weights as an uninterrupted run."""

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

from lenssr.models import create_model, save_checkpoint
from lenssr.training.engine import Engine


def _config(command: str, pairs: Path, out: Path, root: Path, train_config, model_section):
    """A tiny config of ``command``'s task, long enough to be interrupted mid-run."""
    if command == "train":
        return train_config(pairs, out, steps=1500, val={"every_steps": 50})
    cfg = train_config(pairs, out, steps=400, model=model_section("hybrid"))
    cfg["val"] = {"every_steps": 20, "max_images": 4}
    if command == "gan":
        init = root / "init"
        if not init.with_suffix(".safetensors").exists():
            torch.manual_seed(0)
            save_checkpoint(init, create_model(**model_section("hybrid")))
        cfg.pop("model")
        cfg["init"] = str(init)
        cfg["data"]["patch_size"] = 12
        cfg["gan"] = {"discriminator": {"name": "patchgan", "num_feat": 4, "num_layers": 2}}
    return cfg


TASK = {"train": "supervised", "pretrain": "denoise", "gan": "gan"}
RESULT = {"train": "best", "pretrain": "pretrained", "gan": "generator"}


@pytest.mark.parametrize(
    "command, sig",
    [
        ("train", signal.SIGINT),
        ("train", signal.SIGKILL),
        ("pretrain", signal.SIGKILL),
        ("gan", signal.SIGINT),
    ],
    ids=["train-ctrl-c", "train-kill", "pretrain-kill", "gan-ctrl-c"],
)
def test_interrupted_training_resumes_to_the_same_weights(
    command: str,
    sig: signal.Signals,
    blob_pairs: Path,
    tmp_path: Path,
    train_config,
    model_section,
    interruptible: dict,
) -> None:
    ref_cfg = _config(command, blob_pairs, tmp_path / "ref", tmp_path, train_config, model_section)
    Engine(TASK[command], ref_cfg, quiet=True).run()

    out = tmp_path / "run"
    cfg = _config(command, blob_pairs, out, tmp_path, train_config, model_section)
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    cmd = [sys.executable, "-m", "lenssr.cli", command, "--config", str(path), "--quiet"]
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
    assert done < cfg["budget"]["steps"], "the run finished before it was interrupted"

    resumed = subprocess.run([*cmd, "--resume"], capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    for stem in ("last", RESULT[command]):
        a = load_file(str(out / f"{stem}.safetensors"))
        b = load_file(str(tmp_path / "ref" / f"{stem}.safetensors"))
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), (stem, key)
    sa = torch.load(state, weights_only=False)["modules"]
    sb = torch.load(tmp_path / "ref" / "last.state.pt", weights_only=False)["modules"]
    for name in sb:  # the raw weights of every trained module (the discriminator too)
        for key in sb[name]:
            assert torch.equal(sa[name][key], sb[name][key]), (name, key)
