"""Torch datasets of aligned LR/HR crops and of LR-only crops, and train/validation splits.

Randomness (crop position, dihedral symmetry) of item ``j`` in epoch ``e`` comes from
``np.random.default_rng([seed, e, index])`` where ``index`` is the source index, so an epoch is
reproducible whatever the number of DataLoader workers or the order items are fetched in.
Call :meth:`PairDataset.set_epoch` at the start of each epoch (with ``persistent_workers=True``
the workers keep their own copy: recreate the loader or avoid persistent workers).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from lenssr.data.augment import dihedral
from lenssr.data.normalize import Normalization
from lenssr.data.sources import ImageSource, PairSource
from lenssr.errors import ConfigError


def split_indices(n: int, val_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """A reproducible random split of ``range(n)`` into sorted ``(train, val)`` index lists.

    ``round(n * val_fraction)`` items go to validation, at least one when ``val_fraction > 0``
    and ``n >= 2``, and at least one item always stays in training.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ConfigError(f"val_fraction must be in [0, 1), got {val_fraction}")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    n_val = int(round(n * val_fraction))
    if val_fraction > 0 and n >= 2:
        n_val = min(max(n_val, 1), n - 1)
    perm = np.random.default_rng(seed).permutation(n)
    return sorted(int(i) for i in perm[n_val:]), sorted(int(i) for i in perm[:n_val])


def train_val_split(
    train_src: Any, val_src: Any | None, val_fraction: float, seed: int, max_val: int | None
) -> tuple[Any, list[int], list[int]]:
    """Choose the training and validation items of a run: ``(val_source, train_idx, val_idx)``.

    With a separate ``val_src`` all of ``train_src`` trains and ``val_src`` validates (their
    ``scale`` must agree when both have one); otherwise ``val_fraction`` of ``train_src`` is held
    out with :func:`split_indices`, or nothing when it is 0. At most ``max_val`` validation items.
    """
    if val_src is not None:
        a, b = getattr(train_src, "scale", None), getattr(val_src, "scale", None)
        if a and b and int(a) != int(b):
            raise ConfigError(f"data.val has scale x{b} but data.train has x{a}")
        train_idx, val_idx = list(range(len(train_src))), list(range(len(val_src)))
    elif val_fraction > 0:
        val_src = train_src
        train_idx, val_idx = split_indices(len(train_src), val_fraction, seed)
    else:
        val_src, train_idx, val_idx = train_src, list(range(len(train_src))), []
    return val_src, list(train_idx), list(val_idx)[:max_val]


def open_train_val(
    dcfg: dict[str, Any], opener: Any, seed: int, max_val: int | None, what: str
) -> tuple[Any, Any, list[int], list[int]]:
    """Open a run's ``data.train`` / ``data.val`` with ``opener`` and choose the items:
    ``(train_src, val_src, train_idx, val_idx)`` (see :func:`train_val_split`).

    ``what`` names the accepted inputs in the error raised when ``data.train`` is not set.
    """
    if not dcfg["train"]:
        raise ConfigError(f"data.train is not set ({what})")
    train_src = opener(dcfg["train"])
    val_src, train_idx, val_idx = train_val_split(
        train_src, opener(dcfg["val"]) if dcfg["val"] else None, dcfg["val_fraction"], seed,
        max_val,
    )  # fmt: skip
    return train_src, val_src, train_idx, val_idx


def _to_tensor(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)[None])


class _Base(Dataset):
    def __init__(
        self,
        n: int,
        indices: Sequence[int] | None,
        patch_size: int | None,
        augment: bool,
        normalization: Normalization,
        seed: int,
    ) -> None:
        self.indices = list(range(n)) if indices is None else [int(i) for i in indices]
        if patch_size is not None and patch_size < 1:
            raise ConfigError(f"patch_size must be >= 1 or None, got {patch_size}")
        self.patch_size = patch_size
        self.augment = augment
        self.normalization = normalization
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the random crops/augmentations of epoch ``epoch``."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.indices)

    def _rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.epoch, index])

    def _corner(
        self, rng: np.random.Generator, shape: tuple[int, ...], name: str
    ) -> tuple[int, int]:
        p = self.patch_size
        assert p is not None
        h, w = shape[-2:]
        if p > h or p > w:
            raise ConfigError(f"patch_size {p} is larger than the LR image {name} ({h}x{w})")
        return int(rng.integers(0, h - p + 1)), int(rng.integers(0, w - p + 1))


