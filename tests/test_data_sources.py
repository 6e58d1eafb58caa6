"""open_pairs / open_images: HDF5, DeepLense folders, zips, labels and bad inputs."""

from __future__ import annotations

import json
import pickle
import zipfile

import h5py
import numpy as np
import pytest
import tifffile
from astropy.io import fits

from lenssr.data import open_images, open_pairs
from lenssr.errors import InputError


def _lr(i: int, h: int = 5, w: int = 4) -> np.ndarray:
    return np.random.default_rng(i).random((h, w)).astype(np.float32)


def _up(x: np.ndarray, s: int = 2) -> np.ndarray:
    return np.kron(x, np.ones((s, s), np.float32))


def _deeplense(root, n=4, lr_name="sample{}.npy", hr_name="sample{}.npy", s=2):
    (root / "LR").mkdir(parents=True)
    (root / "HR").mkdir()
    for i in range(n):
        np.save(root / "LR" / lr_name.format(i), _lr(i)[None])  # (1, h, w) like DeepLense
        np.save(root / "HR" / hr_name.format(i), _up(_lr(i), s)[None])


def _h5(path, n=6, s=2, labels=True):
    with h5py.File(path, "w") as f:
        lr = np.stack([_lr(i) for i in range(n)])
        f["lr"] = lr
        f["hr"] = np.stack([_up(x, s) for x in lr])
        if labels:
            f["label"] = np.arange(n, dtype=np.int8) % 3
        f.attrs["classes"] = json.dumps(["no_sub", "cdm", "axion"])
        f.attrs["scale"] = s


def test_h5_pairs_lazy_and_picklable(tmp_path):
    _h5(tmp_path / "d.h5")
    src = open_pairs(tmp_path / "d.h5")
    assert len(src) == 6 and src.scale == 2 and src.classes == ["no_sub", "cdm", "axion"]
    np.testing.assert_array_equal(src.labels, [0, 1, 2, 0, 1, 2])
    lr, hr = src[3]
    assert lr.dtype == np.float32 and lr.shape == (5, 4) and hr.shape == (10, 8)
    np.testing.assert_array_equal(hr, _up(_lr(3)))
    clone = pickle.loads(pickle.dumps(src))  # as DataLoader workers receive it
    np.testing.assert_array_equal(clone[-1][0], _lr(5))
    with pytest.raises(IndexError):
        src[6]


def test_h5_without_labels_and_bad_h5(tmp_path):
    _h5(tmp_path / "n.h5", labels=False, s=4)
    src = open_pairs(tmp_path / "n.h5")
    assert src.labels is None and src.scale == 4
    with h5py.File(tmp_path / "bad.h5", "w") as f:
        f["lr"] = np.zeros((2, 5, 5), np.float32)
        f["hr"] = np.zeros((2, 11, 10), np.float32)
    with pytest.raises(InputError, match="integer multiple"):
        open_pairs(tmp_path / "bad.h5")
    (tmp_path / "junk.h5").write_bytes(b"junk")
    with pytest.raises(InputError, match="junk.h5.*HDF5"):
        open_pairs(tmp_path / "junk.h5")


def test_deeplense_folder_pairs(tmp_path):
    _deeplense(tmp_path / "ds")
    src = open_pairs(tmp_path / "ds")
    assert len(src) == 4 and src.scale == 2 and src.labels is None
    assert src.names == [f"sample{i}.npy" for i in range(4)]
    lr, hr = src[2]
    assert lr.shape == (5, 4) and hr.shape == (10, 8)
    np.testing.assert_array_equal(lr, _lr(2))
    np.testing.assert_array_equal(hr, _up(_lr(2)))


def test_deeplense_prefixed_names_and_metadata_labels(tmp_path):
    _deeplense(tmp_path / "ds", n=3, lr_name="LR_{}.npy", hr_name="HR_{}.npy")
    meta = {"classes": ["no_sub", "cdm", "axion"], "labels": {"LR_0": 2, "LR_1": "cdm", "2": 0}}
    (tmp_path / "ds" / "metadata.json").write_text(json.dumps(meta))
    src = open_pairs(tmp_path / "ds")
    assert src.names == ["LR_0.npy", "LR_1.npy", "LR_2.npy"]
    np.testing.assert_array_equal(src.labels, [2, 1, 0])
    np.testing.assert_array_equal(src[1][1], _up(_lr(1)))


