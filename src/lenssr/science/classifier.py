"""The substructure classifier: one small ResNet and one fixed training recipe.

The downstream test asks whether super-resolution makes dark-matter substructure easier to
detect. To compare input types fairly, every classifier in a ``validate-science`` run is built
and trained the same way (:class:`Recipe`): the same architecture (:class:`SubstructureResNet`),
optimiser (AdamW + cosine schedule), number of epochs, batch size, augmentation (a random one of
the 8 dihedral transforms of :func:`lenssr.data.dihedral` per image and step) and seed. Only the
images change.

Input convention: each image ``(H, W)`` in any units is mapped with its own ``min..max`` to
``[0, 1]`` (:func:`prepare_images`, the project's normalisation convention), so the classifier
sees morphology, not brightness. Output: logits over the 3 classes ``no_sub, cdm, axion``;
:func:`predict_proba` returns softmax probabilities ``(N, 3)``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lenssr.data.augment import dihedral

N_CLASSES = 3


@dataclass(frozen=True)
class Recipe:
    """The fixed training recipe (identical for every input type).

    Attributes:
        widths: channels of the 4 ResNet stages (the stem divides the image side by 4, each
            stage after the first halves it).
        epochs: passes over the training set.
        batch_size: images per optimiser step.
        lr: peak AdamW learning rate (cosine decay to 0 over all steps, 1-epoch-free warm-up).
        weight_decay: AdamW weight decay.
        seed: seeds the weights, the batch order and the augmentations.
    """

    widths: tuple[int, int, int, int] = (16, 32, 48, 64)
    epochs: int = 12
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-4
    seed: int = 0

    def to_dict(self) -> dict:
        """JSON-serialisable form (for report.json)."""
        d = asdict(self)
        d["widths"] = list(self.widths)
        d["optimizer"] = "AdamW, cosine decay per step, no warm-up"
        d["augmentation"] = "one random dihedral transform (of 8) per image per step"
        d["input"] = "per-image min..max -> [0, 1]"
        return d


class _Block(nn.Module):
    """Basic residual block: 3x3 conv-BN-ReLU-3x3 conv-BN + (projected) skip, ReLU."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.skip: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.skip = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + self.skip(x))


