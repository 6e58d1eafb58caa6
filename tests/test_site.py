"""The static in-browser site (``lenssr export-site``): the exported folder, and end-to-end in
headless Chromium (Playwright, Debian's chromium) served by a plain static file server: a zip of
LR .npy and FITS files is dropped, the result zip downloaded and every output compared with
``lenssr upscale``'s; the page makes no request outside its own origin."""

from __future__ import annotations

import base64
import functools
import http.server
import io
import json
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest

from lenses import lens_image, npy_bytes
from lenssr.errors import LenssrError

#: Largest difference browser vs CLI, as a fraction of the CLI output's range.
PARITY = 1e-4


def fits_bytes(arr: np.ndarray, seed: int) -> bytes:
    """A FITS image with a celestial WCS (0.10" pixels) and, for odd seeds, a PSF keyword."""
    from astropy.io import fits

    hdr = fits.Header()
    hdr["CTYPE1"], hdr["CTYPE2"] = "RA---TAN", "DEC--TAN"
    hdr["CRVAL1"], hdr["CRVAL2"] = 150.1, 2.2
    hdr["CRPIX1"], hdr["CRPIX2"] = 38.0, 38.0
    hdr["CDELT1"], hdr["CDELT2"] = -0.1 / 3600, 0.1 / 3600
    hdr["BUNIT"] = "e-/s/arcsec2"
    hdr["OBJECT"] = (f"lens {seed}", "a test lens")
    if seed % 4 == 1:
        hdr["PSF_FWHM"] = (0.25, "arcsec")
    buf = io.BytesIO()
    fits.PrimaryHDU(arr, header=hdr).writeto(buf)
    return buf.getvalue()


def lr_zip(path: Path, n: int = 10, bad: bool = True) -> Path:
    """``n`` LR images (.npy and FITS alternating, 75x75 and one non-square), in two folders,
    plus a corrupt .npy and a text file when ``bad``."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for i in range(n):
            img = lens_image(i, (75, 75) if i != 2 else (61, 84))
            if i % 2:
                zf.writestr(f"LR/fits/lens_{i:03d}.fits", fits_bytes(img, i))
            else:
                zf.writestr(f"LR/npy/lens_{i:03d}.npy", npy_bytes(img))
        if bad:
            zf.writestr("LR/npy/broken.npy", b"\x93NUMPY garbage")
            zf.writestr("LR/readme.txt", b"not an image")
    return path


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from lenssr.site import export_site, vendor

    if vendor.missing():
        pytest.skip("the site's runtime files are not built (make site)")
    return export_site(tmp_path_factory.mktemp("site") / "site", ["hybrid"])


def test_export_writes_page_models_and_runtime(site: Path) -> None:
    for rel in ("index.html", "boot.js", "app.js", "worker.js", "lib/pipeline.js", "offline.js"):
        assert (site / rel).is_file(), rel
    web = Path(__file__).parents[1] / "src/lenssr/web/static"
    for rel in ("style.css", "ui.js"):  # shared with lenssr serve's page
        assert (site / rel).read_text() == (web / rel).read_text(), rel
    vendor_files = {p.name for p in (site / "vendor").iterdir()}
    assert {"ort.webgpu.bundle.min.mjs", "ort-wasm-simd-threaded.asyncify.wasm"} <= vendor_files
    assert "fflate.mjs" in vendor_files and "LICENSES.txt" in vendor_files
    manifest = json.loads((site / "models/models.json").read_text())
    (entry,) = manifest["models"]
    assert entry["name"] == "hybrid" and entry["scale"] == 2 and entry["conditioned"]
    assert entry["normalization"] == "noise"
    assert (site / "models" / entry["file"]).stat().st_size > 1_000_000
    # nothing on the page points outside the site
    html = (site / "index.html").read_text()
    assert "http://" not in html and "https://" not in html
    # written from lenssr serve's page: the site's parts in, the server's out
    assert 'id="runtime"' in html and 'id="images-box"' in html and 'src="boot.js"' in html
    assert 'id="cancel"' not in html and "/static/" not in html and "<!--" not in html


def test_export_without_runtime_files_says_how_to_build(tmp_path: Path, monkeypatch) -> None:
    from lenssr.site import export_site, vendor

    monkeypatch.setattr(vendor, "VENDOR", tmp_path / "empty")
    with pytest.raises(LenssrError, match="make site"):
        export_site(tmp_path / "out", ["hybrid"])
    assert not (tmp_path / "out").exists()


def test_export_site_cli_refuses_unknown_model(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from lenssr.cli import app

    res = CliRunner().invoke(app, ["export-site", "-o", str(tmp_path / "s"), "--models", "nope"])
    assert res.exit_code != 0


# ------------------------------------------------------------------------------------ browser


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def static_server(site: Path):
    """``site`` served by the standard library's plain static file server."""
    handler = functools.partial(_Quiet, directory=str(site))
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    thread.join(timeout=10)