class PairDataset(_Base):
    """Aligned LR/HR training samples from a :class:`PairSource`.

    Item ``j`` -> ``(lr, hr)`` float32 tensors ``(1, p, p)`` and ``(1, s*p, s*p)`` (the whole
    images ``(1, h, w)``, ``(1, s*h, s*w)`` when ``patch_size`` is None). The LR patch at
    ``(i, j)`` pairs with the HR patch at ``(s*i, s*j)``; with ``augment`` the same one of the 8
    dihedral symmetries is applied to both. Both are normalised with the whole LR image's
    ``lo, hi`` (:class:`~lenssr.data.normalize.Normalization`), as at inference.
    """

    def __init__(
        self,
        source: PairSource,
        indices: Sequence[int] | None = None,
        patch_size: int | None = None,
        augment: bool = False,
        normalization: Normalization = Normalization(),
        seed: int = 0,
        conditioned: bool = False,
    ) -> None:
        super().__init__(len(source), indices, patch_size, augment, normalization, seed)
        self.source = source
        self.scale = int(source.scale)
        self.conditioned = conditioned

    def __getitem__(self, j: int) -> tuple[torch.Tensor, ...]:
        index = self.indices[j]
        lr, hr = self.source[index]
        s = self.scale
        if hr.shape != (lr.shape[0] * s, lr.shape[1] * s):
            raise ConfigError(f"pair {index}: HR {hr.shape} is not x{s} of LR {lr.shape}")
        rng = self._rng(index)
        fwhm = self.source.psf_fwhm_pix(index) if self.conditioned else 0.0
        return self._sample(lr, hr, fwhm, rng, str(self.source.names[index]))

    def _sample(
        self,
        lr: np.ndarray,
        hr: np.ndarray,
        fwhm_pix: float,
        rng: np.random.Generator,
        name: str,
        lr_noise: np.ndarray | None = None,
    ) -> tuple[torch.Tensor, ...]:
        """Normalise with the whole LR image's statistics, crop, augment; add the condition.

        ``lr_noise``: the LR image's per-pixel noise sigma (its units), cropped and augmented
        with it and divided by ``hi - lo``; appended to the item after the condition."""
        from lenssr.data.conditioning import condition_vector
        from lenssr.data.normalize import noise_sigma_mad

        s = self.scale
        sigma = noise_sigma_mad(lr) if self.conditioned else None
        lo, hi = self.normalization.stats(lr, noise_sigma=sigma)
        if self.patch_size is not None:
            p = self.patch_size
            y, x = self._corner(rng, lr.shape, name)
            lr = lr[y : y + p, x : x + p]
            hr = hr[s * y : s * (y + p), s * x : s * (x + p)]
            if lr_noise is not None:
                lr_noise = lr_noise[y : y + p, x : x + p]
        if self.augment:
            k = int(rng.integers(0, 8))
            lr, hr = dihedral(lr, k), dihedral(hr, k)
            if lr_noise is not None:
                lr_noise = dihedral(lr_noise, k)
        lr_n = self.normalization.forward(lr, lo, hi)
        hr_n = self.normalization.forward(hr, lo, hi)
        out: tuple[torch.Tensor, ...] = (_to_tensor(lr_n), _to_tensor(hr_n))
        if self.conditioned:
            cond = condition_vector(fwhm_pix, np.asarray([sigma]), lo, hi)[0]
            out += (torch.from_numpy(cond),)
        if lr_noise is not None:
            out += (_to_tensor(lr_noise / (hi - lo)),)
        return out


