"""upscale_path on folders, FITS and zips, and the ``lenssr upscale`` command."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS

from lenssr.cli import main
from lenssr.errors import LenssrError
from lenssr.inference.upscale import upscale_path


def _image(seed: int, shape: tuple[int, int] = (12, 10)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.random(shape) * 40 + 5).astype(np.float32)


def _fits_bytes(data: np.ndarray) -> bytes:
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [150.1, 2.2]
    w.wcs.crpix = [8.0, 5.0]
    w.wcs.cdelt = [-0.1 / 3600, 0.1 / 3600]
    hdu = fits.PrimaryHDU(data, header=w.to_header())
    hdu.header["BUNIT"] = "e-/s/arcsec2"
    buf = io.BytesIO()
    hdu.writeto(buf)
    return buf.getvalue()


def test_folder_of_npy(tmp_path) -> None:
    src = tmp_path / "LR"
    (src / "sub").mkdir(parents=True)
    images = {"a.npy": _image(0), "b.npy": _image(1), "sub/c.npy": _image(2, (9, 7))}
    for name, data in images.items():
        np.save(src / name, data)
    report = upscale_path(src, tmp_path / "SR", model="bicubic", device="cpu", progress=False)
    assert sorted(report.processed) == sorted(images) and not report.skipped
    for name, data in images.items():
        out = np.load(tmp_path / "SR" / name)
        assert out.shape == (2 * data.shape[0], 2 * data.shape[1])
        assert abs(out.mean() - data.mean()) < 0.05 * data.mean()  # same units (surface brightness)


def test_fits_wcs_and_history(tmp_path) -> None:
    data = _image(3, (15, 11))
    src = tmp_path / "lens.fits"
    src.write_bytes(_fits_bytes(data))
    report = upscale_path(
        src, tmp_path / "lens_sr.fits", model="bicubic", scale=4, device="cpu", progress=False
    )
    assert report.processed == ["lens.fits"]
    with fits.open(tmp_path / "lens_sr.fits") as hdul:
        out, header = hdul[0].data, hdul[0].header
    assert out.shape == (60, 44)
    history = " ".join(str(h) for h in header["HISTORY"])
    assert "bicubic" in history and "x4" in history
    # the same sky position sits at the same physical place: LR pixel centre (5, 7) (0-based x, y)
    # covers HR pixels 20..23 x 28..31, whose centre is (21.5, 29.5)
    sky_lr = WCS(_fits_header(data)).pixel_to_world(5, 7)
    sky_hr = WCS(header).pixel_to_world(21.5, 29.5)
    assert sky_lr.separation(sky_hr).arcsec < 1e-3
    assert abs(WCS(header).proj_plane_pixel_scales()[0].to_value("arcsec") - 0.025) < 1e-9


def _fits_header(data: np.ndarray) -> fits.Header:
    return fits.open(io.BytesIO(_fits_bytes(data)))[0].header


def test_zip_with_corrupt_member(tmp_path) -> None:
    src = tmp_path / "batch.zip"
    with zipfile.ZipFile(src, "w") as zf:
        for i in range(3):
            buf = io.BytesIO()
            np.save(buf, _image(i))
            zf.writestr(f"LR/img{i}.npy", buf.getvalue())
        zf.writestr("LR/broken.npy", b"this is not a numpy file")
        zf.writestr("LR/lens.fits", _fits_bytes(_image(9)))
    out = tmp_path / "out.zip"
    report = upscale_path(src, out, model="bicubic", device="cpu", progress=False)
    assert sorted(report.processed) == ["LR/img0.npy", "LR/img1.npy", "LR/img2.npy", "LR/lens.fits"]
    assert [name for name, _ in report.skipped] == ["LR/broken.npy"]
    assert "LR/broken.npy" in report.summary()
    with zipfile.ZipFile(out) as zf:
        names = sorted(zf.namelist())
        assert names == sorted(report.processed)
        arr = np.load(io.BytesIO(zf.read("LR/img1.npy")))
    assert arr.shape == (24, 20)


def test_onnxruntime_backend_matches_torch(tmp_path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    for i in range(2):
        np.save(src / f"{i}.npy", _image(i, (16, 12)))
    upscale_path(src, tmp_path / "t", model="bicubic", device="cpu", progress=False)
    report = upscale_path(
        src, tmp_path / "o", model="bicubic", device="cpu", backend="onnxruntime", progress=False
    )
    assert len(report.processed) == 2
    for i in range(2):
        a, b = np.load(tmp_path / "t" / f"{i}.npy"), np.load(tmp_path / "o" / f"{i}.npy")
        assert np.abs(a - b).max() < 1e-4


def test_missing_input_and_bad_backend(tmp_path) -> None:
    with pytest.raises(LenssrError, match="input not found"):
        upscale_path(tmp_path / "nope", tmp_path / "out", model="bicubic", progress=False)
    np.save(tmp_path / "x.npy", _image(0))
    with pytest.raises(LenssrError, match="backend"):
        upscale_path(tmp_path / "x.npy", tmp_path / "y.npy", model="bicubic", backend="tf")


def test_cli_upscale(tmp_path, capsys) -> None:
    np.save(tmp_path / "a.npy", _image(0))
    (tmp_path / "bad.npy").write_bytes(b"garbage")
    with pytest.raises(SystemExit) as exc:
        main(
            [
                "upscale",
                str(tmp_path / "a.npy"),
                "-o",
                str(tmp_path / "a_sr.npy"),
                "--model",
                "bicubic",
                "--device",
                "cpu",
                "-q",
            ]
        )
    assert exc.value.code in (0, None)
    assert "1 processed, 0 skipped" in capsys.readouterr().out
    assert np.load(tmp_path / "a_sr.npy").shape == (24, 20)
    with pytest.raises(SystemExit) as exc:
        main(
            [
                "upscale",
                str(tmp_path / "bad.npy"),
                "-o",
                str(tmp_path / "bad_sr.npy"),
                "--model",
                "bicubic",
                "-q",
            ]
        )
    assert exc.value.code == 1
    assert "0 processed, 1 skipped" in capsys.readouterr().out


def test_cli_upscale_missing_input_is_one_line(tmp_path, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["upscale", str(tmp_path / "missing"), "-o", str(tmp_path / "o"), "-q"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: input not found") and "\n" not in err
    assert "Traceback" not in err
