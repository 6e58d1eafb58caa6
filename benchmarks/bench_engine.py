"""Per-step overhead and exact resume of three ways to write the training step.

``own``: the engine's plain PyTorch step (backward, clip, AdamW step); ``fabric``: Lightning
Fabric (``fabric.backward``, ``fabric.clip_gradients``, ``fabric.save/load``); ``accelerate``:
Hugging Face Accelerate (``accelerator.backward``, ``clip_grad_norm_``, ``save_state`` /
``load_state``). The model is the tests' tiny EDSR on batches of 4 LR 8x8 patches, one CPU
thread, gradient clipping on, a noise augmentation drawn from the global torch RNG (what
pretraining does). Prints the median step time of each and whether a run saved at step 20
with the library's own checkpoint calls and resumed in fresh objects ends with the same
weights as 40 uninterrupted steps.

    OMP_NUM_THREADS=1 python benchmarks/bench_engine.py [--steps 300]

Fabric and Accelerate are optional here: a missing one is reported and skipped.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from lenssr.models import create_model

TINY = {"num_feat": 8, "num_block": 1}


def batch(i: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Batch ``i`` of the stream (independent of any global RNG)."""
    g = torch.Generator().manual_seed(i)
    return torch.rand(4, 1, 8, 8, generator=g), torch.rand(4, 1, 16, 16, generator=g)


def build() -> tuple[nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = create_model("edsr", **TINY)
    return model, torch.optim.AdamW(model.parameters(), lr=1e-3)


def loss_of(model: nn.Module, i: int) -> torch.Tensor:
    lr, hr = batch(i)
    lr = lr + 0.01 * torch.randn_like(lr)  # global-RNG augmentation
    return nn.functional.l1_loss(model(lr), hr)


class Own:
    name = "own"

    def setup(self) -> None:
        self.model, self.opt = build()

    def step(self, i: int) -> None:
        loss = loss_of(self.model, i)
        loss.backward()
        nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)

    def save(self, path: Path) -> None:
        torch.save(
            {
                "model": self.model.state_dict(),
                "opt": self.opt.state_dict(),
                "rng": torch.get_rng_state(),
            },
            path / "state.pt",
        )

    def load(self, path: Path) -> None:
        state = torch.load(path / "state.pt", weights_only=False)
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["opt"])
        torch.set_rng_state(state["rng"])


class Fabric(Own):
    name = "fabric"

    def setup(self) -> None:
        from lightning_fabric import Fabric as F

        self.fabric = F(accelerator="cpu", devices=1, precision="32-true")
        model, opt = build()
        self.model, self.opt = self.fabric.setup(model, opt)

    def step(self, i: int) -> None:
        loss = loss_of(self.model, i)
        self.fabric.backward(loss)
        self.fabric.clip_gradients(self.model, self.opt, max_norm=1.0)
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)

    def save(self, path: Path) -> None:
        self.fabric.save(path / "fabric.ckpt", {"model": self.model, "opt": self.opt})

    def load(self, path: Path) -> None:
        self.fabric.load(path / "fabric.ckpt", {"model": self.model, "opt": self.opt})


class Accelerate(Own):
    name = "accelerate"

    def setup(self) -> None:
        from accelerate import Accelerator

        self.acc = Accelerator(cpu=True)
        model, opt = build()
        self.model, self.opt = self.acc.prepare(model, opt)

    def step(self, i: int) -> None:
        loss = loss_of(self.model, i)
        self.acc.backward(loss)
        self.acc.clip_grad_norm_(self.model.parameters(), 1.0)
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)

    def save(self, path: Path) -> None:
        self.acc.save_state(str(path / "acc"))

    def load(self, path: Path) -> None:
        self.acc.load_state(str(path / "acc"))


def step_time(way: Own, steps: int) -> float:
    """Median seconds per step after 20 warm-up steps."""
    way.setup()
    for i in range(20):
        way.step(i)
    times = []
    for i in range(steps):
        t = time.perf_counter()
        way.step(20 + i)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def resumes_exactly(cls: type[Own]) -> bool:
    """40 steps in one go vs 20, save, fresh objects and another RNG state, load, 20 more."""
    ref = cls()
    ref.setup()
    torch.manual_seed(1)
    for i in range(40):
        ref.step(i)
    run = cls()
    run.setup()
    torch.manual_seed(1)
    for i in range(20):
        run.step(i)
    with tempfile.TemporaryDirectory() as tmp:
        run.save(Path(tmp))
        again = cls()
        again.setup()
        torch.manual_seed(12345)
        again.load(Path(tmp))
    for i in range(20, 40):
        again.step(i)
    a, b = ref.model.state_dict(), again.model.state_dict()
    return all(torch.equal(a[k], b[k]) for k in a)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    ways: list[type[Own]] = [Own]
    for cls, module in ((Fabric, "lightning_fabric"), (Accelerate, "accelerate")):
        try:
            __import__(module)
            ways.append(cls)
        except ImportError:
            print(f"{cls.name}: not installed, skipped")
    results: dict[str, list[float]] = {w.name: [] for w in ways}
    for r in range(args.repeats):  # interleaved and in turn reversed, so background load
        for cls in ways if r % 2 == 0 else ways[::-1]:  # and warm caches favour none
            results[cls.name].append(step_time(cls(), args.steps))
    base = min(results["own"])
    for cls in ways:
        t = min(results[cls.name])
        print(
            f"{cls.name:10s} {1e3 * t:7.3f} ms/step  overhead {1e6 * (t - base):+7.1f} us  "
            f"bit-exact resume: {'yes' if resumes_exactly(cls) else 'NO'}"
        )


if __name__ == "__main__":
    main()