@pytest.fixture
def page(browser, static_server: str):
    context = browser.new_context(viewport={"width": 1180, "height": 900}, accept_downloads=True)
    requests: list[str] = []
    context.on("request", lambda r: requests.append(r.url))
    pg = context.new_page()
    pg.requests = requests  # type: ignore[attr-defined]
    pg.errors = []  # type: ignore[attr-defined]
    pg.on("pageerror", lambda e: pg.errors.append(str(e)))
    pg.set_default_timeout(60_000)
    pg.goto(f"{static_server}/index.html")
    pg.wait_for_selector("#model option[value=hybrid]", state="attached")
    yield pg
    context.close()


def drop_file(page, path: Path) -> None:
    """Drop ``path`` on the drop zone as a browser's drag and drop would."""
    page.evaluate(
        """([name, b64]) => {
            const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
            const dt = new DataTransfer();
            dt.items.add(new File([bytes], name, {type: "application/zip"}));
            const zone = document.getElementById("drop");
            for (const type of ["dragenter", "dragover", "drop"]) {
                zone.dispatchEvent(new DragEvent(type, {dataTransfer: dt, bubbles: true,
                                                        cancelable: true}));
            }
        }""",
        [path.name, base64.b64encode(path.read_bytes()).decode()],
    )


def wait_done(page) -> str:
    page.wait_for_function(
        "() => /^(Done|Failed)/.test(document.getElementById('status').textContent)"
    )
    return page.text_content("#status")


def cli_upscale(src: Path, out: Path, *args: str) -> None:
    from typer.testing import CliRunner

    from lenssr.cli import app

    res = CliRunner().invoke(app, ["upscale", str(src), "-o", str(out), "-q", *args])
    assert res.exit_code == 0, res.output


def compare_with_cli(result: Path, cli: Path) -> list[str]:
    """Every image of ``cli`` has its twin in ``result``: same name, format and shape, pixels
    within :data:`PARITY` of the image range, FITS WCS and flux cards equal. Returns the names."""
    from lenssr.io import read_image

    with zipfile.ZipFile(result) as site_zip, zipfile.ZipFile(cli) as ref:
        names = ref.namelist()
        assert site_zip.namelist() == [*names, "report.json"]
        for name in names:
            got = read_image(site_zip.read(name), name=name)
            want = read_image(ref.read(name), name=name)
            assert got.fmt == want.fmt and got.data.shape == want.data.shape, name
            span = float(want.data.max() - want.data.min())
            diff = float(np.max(np.abs(got.data - want.data)))
            if want.fmt in ("png", "tiff"):
                # integer samples: the same rounding of values within PARITY, so at most 1 count
                assert got.meta["dtype"] == want.meta["dtype"], name
                assert diff <= max(PARITY * span, 1.0 if "int" in want.meta["dtype"] else 0.0)
            else:
                assert diff <= PARITY * span, f"{name}: {diff / span:.2e} of the range"
            if want.fmt == "npy":
                assert got.meta["shape"] == want.meta["shape"] and got.meta["dtype"] == "float32"
            if want.fmt == "fits":
                assert got.meta["hdu_index"] == want.meta["hdu_index"], name
                assert got.meta["gzip"] == want.meta["gzip"], name
                hg, hw = got.meta["header"], want.meta["header"]
                wcs = [k for k in hw if k.startswith(("CRPIX", "CDELT", "CD1_", "CD2_", "CRVAL"))]
                assert len(wcs) >= 6 or "CTYPE1" not in hw, name
                for key in wcs:
                    assert hg[key] == pytest.approx(hw[key], rel=1e-12), (name, key)
                for key in ("CTYPE1", "BUNIT", "OBJECT", "EXTNAME", "FLUXCONV", "SRSCALE"):
                    assert hg.get(key) == hw.get(key), (name, key)
                assert hg["BITPIX"] == hw["BITPIX"] == -32 and "BZERO" not in hg
                assert any("resampled x2" in h for h in hg["HISTORY"])
        return names


