"""read_image / write_image: round trips for every format, WCS rescaling, and bad inputs."""

from __future__ import annotations

import gzip
import io
import pickle

import numpy as np
import pytest
import tifffile
from astropy.io import fits
from astropy.wcs import WCS
from PIL import Image

from lenssr.errors import InputError
from lenssr.io import LoadedImage, read_image, write_image


def _img(h: int = 9, w: int = 7, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(3.0, 1.5, (h, w)).astype(np.float32)


def _up(x: np.ndarray, s: int = 2) -> np.ndarray:
    return np.kron(x, np.ones((s, s), dtype=x.dtype))


# -------------------------------------------------------------------------------- npy


@pytest.mark.parametrize("shape", [(9, 7), (1, 9, 7), (9, 1, 7)])
def test_npy_round_trip_keeps_singleton_axes(tmp_path, shape):
    data = _img().reshape(shape).astype(np.float64)
    np.save(tmp_path / "a.npy", data)
    img = read_image(tmp_path / "a.npy")
    assert img.fmt == "npy" and img.data.shape == (9, 7) and img.data.dtype == np.float32
    np.testing.assert_allclose(img.data, data.reshape(9, 7), rtol=1e-6)
    write_image(tmp_path / "b.npy", _up(img.data), img, scale=2)
    out = np.load(tmp_path / "b.npy")
    expected = tuple(2 * n if n != 1 else 1 for n in shape)
    assert out.shape == expected and out.dtype == np.float32
    np.testing.assert_array_equal(out.reshape(18, 14), _up(img.data))


def test_npy_from_bytes_without_name_is_sniffed():
    buf = io.BytesIO()
    np.save(buf, _img())
    img = read_image(buf.getvalue())
    assert img.fmt == "npy" and img.shape == (9, 7)


def test_pickled_npy_refused(tmp_path):
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    with pytest.raises(InputError, match="pickled .npy files are refused"):
        read_image(tmp_path / "obj.npy")
    (tmp_path / "p.npy").write_bytes(pickle.dumps(np.zeros((3, 3))))
    with pytest.raises(InputError, match="pickled .npy files are refused"):
        read_image(tmp_path / "p.npy")


@pytest.mark.parametrize("shape", [(5,), (2, 5, 5), (3, 4, 5, 6)])
def test_npy_wrong_dimensionality_names_the_shape(tmp_path, shape):
    np.save(tmp_path / "x.npy", np.zeros(shape, np.float32))
    with pytest.raises(InputError, match=r"2-D image.*" + str(shape).replace("(", r"\(")[:4]):
        read_image(tmp_path / "x.npy")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_pixels_refused(tmp_path, bad):
    x = _img()
    x[2, 3] = bad
    np.save(tmp_path / "x.npy", x)
    with pytest.raises(InputError, match="NaN or infinite"):
        read_image(tmp_path / "x.npy")


@pytest.mark.parametrize("name", ["e.npy", "e.fits", "e.png", "e.tif"])
def test_empty_file(tmp_path, name):
    (tmp_path / name).write_bytes(b"")
    with pytest.raises(InputError, match="empty file") as exc:
        read_image(tmp_path / name)
    assert name in str(exc.value)


@pytest.mark.parametrize("name", ["c.npy", "c.fits", "c.fits.gz", "c.png", "c.tiff"])
def test_corrupt_file(tmp_path, name):
    (tmp_path / name).write_bytes(b"\x00garbage\xff" * 50)
    with pytest.raises(InputError, match="corrupt") as exc:
        read_image(tmp_path / name)
    assert "\n" not in str(exc.value) and name in str(exc.value)


def test_truncated_npy_is_corrupt(tmp_path):
    buf = io.BytesIO()
    np.save(buf, _img())
    (tmp_path / "t.npy").write_bytes(buf.getvalue()[:-40])
    with pytest.raises(InputError, match="corrupt"):
        read_image(tmp_path / "t.npy")


def test_unknown_extension_and_missing_file(tmp_path):
    (tmp_path / "x.jpg").write_bytes(b"abc")
    with pytest.raises(InputError, match="unknown extension .jpg"):
        read_image(tmp_path / "x.jpg")
    with pytest.raises(InputError, match="no such file"):
        read_image(tmp_path / "nothere.npy")


# ------------------------------------------------------------------------------- FITS


def _wcs_header(kind: str) -> fits.Header:
    h = fits.Header()
    h["CTYPE1"], h["CTYPE2"] = "RA---TAN", "DEC--TAN"
    h["CRVAL1"], h["CRVAL2"] = 150.1, 2.2
    h["CRPIX1"], h["CRPIX2"] = 4.3, 5.7
    h["BUNIT"] = "e-/s/arcsec^2"
    h["OBJECT"] = "lens"
    th, d = np.deg2rad(25.0), 0.05 / 3600
    if kind == "cd":
        h["CD1_1"], h["CD1_2"] = -d * np.cos(th), d * np.sin(th)
        h["CD2_1"], h["CD2_2"] = d * np.sin(th), d * np.cos(th)
    else:
        h["CDELT1"], h["CDELT2"] = -d, d
        h["PC1_1"], h["PC1_2"] = np.cos(th), -np.sin(th)
        h["PC2_1"], h["PC2_2"] = np.sin(th), np.cos(th)
    return h


def _write_fits(path, data, header, compressed=False, gz=False):
    if compressed:
        hdul = fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(data, header=header)])
    else:
        hdul = fits.HDUList([fits.PrimaryHDU(data, header=header)])
    buf = io.BytesIO()
    hdul.writeto(buf)
    raw = gzip.compress(buf.getvalue()) if gz else buf.getvalue()
    path.write_bytes(raw)


