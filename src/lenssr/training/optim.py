"""Optimiser pieces: AdamW, linear warm-up + cosine learning rate, EMA of the weights."""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
from torch import nn


def make_optimizer(model: nn.Module, cfg: dict[str, Any]) -> torch.optim.AdamW:
    """AdamW over the trainable parameters; weight decay skips biases and 1-D (norm) weights."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    groups = [
        {"params": decay, "weight_decay": float(cfg["weight_decay"])},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(
        [g for g in groups if g["params"]], lr=float(cfg["lr"]), betas=tuple(cfg["betas"])
    )


def lr_factor(step: int, warmup_steps: int, progress: float, min_ratio: float = 0.0) -> float:
    """Learning-rate multiplier at optimisation ``step`` (0-based).

    Linear warm-up from ``1 / warmup_steps`` to 1 over ``warmup_steps`` steps, then a cosine
    decay from 1 to ``min_ratio``; ``progress`` in [0, 1] is the fraction of the budget spent
    (steps or wall time) and drives the cosine.
    """
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    p = min(max(progress, 0.0), 1.0)
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * p))


class EMA:
    """Exponential moving average of a model's parameters (buffers are copied).

    ``decay`` is warmed up as ``min(decay, (1 + n) / (10 + n))`` so that short runs are not
    dominated by the random initialisation.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = float(decay)
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.updates = 0

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the averaged weights towards ``model``'s current weights."""
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        src = dict(model.named_parameters())
        for name, p in self.module.named_parameters():
            p.lerp_(src[name].detach().to(p.dtype), 1 - d)
        src_b = dict(model.named_buffers())
        for name, b in self.module.named_buffers():
            b.copy_(src_b[name])

    def state_dict(self) -> dict[str, Any]:
        return {"module": self.module.state_dict(), "updates": self.updates, "decay": self.decay}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.module.load_state_dict(state["module"])
        self.updates = int(state["updates"])