def test_drop_zip_download_equals_cli(page, static_server: str, tmp_path: Path) -> None:
    src = lr_zip(tmp_path / "lenses.zip", 10)
    drop_file(page, src)
    assert "lenses.zip" in page.text_content("#selection")
    page.click("#start")
    status = wait_done(page)
    assert status.startswith("Done: 10 images upscaled x2"), (status, page.errors)
    assert page.text_content("#skipped-title") == "2 files refused"
    refused = page.text_content("#skipped")
    assert "broken.npy" in refused and "readme.txt: not an image file" in refused
    # progress per image and the before/after sliders
    assert page.locator("#images li.done").count() == 10
    assert page.locator("#images li.refused").count() == 1
    page.wait_for_function(
        "() => { const im = [...document.querySelectorAll('.compare img')];"
        " return im.length === 20 && im.every(i => i.complete && i.naturalWidth > 0); }"
    )
    slider = page.locator(".compare input[type=range]").first
    slider.fill("30")
    assert "30%" in page.locator(".compare").first.get_attribute("style")
    with page.expect_download() as info:
        page.click("#download")
    assert info.value.suggested_filename == "lenses_sr.zip"
    result = tmp_path / "result.zip"
    info.value.save_as(result)

    cli = tmp_path / "cli.zip"
    cli_upscale(src, cli, "--model", "hybrid")
    names = compare_with_cli(result, cli)
    assert len(names) == 10
    report = json.loads(zipfile.ZipFile(result).read("report.json"))
    assert len(report["processed"]) == 10
    assert {s["name"] for s in report["skipped"]} == {"LR/npy/broken.npy", "LR/readme.txt"}

    # the page, its worker, the model and the runtime all came from the site itself
    assert any(u.endswith("/models/hybrid-x2.onnx") for u in page.requests)
    assert any(u.endswith(".wasm") for u in page.requests)
    foreign = [
        u for u in page.requests if not u.startswith((static_server + "/", "data:", "blob:"))
    ]
    assert foreign == []
    assert page.errors == []


