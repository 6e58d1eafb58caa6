"""End-to-end tests of the web page in headless Chromium (Playwright) against a real uvicorn
server on a free localhost port: upload by file input and by drag and drop, progress, previews,
download equal to the CLI's result, malicious uploads refused on the page. Screenshots of the
page go to a temporary folder, or to ``$LENSSR_SCREENSHOTS``."""

from __future__ import annotations

import base64
import io
import os
import tempfile
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from lenses import lens_image, npy_bytes
from lenssr.web import Settings, create_app
from lenssr.web.local import free_port

pytestmark = [pytest.mark.browser, pytest.mark.filterwarnings("ignore::DeprecationWarning")]

# Screenshots go to a temporary folder; LENSSR_SCREENSHOTS=docs/screenshots refreshes the
# README's pictures (so an ordinary test run leaves the tracked files alone).
SHOTS = Path(os.environ.get("LENSSR_SCREENSHOTS") or tempfile.mkdtemp(prefix="lenssr-shots-"))
SHOTS.mkdir(parents=True, exist_ok=True)


def fits_bytes(arr: np.ndarray) -> bytes:
    from astropy.io import fits

    hdr = fits.Header()
    hdr["CTYPE1"], hdr["CTYPE2"] = "RA---TAN", "DEC--TAN"
    hdr["CRPIX1"], hdr["CRPIX2"], hdr["CDELT1"], hdr["CDELT2"] = 38.0, 38.0, -2.8e-5, 2.8e-5
    buf = io.BytesIO()
    fits.PrimaryHDU(arr, header=hdr).writeto(buf)
    return buf.getvalue()