class MixturePairDataset(PairDataset):
    """Pairs made on the fly: each HR image of ``source`` is observed by an LR instrument drawn
    from ``preset``'s ``lr_mixture`` (PSF, exposure, sky, read noise) with the project's degrade
    model, anew for every epoch. The source's own LR images are not used.

    Item ``j`` -> ``(lr, hr, cond)``: the normalised crops as :class:`PairDataset` gives them and
    the ``(2,)`` conditioning vector (:mod:`lenssr.data.conditioning`) of the drawn instrument
    (its true PSF FWHM in LR pixels; the noise level estimated from the LR image, as inference
    does). The draws of item ``j`` in epoch ``e`` come from ``default_rng([seed, e, index])``.

    With ``consistency = True`` (the data-consistency loss, ``loss.chi2_weight``) the item also
    holds ``noise (1, p, p)``, the drawn instrument's per-pixel noise sigma at the noiseless LR
    image (Poisson + sky + read, normalised units), and ``blur ()``, the blur from the HR target
    to that instrument [HR pixels] (:func:`lenssr.inference.consistency.blur_sigma`).
    """

    consistency = False

    def __init__(
        self,
        source: PairSource,
        preset: Any,
        indices: Sequence[int] | None = None,
        patch_size: int | None = None,
        augment: bool = False,
        normalization: Normalization = Normalization("noise"),
        seed: int = 0,
    ) -> None:
        super().__init__(source, indices, patch_size, augment, normalization, seed, True)
        from lenssr.simulation.presets import resolve_preset

        self.preset = resolve_preset(preset)
        mix = self.preset.config.get("lr_mixture")
        if not mix or not mix.get("enabled", True):
            raise ConfigError(f"preset {self.preset.name!r} has no lr_mixture to draw from")
        if self.preset.scale != self.scale:
            raise ConfigError(
                f"preset {self.preset.name!r} is x{self.preset.scale}, the data x{self.scale}"
            )

    def __getitem__(self, j: int) -> tuple[torch.Tensor, ...]:
        from lenssr.simulation.degrade import degrade_array
        from lenssr.simulation.sampling import lr_instrument, sample_lr_instrument

        index = self.indices[j]
        _, hr = self.source[index]
        rng = self._rng(index)
        drawn = sample_lr_instrument(self.preset.config["lr_mixture"], rng, self.preset)
        inst = lr_instrument(self.preset, drawn)
        fwhm_pix = inst.psf_fwhm / self.preset.lr.pixel_scale
        name = str(self.source.names[index])
        if not self.consistency:
            lr = degrade_array(hr, self.preset, rng=rng, noise=True, lr=inst)
            return self._sample(lr, hr, fwhm_pix, rng, name)
        from lenssr.inference.consistency import blur_sigma

        lr, noise = degrade_array(hr, self.preset, rng=rng, lr=inst, with_noise_sigma=True)
        hr_fwhm = self.preset.hr.psf_fwhm_pix
        blur = blur_sigma(fwhm_pix, self.scale, hr_fwhm)
        item = self._sample(lr, hr, fwhm_pix, rng, name, lr_noise=noise)
        return (*item, torch.tensor(blur, dtype=torch.float32))


class LRDataset(_Base):
    """LR-only samples (self-supervised pretraining) from an :class:`ImageSource`.

    Item ``j`` -> ``(1, p, p)`` float32 tensor (whole image when ``patch_size`` is None),
    normalised with the whole image's ``lo, hi``, optionally one of the 8 dihedral symmetries.
    """

    def __init__(
        self,
        source: ImageSource,
        indices: Sequence[int] | None = None,
        patch_size: int | None = None,
        augment: bool = False,
        normalization: Normalization = Normalization(),
        seed: int = 0,
    ) -> None:
        super().__init__(len(source), indices, patch_size, augment, normalization, seed)
        self.source = source

    def __getitem__(self, j: int) -> torch.Tensor:
        index = self.indices[j]
        img = self.source[index]
        lo, hi = self.normalization.stats(img)
        rng = self._rng(index)
        if self.patch_size is not None:
            p = self.patch_size
            y, x = self._corner(rng, img.shape, str(self.source.names[index]))
            img = img[y : y + p, x : x + p]
        if self.augment:
            img = dihedral(img, int(rng.integers(0, 8)))
        return _to_tensor(self.normalization.forward(img, lo, hi))
