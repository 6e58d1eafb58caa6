"""process_path / iter_inputs / zip_entries: folders, zips, broken members and zip safety."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest
import tifffile
from astropy.io import fits
from PIL import Image

from lenssr.errors import InputError, LenssrError
from lenssr.io import (
    LoadedImage,
    ZipLimits,
    iter_inputs,
    process_path,
    read_image,
    sanitize_member_name,
    zip_entries,
)


def _npy_bytes(x: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, x)
    return buf.getvalue()


def _up2(img: LoadedImage) -> np.ndarray:
    return np.kron(img.data, np.ones((2, 2), np.float32))


def _make_tree(root):
    rng = np.random.default_rng(0)
    (root / "sub").mkdir(parents=True)
    np.save(root / "a.npy", rng.random((1, 5, 5)).astype(np.float32))
    np.save(root / "sub" / "b.npy", rng.random((5, 5)).astype(np.float32))
    fits.PrimaryHDU(rng.random((4, 6)).astype(np.float32)).writeto(root / "sub" / "c.fits")
    Image.fromarray(rng.integers(0, 60000, (5, 5)).astype(np.uint16)).save(root / "d.png")
    tifffile.imwrite(root / "e.tif", rng.random((3, 3)).astype(np.float32))
    (root / "broken.npy").write_bytes(b"not a numpy file at all")
    (root / "notes.txt").write_text("hello")
    (root / ".DS_Store").write_bytes(b"\x00")


def test_process_folder_same_layout_and_broken_file_reported(tmp_path):
    _make_tree(tmp_path / "in")
    report = process_path(tmp_path / "in", tmp_path / "out", _up2, scale=2, progress=False)
    assert sorted(report.processed) == ["a.npy", "d.png", "e.tif", "sub/b.npy", "sub/c.fits"]
    skipped = dict(report.skipped)
    assert set(skipped) == {"broken.npy", "notes.txt"}
    assert "corrupt" in skipped["broken.npy"] and "extension" in skipped["notes.txt"]
    summary = report.summary().splitlines()
    assert summary[0] == "5 processed, 2 skipped" and len(summary) == 3
    assert any(line.strip().startswith("broken.npy:") for line in summary)
    assert np.load(tmp_path / "out" / "a.npy").shape == (1, 10, 10)
    assert read_image(tmp_path / "out" / "sub" / "c.fits").shape == (8, 12)
    assert np.array(Image.open(tmp_path / "out" / "d.png")).dtype == np.uint16
    assert not (tmp_path / "out" / "broken.npy").exists()


def test_process_single_file_and_output_checks(tmp_path):
    np.save(tmp_path / "x.npy", np.ones((3, 4), np.float32))
    rep = process_path(tmp_path / "x.npy", tmp_path / "y.npy", _up2, 2, progress=False)
    assert rep.processed == ["x.npy"] and np.load(tmp_path / "y.npy").shape == (6, 8)
    (tmp_path / "outdir").mkdir()
    process_path(tmp_path / "x.npy", tmp_path / "outdir", _up2, 2, progress=False)
    assert (tmp_path / "outdir" / "x.npy").is_file()
    with pytest.raises(LenssrError, match="format"):
        process_path(tmp_path / "x.npy", tmp_path / "y.fits", _up2, 2, progress=False)
    with pytest.raises(InputError, match="no such file"):
        process_path(tmp_path / "missing", tmp_path / "o", _up2, 2, progress=False)


def _zip(path, members: dict[str, bytes]):
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)


def test_process_zip_to_zip_with_broken_member_and_traversal(tmp_path):
    rng = np.random.default_rng(1)
    good = {f"LR/img_{i}.npy": _npy_bytes(rng.random((4, 4)).astype(np.float32)) for i in range(3)}
    buf = io.BytesIO()
    fits.PrimaryHDU(rng.random((3, 5)).astype(np.float32)).writeto(buf)
    members = dict(good)
    members["deep/f.fits"] = buf.getvalue()
    members["LR/bad.npy"] = b"\x93NUMPY garbage"
    members["../evil.npy"] = good["LR/img_0.npy"]
    members["/abs.npy"] = good["LR/img_0.npy"]
    members["__MACOSX/._img_0.npy"] = b"junk"
    _zip(tmp_path / "in.zip", members)
    report = process_path(tmp_path / "in.zip", tmp_path / "out.zip", _up2, 2, progress=False)
    assert sorted(report.processed) == sorted([*good, "deep/f.fits"])
    reasons = dict(report.skipped)
    assert set(reasons) == {"LR/bad.npy", "../evil.npy", "/abs.npy"}
    assert "traversal" in reasons["../evil.npy"] and "absolute" in reasons["/abs.npy"]
    with zipfile.ZipFile(tmp_path / "out.zip") as zf:
        names = sorted(zf.namelist())
        assert names == sorted([*good, "deep/f.fits"])
        out0 = np.load(io.BytesIO(zf.read("LR/img_0.npy")))
        assert out0.shape == (8, 8)
        assert read_image(zf.read("deep/f.fits"), "f.fits").shape == (6, 10)
    assert not (tmp_path / "evil.npy").exists()


def test_batch_fn_groups_equal_shapes_and_isolates_bad_image(tmp_path):
    root = tmp_path / "in"
    root.mkdir()
    for i in range(5):
        np.save(root / f"s{i}.npy", np.full((4, 4), float(i), np.float32))
    np.save(root / "big.npy", np.zeros((6, 6), np.float32))
    calls: list[int] = []

    def batch_fn(imgs):
        shapes = {im.data.shape for im in imgs}
        assert len(shapes) == 1  # groups hold one shape
        calls.append(len(imgs))
        if any(im.name == "s3.npy" for im in imgs):
            raise InputError("s3.npy", "model refused it")
        return [_up2(im) for im in imgs]

    rep = process_path(root, tmp_path / "out", None, 2, progress=False, batch_fn=batch_fn)
    assert sorted(rep.processed) == ["big.npy", "s0.npy", "s1.npy", "s2.npy", "s4.npy"]
    assert rep.skipped == [("s3.npy", "model refused it")]
    assert max(calls) == 5  # the five 4x4 images went in one batch first
    np.testing.assert_array_equal(np.load(tmp_path / "out" / "s2.npy"), np.full((8, 8), 2.0))


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04 this is not really a zip"])
def test_corrupt_or_empty_zip_raises_naming_it(tmp_path, content):
    (tmp_path / "bad.zip").write_bytes(content)
    with pytest.raises(InputError, match="bad.zip"):
        process_path(tmp_path / "bad.zip", tmp_path / "o.zip", _up2, 2, progress=False)


def test_zip_without_files_is_empty(tmp_path):
    with zipfile.ZipFile(tmp_path / "e.zip", "w") as zf:
        zf.writestr("folder/", b"")
    with pytest.raises(InputError, match="empty zip"):
        list(iter_inputs(tmp_path / "e.zip"))


def test_zip_bomb_refused_before_decompression():
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("bomb.npy", b"\x00" * (20 * 1024**2))
    raw = buf.getvalue()
    assert len(raw) < 100_000
    with pytest.raises(InputError, match="zip bomb"):
        zip_entries(raw, ZipLimits(), name="bomb.zip")
    with pytest.raises(InputError, match="zip bomb"):
        zip_entries(raw, ZipLimits(max_total_bytes=1024**2, max_ratio=1e9))
    many = io.BytesIO()
    with zipfile.ZipFile(many, "w") as zf:
        for i in range(5):
            zf.writestr(f"{i}.npy", b"x")
    with pytest.raises(InputError, match="more than 3"):
        zip_entries(many.getvalue(), ZipLimits(max_members=3))


def test_zip_entries_reports_unsafe_names_and_bad_crc():
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        zf.writestr("ok.npy", _npy_bytes(np.ones((2, 2), np.float32)))
        zf.writestr("a/../../x.npy", b"1")
        zf.writestr("readme.md", b"hi")
    raw = bytearray(buf.getvalue())
    entries = {e.name: e for e in zip_entries(bytes(raw))}
    assert entries["ok.npy"].data is not None and entries["ok.npy"].error is None
    assert entries["a/../../x.npy"].data is None and "traversal" in entries["a/../../x.npy"].error
    assert "extension" in entries["readme.md"].error
    # Flip a byte inside ok.npy's stored data: the CRC check marks only that member.
    pos = raw.find(b"\x93NUMPY") + 60
    raw[pos] ^= 0xFF
    entries = {e.name: e for e in zip_entries(bytes(raw))}
    assert entries["ok.npy"].data is None and "unreadable" in entries["ok.npy"].error


@pytest.mark.parametrize(
    "name,ok",
    [("a/b.npy", "a/b.npy"), ("./a//b.npy", "a/b.npy"), ("a\\b.npy", "a/b.npy"),
     ("../a.npy", None), ("/etc/x.npy", None), ("C:/x.npy", None), ("a/../../b", None)],
)  # fmt: skip
def test_sanitize_member_name(name, ok):
    if ok is None:
        with pytest.raises(ValueError):
            sanitize_member_name(name)
    else:
        assert sanitize_member_name(name) == ok