def _assert_same_sky(h_in: fits.Header, h_out: fits.Header, s: int, shape) -> None:
    w_in, w_out = WCS(h_in), WCS(h_out)
    ys, xs = np.mgrid[0 : shape[0] : 2, 0 : shape[1] : 3]
    xs, ys = xs.ravel().astype(float), ys.ravel().astype(float)
    sky_in = w_in.pixel_to_world(xs, ys)
    sky_out = w_out.pixel_to_world((xs + 0.5) * s - 0.5, (ys + 0.5) * s - 0.5)
    assert np.max(sky_in.separation(sky_out).arcsec) < 1e-6
    # ... and a half-pixel offset would be visible: the check has teeth.
    wrong = w_out.pixel_to_world(xs * s, ys * s)
    assert np.min(sky_in.separation(wrong).arcsec) > 1e-3


@pytest.mark.parametrize("kind", ["cd", "cdelt"])
@pytest.mark.parametrize(
    "name,compressed,gz",
    [("a.fits", False, False), ("a.fits.gz", False, True), ("a.fz", True, False)],
)
def test_fits_round_trip_rescales_wcs(tmp_path, kind, name, compressed, gz):
    data, hdr = _img(12, 10), _wcs_header(kind)
    _write_fits(tmp_path / name, data, hdr, compressed=compressed, gz=gz)
    img = read_image(tmp_path / name)
    assert img.fmt == "fits" and img.meta["compressed"] == compressed and img.meta["gzip"] == gz
    np.testing.assert_allclose(img.data, data, atol=0.1 if compressed else 0)  # RICE is lossy
    s = 2
    out_path = tmp_path / ("out_" + name)
    write_image(out_path, _up(img.data), img, scale=s, history="lenssr test x2")
    raw = out_path.read_bytes()
    assert raw.startswith(b"\x1f\x8b") == gz
    back = read_image(out_path)
    assert back.meta["compressed"] == compressed and back.data.shape == (24, 20)
    np.testing.assert_array_equal(back.data, _up(img.data))  # float output is lossless
    h = back.meta["header"]
    assert h["NAXIS1"] == 20 and h["NAXIS2"] == 24
    assert h["BUNIT"] == "e-/s/arcsec^2" and h["OBJECT"] == "lens"
    assert h["FLUXCONV"] == "surface brightness"
    assert "lenssr test x2" in str(h["HISTORY"])
    assert h["CRPIX1"] == pytest.approx((4.3 - 0.5) * 2 + 0.5)
    if kind == "cd":
        assert h["CD1_1"] == pytest.approx(img.meta["header"]["CD1_1"] / 2)
    else:
        assert h["CDELT2"] == pytest.approx(0.025 / 3600)
        assert h["PC1_2"] == pytest.approx(img.meta["header"]["PC1_2"])
    _assert_same_sky(img.meta["header"], h, s, data.shape)