def formats_zip(path: Path) -> tuple[Path, list[str]]:
    """Small LR images in every format the site reads, and the names it must refuse."""
    import gzip

    import tifffile
    from astropy.io import fits
    from PIL import Image

    def unit(seed: int, shape: tuple[int, int] = (40, 52)) -> np.ndarray:
        img = lens_image(seed, shape).astype(np.float64)
        return (img - img.min()) / (img.max() - img.min())

    def png(arr: np.ndarray) -> bytes:
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, format="PNG")
        return buf.getvalue()

    def tiff(arr: np.ndarray) -> bytes:
        buf = io.BytesIO()
        tifffile.imwrite(buf, arr, photometric="minisblack")
        return buf.getvalue()

    files: dict[str, bytes] = {}
    files["png/gray8.png"] = png(np.rint(20 + 200 * unit(20)).astype(np.uint8))
    files["png/gray16.png"] = png(np.rint(1000 + 40000 * unit(21)).astype(np.uint16))
    rgb = np.rint(30 + 180 * unit(22)).astype(np.uint8)
    files["png/gray_as_rgb.png"] = png(np.stack([rgb] * 3, axis=-1))
    colour = np.stack([rgb, rgb[::-1], rgb], axis=-1)
    files["png/colour.png"] = png(colour)
    files["tiff/u16.tif"] = tiff(np.rint(500 + 30000 * unit(23)).astype(np.uint16))
    files["tiff/f32.tiff"] = tiff((3.0 * unit(24, (45, 38)) - 0.5).astype(np.float32))
    files["fits/gz.fits.gz"] = gzip.compress(fits_bytes(lens_image(25, (40, 52)), 25))
    hdu = fits.PrimaryHDU((6000 * unit(26)).astype(np.float32))
    hdu.scale("int16", bzero=3000.0, bscale=0.25)
    buf = io.BytesIO()
    hdu.writeto(buf)
    files["fits/int16_scaled.fits"] = buf.getvalue()
    ext = fits.Header()
    ext["CTYPE1"], ext["CTYPE2"] = "RA---TAN", "DEC--TAN"
    ext["CRPIX1"], ext["CRPIX2"], ext["CRVAL1"], ext["CRVAL2"] = 20.5, 26.0, 10.0, -5.0
    ext["CD1_1"], ext["CD1_2"], ext["CD2_1"], ext["CD2_2"] = -2.0e-5, 1.0e-6, 1.0e-6, 2.0e-5
    ext["EXTNAME"] = "SCI"
    buf = io.BytesIO()
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(lens_image(27, (40, 52)), ext)]).writeto(buf)
    files["fits/extension.fits"] = buf.getvalue()
    files["npy/f64_fortran.npy"] = npy_bytes(
        np.asfortranarray(lens_image(28, (40, 52)).astype(np.float64))[None]
    )
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, raw in files.items():
            zf.writestr(name, raw)
    return path, ["png/colour.png"]


@pytest.mark.slow
def test_every_format_tiled_equals_cli(page, static_server: str, tmp_path: Path) -> None:
    src, refused = formats_zip(tmp_path / "formats.zip")
    page.goto(f"{static_server}/index.html?tile=24")
    page.wait_for_selector("#model option[value=hybrid]", state="attached")
    page.set_input_files("#files", str(src))
    page.click("#start")
    status = wait_done(page)
    assert status.startswith("Done: 9 images upscaled x2"), (status, page.errors)
    assert "colour image (channels differ)" in page.text_content("#skipped")
    with page.expect_download() as info:
        page.click("#download")
    result = tmp_path / "result.zip"
    info.value.save_as(result)
    cli = tmp_path / "cli.zip"
    cli_upscale(src, cli, "--model", "hybrid", "--tile", "24")
    names = compare_with_cli(result, cli)
    assert len(names) == 9 and not set(refused) & set(names)
    report = json.loads(zipfile.ZipFile(result).read("report.json"))
    assert report["tta"] is False and [s["name"] for s in report["skipped"]] == refused


@pytest.mark.slow
def test_opened_from_disk(browser, site: Path, tmp_path: Path) -> None:
    """``file://.../index.html`` runs from offline.js: no server, same results."""
    src = lr_zip(tmp_path / "disk.zip", 3, bad=False)
    context = browser.new_context(accept_downloads=True)
    requests: list[str] = []
    context.on("request", lambda r: requests.append(r.url))
    page = context.new_page()
    page.set_default_timeout(60_000)
    page.goto((site / "index.html").as_uri())
    page.wait_for_selector("#model option[value=hybrid]", state="attached")
    page.set_input_files("#files", str(src))
    page.click("#start")
    assert wait_done(page).startswith("Done: 3 images upscaled x2")
    with page.expect_download() as info:
        page.click("#download")
    result = tmp_path / "result.zip"
    info.value.save_as(result)
    context.close()
    cli = tmp_path / "cli.zip"
    cli_upscale(src, cli, "--model", "hybrid")
    assert len(compare_with_cli(result, cli)) == 3
    assert any(u.endswith("/offline.js") for u in requests)
    assert all(u.startswith(("file://", "blob:", "data:")) for u in requests), requests