class SubstructureResNet(nn.Module):
    """A small ResNet for ``(B, 1, H, W)`` lensing images (any size) -> ``(B, 3)`` logits.

    Stem: a 4x4 "patchify" convolution with stride 4 (150x150 -> 38x38), BN, ReLU: a learned
    linear map of every 4x4 pixel block to ``widths[0]`` channels, so it can keep all the
    pixel-scale detail of a block (16 pixels -> 16 channels) while the rest of the network runs
    on a 16x smaller grid, which makes training affordable on a CPU. Then 4 stages of one basic
    block each (strides 1, 2, 2, 2), global average pooling and a linear layer.
    """

    def __init__(self, widths: tuple[int, ...] = (16, 32, 48, 64), n_classes: int = N_CLASSES):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(1, widths[0], 4, 4, 1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU()
        )
        blocks, c = [], widths[0]
        for i, w in enumerate(widths):
            blocks.append(_Block(c, w, 1 if i == 0 else 2))
            c = w
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Linear(c, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.blocks(self.stem(x))
        return self.head(y.mean(dim=(-2, -1)))

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The feature maps after the stem and after each stage (before pooling)."""
        y = self.stem(x)
        out = [y]
        for block in self.blocks:
            y = block(y)
            out.append(y)
        return out


def save_classifier(model: SubstructureResNet, path: str | Path, info: dict | None = None) -> Path:
    """Write a trained classifier: ``path`` (.safetensors weights) and ``path.json`` (its
    widths, the class names, and ``info``, e.g. how it was trained)."""
    from safetensors.torch import save_file

    path = Path(path).with_suffix(".safetensors")
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(path))
    widths = [int(b.conv1.out_channels) for b in model.blocks]
    desc = {"kind": "substructure-classifier", "widths": widths, "n_classes": N_CLASSES,
            "input": "per-image min..max -> [0, 1]", **(info or {})}  # fmt: skip
    path.with_suffix(".json").write_text(json.dumps(desc, indent=2) + "\n")
    return path


def load_classifier(path: str | Path) -> SubstructureResNet:
    """A classifier written by :func:`save_classifier`, frozen and in eval mode; a missing or
    foreign file is a one-line :class:`~lenssr.errors.ConfigError`."""
    from lenssr.errors import ConfigError

    path = Path(path).with_suffix(".safetensors")
    desc_path = path.with_suffix(".json")
    if not path.is_file() or not desc_path.is_file():
        raise ConfigError(f"substructure classifier not found: {path} (and its .json)")
    try:
        desc = json.loads(desc_path.read_text())
        from safetensors.torch import load_file

        model = SubstructureResNet(tuple(desc["widths"]), int(desc.get("n_classes", N_CLASSES)))
        model.load_state_dict(load_file(str(path), device="cpu"))
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the user's to fix
        raise ConfigError(f"{path}: not a lenssr substructure classifier ({exc})") from exc
    model.requires_grad_(False)
    return model.eval()


def prepare_images(images: np.ndarray) -> torch.Tensor:
    """``(N, H, W)`` images in any units -> ``(N, 1, H, W)`` float32 tensor, each in ``[0, 1]``.

    Each image is mapped with its own ``min..max``; a constant image becomes all zeros.
    """
    x = np.asarray(images, dtype=np.float32)
    if x.ndim != 3:
        raise ValueError(f"expected (N, H, W) images, got shape {x.shape}")
    lo = x.min(axis=(1, 2), keepdims=True)
    span = x.max(axis=(1, 2), keepdims=True) - lo
    x = (x - lo) / np.where(span > 0, span, 1.0)
    return torch.from_numpy(np.ascontiguousarray(x[:, None]))


def _augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Apply an independent random dihedral transform (k in 0..7) to each image of a batch."""
    ks = torch.randint(0, 8, (x.shape[0],), generator=gen)
    out = torch.empty_like(x)
    for k in range(8):
        sel = (ks == k).nonzero(as_tuple=True)[0]
        if len(sel):
            out[sel] = dihedral(x[sel], k)
    return out


@dataclass
class TrainLog:
    """What :func:`train_classifier` measured: per-epoch mean loss and wall time (s)."""

    losses: list[float]
    epoch_seconds: list[float]


def train_classifier(
    images: torch.Tensor,
    labels: np.ndarray,
    recipe: Recipe = Recipe(),
    device: str | torch.device = "cpu",
    progress: Callable[[int, float, float], None] | None = None,
) -> tuple[SubstructureResNet, TrainLog]:
    """Train one classifier with the fixed recipe.

    Args:
        images: ``(N, 1, H, W)`` from :func:`prepare_images` (square images, so the 90-degree
            rotations keep the shape).
        labels: ``(N,)`` ints in ``0..2``.
        recipe: the training recipe (keep the default for comparable results).
        device: torch device.
        progress: optional callback ``(epoch, mean_loss, seconds)`` after each epoch.

    Returns:
        The trained model (eval mode) and its :class:`TrainLog`.
    """
    torch.manual_seed(recipe.seed)
    gen = torch.Generator().manual_seed(recipe.seed)
    model = SubstructureResNet(recipe.widths).to(device)
    y_all = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    n = images.shape[0]
    steps_per_epoch = max(1, -(-n // recipe.batch_size))
    opt = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, recipe.epochs * steps_per_epoch)
    log = TrainLog([], [])
    for epoch in range(recipe.epochs):
        model.train()
        t0 = time.perf_counter()
        order = torch.randperm(n, generator=gen)
        total, count = 0.0, 0
        for s in range(steps_per_epoch):
            idx = order[s * recipe.batch_size : (s + 1) * recipe.batch_size]
            if len(idx) < 2:  # BatchNorm needs two samples
                continue
            x = _augment(images[idx], gen).to(device)
            y = y_all[idx].to(device)
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
            count += len(idx)
        log.losses.append(total / max(count, 1))
        log.epoch_seconds.append(time.perf_counter() - t0)
        if progress is not None:
            progress(epoch, log.losses[-1], log.epoch_seconds[-1])
    return model.eval(), log


@torch.inference_mode()
def predict_proba(
    model: nn.Module, images: torch.Tensor, batch_size: int = 128, tta: bool = False
) -> np.ndarray:
    """Class probabilities ``(N, 3)`` (softmax) for ``(N, 1, H, W)`` prepared images.

    ``tta=True`` averages the probabilities over the 8 dihedral transforms.
    """
    model.eval()
    device = next(model.parameters()).device
    out = []
    for s in range(0, images.shape[0], batch_size):
        x = images[s : s + batch_size].to(device)
        ks = range(8) if tta else (0,)
        p = sum(F.softmax(model(dihedral(x, k)), dim=1) for k in ks) / len(ks)
        out.append(p.float().cpu().numpy())
    if not out:
        return np.zeros((0, N_CLASSES), dtype=np.float32)
    return np.concatenate(out)
