"""PairDataset / LRDataset crops, augmentations, determinism; dihedral; split_indices."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lenssr.data import (
    LRDataset,
    Normalization,
    PairDataset,
    dihedral,
    inverse_dihedral,
    split_indices,
)
from lenssr.data.sources import ImageSource, PairSource
from lenssr.errors import ConfigError


class _Pairs(PairSource):
    """Synthetic pairs: HR = nearest-upsampled LR (so aligned crops match exactly)."""

    def __init__(self, n: int = 4, h: int = 13, w: int = 11, s: int = 2) -> None:
        rng = np.random.default_rng(0)
        self.lr = [rng.normal(5.0, 2.0, (h, w)).astype(np.float32) for _ in range(n)]
        self.scale, self.labels, self.classes = s, None, None
        self.names = [f"p{i}" for i in range(n)]

    def __getitem__(self, i):
        x = self.lr[i]
        return x, np.kron(x, np.ones((self.scale, self.scale), np.float32))


class _Images(ImageSource):
    def __init__(self) -> None:
        self.names = ["a", "b"]
        self.imgs = [np.arange(30, dtype=np.float32).reshape(5, 6) + i for i in range(2)]

    def __getitem__(self, i):
        return self.imgs[i]


def _nearest_down(hr: torch.Tensor, s: int) -> torch.Tensor:
    return hr[..., ::s, ::s]


@pytest.mark.parametrize("s", [2, 4])
def test_crops_are_aligned_and_normalised_with_lr_stats(s):
    src = _Pairs(s=s)
    ds = PairDataset(src, patch_size=5, augment=True, seed=3)
    seen_k = set()
    for epoch in range(3):
        ds.set_epoch(epoch)
        for j in range(len(ds)):
            lr, hr = ds[j]
            assert lr.shape == (1, 5, 5) and hr.shape == (1, 5 * s, 5 * s)
            assert lr.dtype == torch.float32 and hr.dtype == torch.float32
            # HR is the nearest-upsampled LR: every s x s block equals its LR pixel.
            torch.testing.assert_close(_nearest_down(hr, s), lr, rtol=0, atol=0)
            torch.testing.assert_close(hr[..., s - 1 :: s, s - 1 :: s], lr, rtol=0, atol=0)
            seen_k.add(tuple(lr.flatten()[:3].tolist()))
    # Normalised with the *whole* LR image's min/max: values in [0, 1], both share them.
    lr, hr = PairDataset(src)[1]
    assert lr.min() == 0 and lr.max() == 1
    full = src.lr[1]
    torch.testing.assert_close(lr[0], torch.from_numpy((full - full.min()) / np.ptp(full)))
    assert len(seen_k) > 6  # crops/augmentations vary across items and epochs


def test_deterministic_given_seed_and_epoch():
    src = _Pairs()
    a = PairDataset(src, patch_size=4, augment=True, seed=7)
    b = PairDataset(src, patch_size=4, augment=True, seed=7)
    torch.testing.assert_close(a[2][0], b[2][0])
    a.set_epoch(1)
    assert not torch.equal(a[2][0], b[2][0]) or not torch.equal(a[0][0], b[0][0])
    b.set_epoch(1)
    torch.testing.assert_close(a[2][1], b[2][1])
    c = PairDataset(src, patch_size=4, augment=True, seed=8)
    assert any(not torch.equal(c[j][0], a[j][0]) for j in range(len(src)))


def test_whole_images_indices_and_too_large_patch():
    src = _Pairs(n=5)
    ds = PairDataset(src, indices=[4, 1], normalization=Normalization())
    assert len(ds) == 2
    lr, hr = ds[0]
    assert lr.shape == (1, 13, 11) and hr.shape == (1, 26, 22)
    x = src.lr[4]
    torch.testing.assert_close(lr[0], torch.from_numpy((x - x.min()) / (x.max() - x.min())))
    with pytest.raises(ConfigError, match="patch_size 12 is larger"):
        PairDataset(src, patch_size=12)[0]


def test_lr_dataset_crops_and_normalises():
    ds = LRDataset(_Images(), patch_size=3, augment=True, seed=1)
    x = ds[1]
    assert x.shape == (1, 3, 3) and x.dtype == torch.float32
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    whole = LRDataset(_Images())[0]
    assert whole.shape == (1, 5, 6) and float(whole.max()) == 1.0


@pytest.mark.parametrize("k", range(8))
def test_dihedral_inverse_numpy_and_torch(k):
    x = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)
    y = dihedral(x, k)
    assert y.shape == ((2, 3, 4) if k % 2 == 0 else (2, 4, 3))
    np.testing.assert_array_equal(inverse_dihedral(y, k), x)
    t = torch.from_numpy(x.copy())[:, None]  # (B, 1, H, W)
    ty = dihedral(t, k)
    np.testing.assert_array_equal(ty[:, 0].numpy(), y)  # same convention for numpy and torch
    torch.testing.assert_close(inverse_dihedral(ty, k), t)


def test_dihedral_gives_eight_distinct_images():
    x = np.arange(9, dtype=np.float32).reshape(3, 3)
    outs = {dihedral(x, k).tobytes() for k in range(8)}
    assert len(outs) == 8
    np.testing.assert_array_equal(dihedral(x, 1), np.rot90(x))
    np.testing.assert_array_equal(dihedral(x, 4), x[:, ::-1])
    with pytest.raises(ValueError):
        dihedral(x, 8)


def test_split_indices():
    tr, va = split_indices(10, 0.2, seed=0)
    assert len(va) == 2 and len(tr) == 8 and sorted(tr + va) == list(range(10))
    assert split_indices(10, 0.2, seed=0) == (tr, va)
    assert split_indices(10, 0.2, seed=1) != (tr, va)
    assert len(split_indices(3, 0.01, 0)[1]) == 1  # at least one validation item
    assert split_indices(5, 0.0, 0) == ([0, 1, 2, 3, 4], [])
    with pytest.raises(ConfigError):
        split_indices(5, 1.0, 0)


class _Src:
    def __init__(self, n: int, scale: int) -> None:
        self.n, self.scale = n, scale

    def __len__(self) -> int:
        return self.n


def test_train_val_split_covers_the_three_cases() -> None:
    from lenssr.data import train_val_split
    from lenssr.errors import ConfigError

    train, val = _Src(10, 2), _Src(6, 2)
    src, tr, va = train_val_split(train, val, 0.5, 0, max_val=4)
    assert src is val and tr == list(range(10)) and va == [0, 1, 2, 3]
    src, tr, va = train_val_split(train, None, 0.3, 0, max_val=None)
    assert src is train and len(va) == 3 and sorted(tr + va) == list(range(10))
    assert train_val_split(train, None, 0.0, 0, max_val=5)[2] == []
    with pytest.raises(ConfigError, match="scale x4 but data.train has x2"):
        train_val_split(train, _Src(3, 4), 0.0, 0, max_val=None)


def test_open_train_val_opens_both_sources_and_names_what_is_missing() -> None:
    from lenssr.data import open_train_val
    from lenssr.errors import ConfigError

    sources = {"a.h5": _Src(8, 2), "b.h5": _Src(3, 2)}
    dcfg = {"train": "a.h5", "val": "b.h5", "val_fraction": 0.5}
    train, val, tr, va = open_train_val(dcfg, sources.__getitem__, 0, 2, "pairs")
    assert train is sources["a.h5"] and val is sources["b.h5"]
    assert tr == list(range(8)) and va == [0, 1]
    with pytest.raises(ConfigError, match=r"data.train is not set \(LR images\)"):
        open_train_val({**dcfg, "train": None}, sources.__getitem__, 0, 2, "LR images")