def test_fits_and_tiff_pairs(tmp_path):
    (tmp_path / "LR").mkdir()
    (tmp_path / "HR").mkdir()
    fits.PrimaryHDU(_lr(0)).writeto(tmp_path / "LR" / "a.fits")
    fits.PrimaryHDU(_up(_lr(0), 3)).writeto(tmp_path / "HR" / "a.fits")
    tifffile.imwrite(tmp_path / "LR" / "b.tif", _lr(1))
    tifffile.imwrite(tmp_path / "HR" / "b.tif", _up(_lr(1), 3))
    src = open_pairs(tmp_path)
    assert src.scale == 3 and len(src) == 2
    np.testing.assert_array_equal(src[1][1], _up(_lr(1), 3))


def test_unmatched_and_non_multiple_pairs_listed(tmp_path):
    _deeplense(tmp_path / "u", n=3)
    (tmp_path / "u" / "HR" / "sample1.npy").unlink()
    np.save(tmp_path / "u" / "HR" / "extra.npy", np.zeros((10, 8), np.float32))
    with pytest.raises(InputError, match="LR without HR: sample1.npy.*HR without LR: extra.npy"):
        open_pairs(tmp_path / "u")
    _deeplense(tmp_path / "m", n=3)
    np.save(tmp_path / "m" / "HR" / "sample2.npy", np.zeros((10, 9), np.float32))
    np.save(tmp_path / "m" / "HR" / "sample0.npy", np.zeros((15, 8), np.float32))
    with pytest.raises(InputError, match=r"2 pair\(s\).*sample0.npy.*sample2.npy"):
        open_pairs(tmp_path / "m")


def test_pairs_inside_zip(tmp_path):
    _deeplense(tmp_path / "ds", n=3)
    with zipfile.ZipFile(tmp_path / "ds.zip", "w") as zf:
        for p in sorted((tmp_path / "ds").rglob("*.npy")):
            zf.write(p, "dataset/" + p.relative_to(tmp_path / "ds").as_posix())
    src = open_pairs(tmp_path / "ds.zip")
    assert len(src) == 3 and src.scale == 2
    clone = pickle.loads(pickle.dumps(src))
    np.testing.assert_array_equal(clone[2][1], _up(_lr(2)))
    (tmp_path / "bad.zip").write_bytes(b"nope")
    with pytest.raises(InputError, match="bad.zip"):
        open_pairs(tmp_path / "bad.zip")


def test_open_images_folder_zip_file_h5(tmp_path):
    _deeplense(tmp_path / "ds", n=3)
    imgs = open_images(tmp_path / "ds")  # uses only LR/ when present
    assert len(imgs) == 3 and imgs[0].shape == (5, 4)
    one = open_images(tmp_path / "ds" / "HR" / "sample0.npy")
    assert len(one) == 1 and one[0].shape == (10, 8)
    _h5(tmp_path / "d.h5", n=4)
    h5imgs = open_images(tmp_path / "d.h5")
    assert len(h5imgs) == 4
    np.testing.assert_array_equal(h5imgs[2], _lr(2))
    with zipfile.ZipFile(tmp_path / "flat.zip", "w") as zf:
        zf.writestr("x/a.npy", (tmp_path / "ds" / "LR" / "sample0.npy").read_bytes())
        zf.writestr("readme.txt", "hi")
    z = open_images(tmp_path / "flat.zip")
    assert z.names == ["x/a.npy"]
    with pytest.raises(InputError, match="no such file"):
        open_images(tmp_path / "missing")


def test_h5_pairs_in_dataloader_workers(tmp_path):
    import torch
    from torch.utils.data import DataLoader

    from lenssr.data import PairDataset

    _h5(tmp_path / "d.h5", n=6)
    src = open_pairs(tmp_path / "d.h5")
    src[0]  # the parent opens its handle first; workers must reopen their own
    loader = DataLoader(PairDataset(src, patch_size=3, seed=1), batch_size=3, num_workers=2)
    batches = list(loader)
    assert len(batches) == 2 and batches[0][0].shape == (3, 1, 3, 3)
    assert batches[1][1].shape == (3, 1, 6, 6)
    serial = [PairDataset(src, patch_size=3, seed=1)[j][0] for j in range(3)]
    torch.testing.assert_close(batches[0][0], torch.stack(serial))