def test_fits_conserve_flux_divides_by_s2_and_states_the_unit(tmp_path):
    data = _img(6, 6)
    _write_fits(tmp_path / "a.fits", data, _wcs_header("cd"))
    img = read_image(tmp_path / "a.fits")
    write_image(tmp_path / "b.fits", _up(data, 3), img, scale=3, conserve_flux=True)
    back = read_image(tmp_path / "b.fits")
    np.testing.assert_allclose(back.data.sum(), data.sum(), rtol=1e-5)
    # no longer a surface brightness: flux over the 0.05" x 0.05" input pixel's area
    assert back.meta["header"]["BUNIT"] == "e-/s/(0.0025 arcsec2)"
    assert back.meta["header"]["FLUXCONV"] == "flux"


def test_fits_integer_bscale_data_read_as_physical_float(tmp_path):
    raw = np.arange(20, dtype=np.int16).reshape(4, 5)
    hdu = fits.PrimaryHDU(raw)
    hdu.header["BSCALE"], hdu.header["BZERO"] = 0.5, 100.0
    hdu.writeto(tmp_path / "i.fits")
    img = read_image(tmp_path / "i.fits")
    np.testing.assert_allclose(img.data, raw * 0.5 + 100.0)
    write_image(tmp_path / "o.fits", img.data, img)
    back = fits.getdata(tmp_path / "o.fits")
    assert back.dtype.kind == "f"
    np.testing.assert_allclose(back, raw * 0.5 + 100.0)


def test_fits_image_in_extension_and_bad_shapes(tmp_path):
    data = _img(5, 4)
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(data, name="SCI")]).writeto(tmp_path / "e.fits")
    img = read_image(tmp_path / "e.fits")
    np.testing.assert_array_equal(img.data, data)
    write_image(tmp_path / "o.fits", _up(data), img, scale=2)
    with fits.open(tmp_path / "o.fits") as hdul:
        assert hdul[1].data.shape == (10, 8) and hdul[1].header["EXTNAME"] == "SCI"
    fits.PrimaryHDU(np.zeros((2, 3, 4), np.float32)).writeto(tmp_path / "cube.fits")
    with pytest.raises(InputError, match=r"2-D image.*\(2, 3, 4\)"):
        read_image(tmp_path / "cube.fits")
    fits.PrimaryHDU().writeto(tmp_path / "nodata.fits")
    with pytest.raises(InputError, match="no image data"):
        read_image(tmp_path / "nodata.fits")


# -------------------------------------------------------------------------- PNG / TIFF


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_png_round_trip_keeps_bit_depth(tmp_path, dtype):
    top = np.iinfo(dtype).max
    data = np.random.default_rng(1).integers(0, top, (9, 7)).astype(dtype)
    Image.fromarray(data).save(tmp_path / "a.png")
    img = read_image(tmp_path / "a.png")
    assert img.meta["dtype"] == np.dtype(dtype).name and img.data.dtype == np.float32
    np.testing.assert_array_equal(img.data, data.astype(np.float32))  # no 8-bit quantisation
    result = _up(img.data).astype(np.float32)
    result[0, 0], result[0, 1], result[1, 0] = -5.0, top + 1000.0, 10.6
    write_image(tmp_path / "b.png", result, img, scale=2)
    back = np.array(Image.open(tmp_path / "b.png"))
    assert back.dtype == dtype and back.shape == (18, 14)
    assert back[0, 0] == 0 and back[0, 1] == top and back[1, 0] == 11  # clipped and rounded
    np.testing.assert_array_equal(back[2:, 2:], _up(data)[2:, 2:])


