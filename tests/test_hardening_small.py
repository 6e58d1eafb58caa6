"""Small fixes of the hardening issue: clear messages (corrupt PNG, tiny shapes), 16-bit
clipping notes, ``--conserve-flux`` BUNIT, output-path and option checks of ``lenssr upscale``,
OS clutter not counted, and ``lenssr models`` showing the cards' metrics."""

from __future__ import annotations

import io
import re

import numpy as np
import pytest
from astropy.io import fits
from PIL import Image

from lenssr.cli import main
from lenssr.errors import InputError, LenssrError
from lenssr.io import iter_inputs, process_path, read_image, write_image


def npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()


def png16(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr.astype(np.uint16)).save(buf, "PNG")
    return buf.getvalue()


@pytest.mark.parametrize(
    "raw",
    [
        b"\x89PNG\r\n\x1a\n" + bytes(range(256)),
        png16(np.random.default_rng(0).integers(0, 60000, (64, 64)))[:3000],  # cut in IDAT
        b"GIF89a...",
    ],
)
def test_corrupt_png_message_has_no_object_repr(raw: bytes) -> None:
    with pytest.raises(InputError) as exc:
        read_image(raw, name="scan.png")
    text = str(exc.value)
    assert text.startswith("scan.png: corrupt PNG file") or "not a PNG" in text, text
    assert " at 0x" not in text and "<" not in text and "\n" not in text


@pytest.mark.parametrize(("shape", "hw"), [((1, 1), "1x1"), ((1, 7), "1x7"), ((7, 1), "7x1"),
                                          ((1, 1, 1), "1x1"), ((1, 1, 9), "1x9")])  # fmt: skip
def test_tiny_images_say_they_are_too_small(shape: tuple[int, ...], hw: str) -> None:
    with pytest.raises(InputError, match=rf"image of {hw} pixels is too small: SR needs"):
        read_image(npy_bytes(np.ones(shape, np.float32)), name="t.npy")
    assert read_image(npy_bytes(np.ones((1, 2, 2), np.float32)), name="ok.npy").shape == (2, 2)