def lr_zip(path: Path, n: int = 20) -> Path:
    """``n`` 75x75 LR images, .npy and FITS alternating, in two folders."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for i in range(n):
            img = lens_image(i)
            if i % 2:
                zf.writestr(f"LR/fits/lens_{i:03d}.fits", fits_bytes(img))
            else:
                zf.writestr(f"LR/npy/lens_{i:03d}.npy", npy_bytes(img))
    return path


def evil_zip(path: Path, marker: Path) -> Path:
    """Path-traversal names and a pickle payload that would create ``marker`` if loaded."""

    class Evil:
        def __reduce__(self):
            return (Path.touch, (marker,))

    payload = io.BytesIO()
    np.save(payload, np.array([Evil()], dtype=object), allow_pickle=True)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("../../../tmp/escape.npy", npy_bytes(lens_image(0)))
        zf.writestr("ok/../../up.fits", fits_bytes(lens_image(1)))
        zf.writestr("payload.npy", payload.getvalue())
    return path


def bomb_zip(path: Path, size_mb: int = 24) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf, zf.open("x.npy", "w") as fh:
        for _ in range(size_mb):
            fh.write(bytes(1024 * 1024))
    return path


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    import uvicorn

    port = free_port()
    work = tmp_path_factory.mktemp("web-jobs")
    app = create_app(Settings(model="bicubic", port=port, work_dir=work, previews=6))
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    end = time.time() + 20
    while not srv.started and time.time() < end:
        time.sleep(0.05)
    assert srv.started, "uvicorn did not start"
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def page(browser, server):
    context = browser.new_context(viewport={"width": 1180, "height": 900}, accept_downloads=True)
    pg = context.new_page()
    pg.set_default_timeout(30_000)
    pg.goto(server)
    pg.wait_for_selector("#model option[value=bicubic]", state="attached")
    yield pg
    context.close()


def wait_done(page, timeout: float = 30_000) -> str:
    page.wait_for_function(
        "() => /^(Done|Failed)/.test(document.getElementById('status').textContent)",
        timeout=timeout,
    )
    return page.text_content("#status")


def check_against_cli(result_zip: Path, input_zip: Path, tmp: Path, n: int) -> None:
    """Every output is twice the input's size and byte-identical to ``upscale_path``'s."""
    from lenssr.inference import upscale_path
    from lenssr.io import read_image

    cli = tmp / "cli.zip"
    upscale_path(input_zip, cli, model="bicubic", scale=2, progress=False, batch_size=1)
    with (
        zipfile.ZipFile(result_zip) as web,
        zipfile.ZipFile(cli) as ref,
        zipfile.ZipFile(input_zip) as src,
    ):
        assert web.namelist() == [*ref.namelist(), "report.json"]
        assert ref.namelist() == src.namelist()
        assert len(ref.namelist()) == n
        for name in ref.namelist():
            lr = read_image(src.read(name), name=name).data
            sr = read_image(web.read(name), name=name).data
            assert sr.shape == (2 * lr.shape[0], 2 * lr.shape[1])
            assert web.read(name) == ref.read(name), name


def test_upload_zip_progress_previews_download(page, tmp_path: Path) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "web-empty.png"), full_page=True)
    src = lr_zip(tmp_path / "lenses.zip", 20)
    page.set_input_files("#files", str(src))
    assert "lenses.zip" in page.text_content("#selection")
    page.select_option("#model", "bicubic")
    page.select_option("#scale", "2")
    page.click("#start")
    status = wait_done(page)
    assert status.startswith("Done: 20 images upscaled x2"), status
    assert page.get_attribute("#bar-fill", "style") == "width: 100%;"
    # Previews: the comparison sliders render server-side PNGs of SR size.
    page.wait_for_function(
        "() => [...document.querySelectorAll('.compare img')]"
        ".every(i => i.complete && i.naturalWidth === 150)"
    )
    assert page.locator(".compare").count() == 6
    slider = page.locator(".compare input[type=range]").first
    slider.fill("30")
    assert "30%" in page.locator(".compare").first.get_attribute("style")
    page.screenshot(path=str(SHOTS / "web-done.png"), full_page=True)
    with page.expect_download() as info:
        page.click("#download")
    download = info.value
    assert download.suggested_filename == "lenses_sr.zip"
    result = tmp_path / "result.zip"
    download.save_as(result)
    check_against_cli(result, src, tmp_path, 20)


def test_drop_zone_with_datatransfer(page, tmp_path: Path) -> None:
    src = lr_zip(tmp_path / "dropped.zip", 6)
    b64 = base64.b64encode(src.read_bytes()).decode()
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
        ["dropped.zip", b64],
    )
    assert "dropped.zip" in page.text_content("#selection")
    page.click("#start")
    assert wait_done(page).startswith("Done: 6 images")
    with page.expect_download() as info:
        page.click("#download")
    info.value.save_as(tmp_path / "r.zip")
    check_against_cli(tmp_path / "r.zip", src, tmp_path, 6)


def test_malicious_uploads_refused_then_good_job_works(page, tmp_path: Path) -> None:
    page.set_input_files("#files", str(bomb_zip(tmp_path / "bomb.zip")))
    page.click("#start")
    assert wait_done(page) == "Failed"
    message = page.text_content("#message")
    assert "Upload refused" in message and "zip bomb" in message
    page.screenshot(path=str(SHOTS / "web-refused-bomb.png"), full_page=True)

    marker = tmp_path / "pwned"
    page.set_input_files("#files", str(evil_zip(tmp_path / "evil.zip", marker)))
    page.click("#start")
    assert wait_done(page) == "Failed"
    assert "no image could be processed" in page.text_content("#message")
    refused = page.text_content("#skipped")
    assert "path traversal" in refused and "pickled .npy files are refused" in refused
    assert page.text_content("#skipped-title") == "3 files refused"
    assert not marker.exists() and not Path("/tmp/escape.npy").exists()
    page.screenshot(path=str(SHOTS / "web-refused-evil.png"), full_page=True)

    page.set_input_files("#files", str(lr_zip(tmp_path / "good.zip", 4)))
    page.click("#start")
    assert wait_done(page).startswith("Done: 4 images")
    assert page.is_hidden("#message") and page.is_hidden("#skipped-box")


def test_progress_is_shown_while_running(page, tmp_path: Path) -> None:
    src = lr_zip(tmp_path / "many.zip", 160)
    page.set_input_files("#files", str(src))
    page.check("#tta")
    page.click("#start")
    page.wait_for_function(
        "() => /^(Upscaling.*: [1-9]\\d* \\/|Done)/"
        ".test(document.getElementById('status').textContent)"
    )
    status = page.text_content("#status")
    if status.startswith("Upscaling"):  # caught mid-job: the bar and counter are live
        assert "with bicubic" in status and "/ 160" in status
        page.screenshot(path=str(SHOTS / "web-progress.png"), full_page=True)
    assert wait_done(page).startswith("Done: 160 images")


def test_reload_finds_the_job_and_cancel_stops_it(page, server: str, tmp_path: Path) -> None:
    import httpx

    page.set_input_files("#files", str(lr_zip(tmp_path / "slow.zip", 400)))
    page.check("#tta")
    page.click("#start")
    page.wait_for_function("() => /^Upscaling/.test(document.getElementById('status').textContent)")
    job_id = page.evaluate("() => location.hash").removeprefix("#job=")
    assert len(job_id) == 32
    page.reload()  # a reload (or a reopened tab with this URL) finds the running job
    page.wait_for_function("() => /^Upscaling/.test(document.getElementById('status').textContent)")
    assert page.is_visible("#cancel")
    page.click("#cancel")
    page.wait_for_function("() => document.getElementById('status').textContent === 'Cancelled'")
    assert "cancelled" in page.text_content("#message")
    assert page.evaluate("() => location.hash") == ""
    end = time.time() + 3
    while (r := httpx.get(f"{server}/api/jobs/{job_id}", timeout=5)).status_code != 410:
        assert time.time() < end, r.json()  # stopped and deleted within a second or two
        time.sleep(0.1)
    page.goto(f"{server}/#job={job_id}")
    assert wait_done(page) == "Failed"
    assert "expired or was cancelled" in page.text_content("#message")


def test_download_of_an_expired_result_says_so(page, server: str, tmp_path: Path) -> None:
    import httpx

    page.set_input_files("#files", str(lr_zip(tmp_path / "two.zip", 2)))
    page.click("#start")
    assert wait_done(page).startswith("Done: 2 images")
    job_id = page.evaluate("() => location.hash").removeprefix("#job=")
    # The job goes away on the server (as at its TTL) while the page still shows it.
    assert httpx.delete(f"{server}/api/jobs/{job_id}", timeout=10).status_code == 200
    page.click("#download")
    page.wait_for_function("() => document.getElementById('status').textContent === 'Failed'")
    assert "expired or was cancelled" in page.text_content("#message")
    assert page.is_hidden("#download")


def test_sigma_maps_are_shown_beside_the_slider(page, tmp_path: Path) -> None:
    """With "1-sigma maps" checked (a model with a sigma head), each preview shows the SR
    image's sigma map beside the slider, at SR size, labelled with its display range."""
    src = tmp_path / "two.zip"
    with zipfile.ZipFile(src, "w") as zf:
        for i in range(2):
            zf.writestr(f"lens{i}.npy", npy_bytes(lens_image(i, (30, 30))))
    page.select_option("#model", "hybrid")
    assert page.is_enabled("#uncertainty")
    page.check("#uncertainty")
    page.set_input_files("#files", str(src))
    page.click("#start")
    status = wait_done(page, timeout=240_000)  # loads the hybrid model first
    assert status.startswith("Done: 2 images"), status
    page.wait_for_function(
        "() => [...document.querySelectorAll('.sigma-map img')]"
        ".every(i => i.complete && i.naturalWidth === 60) "
        "&& document.querySelectorAll('.sigma-map img').length === 2"
    )
    assert page.locator(".with-sigma .compare").count() == 2
    assert page.text_content(".sigma-map .tag").startswith("1σ 0 – ")
    page.screenshot(path=str(SHOTS / "web-sigma.png"), full_page=True)
    page.select_option("#model", "bicubic")
    assert not page.is_enabled("#uncertainty") and not page.is_checked("#uncertainty")
