"""Every training task on 2 CPU processes (gloo) under torch.distributed.run: the ranks train on
different shards and keep identical weights; only rank 0 writes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lenssr.models import create_model, save_checkpoint

WORKER = """
import hashlib, json, os, sys
import torch
from lenssr.training.engine import Engine

task, cfg = sys.argv[3], json.loads(open(sys.argv[1]).read())
rank = int(os.environ["RANK"])
# a per-rank output folder: a rank other than 0 that wrote anything would leave files in its own
engine = Engine(task, cfg, out=os.path.join(sys.argv[2], f"out{rank}"), quiet=True)
engine.run()
h = hashlib.sha256()
for name, module in sorted(engine.task.modules().items()):
    for k, v in sorted(module.state_dict().items()):
        h.update(f"{name}.{k}".encode()); h.update(v.detach().cpu().numpy().tobytes())
with open(os.path.join(sys.argv[2], f"rank{rank}.json"), "w") as f:
    json.dump({"hash": h.hexdigest(), "step": engine.step, "world": engine.info.world_size,
               "loss0": engine.losses[0]}, f)
"""

RESULT = {"supervised": "best", "denoise": "pretrained", "gan": "generator"}


@pytest.mark.slow
@pytest.mark.parametrize("task", ["supervised", "denoise", "gan"])
def test_ddp_two_cpu_processes_stay_in_sync(
    task: str, tmp_path: Path, make_pairs, train_config, tiny_hybrid
) -> None:
    pairs = make_pairs(tmp_path / "pairs.h5", n=20)
    cfg = train_config(pairs, tmp_path / "unused", steps=6)
    cfg["val"]["every_steps"] = 3
    cfg["model"] = tiny_hybrid
    if task == "gan":
        init = save_checkpoint(tmp_path / "init", create_model(**tiny_hybrid))
        cfg.pop("model")
        cfg["init"] = str(init)
        cfg["data"]["patch_size"] = 12
        cfg["gan"] = {"discriminator": {"name": "patchgan", "num_feat": 4, "num_layers": 2}}
    (tmp_path / "cfg.json").write_text(json.dumps(cfg))
    (tmp_path / "worker.py").write_text(WORKER)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        str(tmp_path / "worker.py"),
        str(tmp_path / "cfg.json"),
        str(tmp_path),
        task,
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0 = json.loads((tmp_path / "rank0.json").read_text())
    r1 = json.loads((tmp_path / "rank1.json").read_text())
    assert r0["world"] == r1["world"] == 2
    assert r0["step"] == r1["step"] == 6
    assert r0["hash"] == r1["hash"]  # identical weights on both ranks
    assert r0["loss0"] != r1["loss0"]  # ...trained on different shards of the data
    written = {p.name for p in (tmp_path / "out0").iterdir()}
    expected = {f"{RESULT[task]}.safetensors", "last.safetensors", "last.state.pt", "config.yaml"}
    assert expected <= written
    assert not (tmp_path / "out1").exists()
    state = __import__("torch").load(tmp_path / "out0/last.state.pt", weights_only=False)
    assert state["world_size"] == 2 and len(state["rng"]) == 2