def test_16bit_png_clipping_is_a_note_with_the_way_out(tmp_path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.png").write_bytes(png16(np.full((4, 4), 60000)))
    (tmp_path / "in" / "b.png").write_bytes(png16(np.full((4, 4), 100)))

    def brighten(img):
        return img.data * 1.5  # a.png goes past 65535, b.png stays in range

    report = process_path(tmp_path / "in", tmp_path / "out", brighten, 1, progress=False)
    assert report.processed == ["a.png", "b.png"]
    assert [n for n, _ in report.notes] == ["a.png"]
    note = report.notes[0][1]
    assert "16 values outside 0..65535 clipped" in note and "FITS or a float32 TIFF" in note
    assert "a.png: warning: 16 values" in report.summary()
    assert np.asarray(Image.open(tmp_path / "out" / "a.png")).max() == 65535


def _fits(header: fits.Header, data: np.ndarray) -> bytes:
    buf = io.BytesIO()
    fits.PrimaryHDU(data, header=header).writeto(buf)
    return buf.getvalue()


def test_conserve_flux_rewrites_a_surface_brightness_bunit() -> None:
    data = np.random.default_rng(0).random((6, 6)).astype(np.float32) + 1
    h = fits.Header()
    h["CTYPE1"], h["CTYPE2"] = "RA---TAN", "DEC--TAN"
    h["CRVAL1"], h["CRVAL2"], h["CRPIX1"], h["CRPIX2"] = 150.0, 2.0, 3.5, 3.5
    h["CDELT1"], h["CDELT2"] = -0.05 / 3600, 0.05 / 3600
    h["BUNIT"] = "e-/s/arcsec^2"
    img = read_image(_fits(h, data), name="sb.fits")
    out = io.BytesIO()
    write_image(out, np.kron(data, np.ones((2, 2), np.float32)), img, 2, conserve_flux=True)
    back = read_image(out.getvalue(), name="o.fits")
    assert back.meta["header"]["BUNIT"] == "e-/s/(0.0025 arcsec2)"
    assert back.meta["header"]["LRPIXAR"] == pytest.approx(0.0025)
    # sum(values) * LR pixel area is the total flux in e-/s, as the unit says
    np.testing.assert_allclose(back.data.sum() * 0.0025, data.sum() * 0.0025, rtol=1e-5)

    h["BUNIT"] = "electron/s"  # already per pixel: dividing by s**2 keeps it right
    img = read_image(_fits(h, data), name="counts.fits")
    out = io.BytesIO()
    write_image(out, np.kron(data, np.ones((2, 2), np.float32)), img, 2, conserve_flux=True)
    assert read_image(out.getvalue(), name="o.fits").meta["header"]["BUNIT"] == "electron/s"

    bare = fits.Header()
    bare["BUNIT"] = "MJy/sr"  # no WCS: the pixel area is unknown
    img = read_image(_fits(bare, data), name="nowcs.fits")
    out = io.BytesIO()
    write_image(out, data, img, 1, conserve_flux=True)
    assert read_image(out.getvalue(), name="o.fits").meta["header"]["BUNIT"] == (
        "MJy per input pixel"
    )


def test_folder_input_refuses_a_file_like_output(tmp_path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.npy").write_bytes(npy_bytes(np.ones((4, 4), np.float32)))
    for name in ("o.npy", "o.zip", "o.fits"):
        with pytest.raises(LenssrError, match="must be a folder"):
            process_path(tmp_path / "in", tmp_path / name, lambda im: im.data, 1, progress=False)
        assert not (tmp_path / name).exists()


def test_hidden_files_and_macosx_are_not_inputs(tmp_path) -> None:
    root = tmp_path / "in"
    for name in ("a.npy", ".hidden.npy", ".git/b.npy", "__MACOSX/c.npy", "sub/d.npy"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(npy_bytes(np.ones((4, 4), np.float32)))
    assert [item.name for item in iter_inputs(root)] == ["a.npy", "sub/d.npy"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--tile", "0"], "--tile"),
        (["--tile", "-5"], "--tile"),
        (["--batch-size", "0"], "--batch-size"),
    ],
)
def test_upscale_refuses_bad_tile_and_batch_size(tmp_path, capsys, extra, message) -> None:
    src = tmp_path / "a.npy"
    src.write_bytes(npy_bytes(np.ones((8, 8), np.float32)))
    with pytest.raises(SystemExit) as exc:
        main(["upscale", str(src), "-o", str(tmp_path / "b.npy"), "--model", "bicubic", *extra])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "b.npy").exists()


def test_upscale_no_progress_flag(tmp_path, capsys) -> None:
    src = tmp_path / "a.npy"
    src.write_bytes(npy_bytes(np.ones((8, 8), np.float32)))
    out = tmp_path / "b.npy"
    with pytest.raises(SystemExit) as exc:
        main(["upscale", str(src), "-o", str(out), "--model", "bicubic", "--no-progress"])
    assert exc.value.code in (0, None)
    assert np.load(out).shape == (16, 16)
    assert capsys.readouterr().out.startswith("1 processed, 0 skipped")


def test_models_table_shows_the_cards_psnr_and_ssim(capsys) -> None:
    from lenssr.models import shipped_models

    with pytest.raises(SystemExit) as exc:
        main(["models"])
    assert exc.value.code in (0, None)
    out = capsys.readouterr().out
    lines = out.split("Shipped weights")[1].splitlines()
    header = lines[1]
    at = {key: header.index(key) for key in ("psnr", "ssim")}
    rows = {line.split()[0]: line for line in lines[3:] if line.strip()}
    assert set(rows) == set(shipped_models())
    for name, line in rows.items():
        psnr, ssim = (line[at[key] :].split()[0] for key in ("psnr", "ssim"))
        cols = line.split()
        assert re.fullmatch(r"\d+\.\d\d", psnr) and 20 < float(psnr) < 100, (name, cols)
        assert re.fullmatch(r"0\.\d{4}|1\.0000", ssim), (name, cols)


def test_upscale_max_pixels_skips_larger_files_unread(tmp_path, capsys) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "small.npy").write_bytes(npy_bytes(np.ones((8, 8), np.float32)))
    (tmp_path / "in" / "large.npy").write_bytes(npy_bytes(np.ones((16, 16), np.float32)))
    args = ["upscale", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--model", "bicubic"]
    with pytest.raises(SystemExit) as exc:
        main([*args, "-q", "--max-pixels", "100"])
    assert exc.value.code in (0, None)
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "1 processed, 1 skipped"
    assert out[1] == (
        "  large.npy: the .npy header declares 16x16 = 256 pixels, more than the limit of 100 "
        "(nothing was decoded)"
    )