def test_png_rgb_equal_channels_ok_colour_refused(tmp_path):
    g = np.random.default_rng(2).integers(0, 255, (6, 5)).astype(np.uint8)
    Image.fromarray(np.stack([g, g, g], -1)).save(tmp_path / "gray.png")
    np.testing.assert_array_equal(read_image(tmp_path / "gray.png").data, g)
    rgb = np.stack([g, g, 255 - g], -1)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    with pytest.raises(InputError, match="colour image"):
        read_image(tmp_path / "rgb.png")


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_tiff_round_trip(tmp_path, dtype):
    rng = np.random.default_rng(3)
    if np.issubdtype(dtype, np.integer):
        data = rng.integers(0, np.iinfo(dtype).max, (9, 7)).astype(dtype)
    else:
        data = rng.normal(0, 1e-3, (9, 7)).astype(dtype)
    tifffile.imwrite(tmp_path / "a.tif", data)
    img = read_image(tmp_path / "a.tif")
    np.testing.assert_array_equal(img.data, data.astype(np.float32))
    write_image(tmp_path / "b.tif", _up(img.data) + 0.3, img, scale=2)
    back = tifffile.imread(tmp_path / "b.tif")
    assert back.dtype == dtype and back.shape == (18, 14)
    if dtype == np.float32:
        np.testing.assert_allclose(back, _up(data) + np.float32(0.3), rtol=1e-6)
    else:
        np.testing.assert_array_equal(back, _up(data))  # +0.3 rounds back


def test_tiff_multipage_and_rgb(tmp_path):
    tifffile.imwrite(
        tmp_path / "stack.tif", np.zeros((3, 5, 5), np.float32), photometric="minisblack"
    )
    with pytest.raises(InputError, match="2-D image"):
        read_image(tmp_path / "stack.tif")
    g = np.arange(30, dtype=np.uint8).reshape(5, 6)
    tifffile.imwrite(tmp_path / "rgb.tif", np.stack([g, g, g], -1), photometric="rgb")
    np.testing.assert_array_equal(read_image(tmp_path / "rgb.tif").data, g)


def test_write_refuses_non_finite_result_and_writes_to_buffer(tmp_path):
    np.save(tmp_path / "a.npy", _img())
    img = read_image(tmp_path / "a.npy")
    with pytest.raises(InputError, match="NaN"):
        write_image(tmp_path / "b.npy", np.full((18, 14), np.nan, np.float32), img, scale=2)
    buf = io.BytesIO()
    write_image(buf, img.data * 2, img)
    np.testing.assert_allclose(np.load(io.BytesIO(buf.getvalue())), img.data * 2)
    assert isinstance(img, LoadedImage)


def test_fits_sip_distortion_rescaled(tmp_path):
    h = _wcs_header("cd")
    h["CTYPE1"], h["CTYPE2"] = "RA---TAN-SIP", "DEC--TAN-SIP"
    h["A_ORDER"], h["B_ORDER"] = 2, 2
    h["A_2_0"], h["A_1_1"], h["B_0_2"], h["B_1_1"] = 2e-3, -1e-3, 1.5e-3, 5e-4
    data = _img(16, 14)
    _write_fits(tmp_path / "s.fits", data, h)
    img = read_image(tmp_path / "s.fits")
    write_image(tmp_path / "o.fits", np.kron(data, np.ones((3, 3), np.float32)), img, scale=3)
    h_out = read_image(tmp_path / "o.fits").meta["header"]
    assert h_out["A_2_0"] == pytest.approx(2e-3 / 3)
    w_in, w_out = WCS(img.meta["header"]), WCS(h_out)
    assert w_out.sip is not None
    xs, ys = np.meshgrid(np.arange(0, 14, 3.0), np.arange(0, 16, 3.0))
    ra0, dec0 = w_in.all_pix2world(xs, ys, 0)
    ra1, dec1 = w_out.all_pix2world((xs + 0.5) * 3 - 0.5, (ys + 0.5) * 3 - 0.5, 0)
    np.testing.assert_allclose(ra1, ra0, atol=1e-10)
    np.testing.assert_allclose(dec1, dec0, atol=1e-10)
