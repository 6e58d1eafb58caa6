"""Web API without a browser (fastapi TestClient): jobs, results equal to the CLI's, limits,
malicious uploads, queueing, expiry, previews and the ``serve`` command."""

from __future__ import annotations

import io
import json
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from lenssr.errors import ConfigError
from lenssr.web import Settings, create_app
from lenssr.web.render import asinh_stretch, render_pair, upsample_nearest

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
#: The server only answers to its own host names: the test client talks to it as a browser
#: on this machine would.
LOCAL = "http://127.0.0.1:8000"


def lens_image(seed: int, shape: tuple[int, int] = (75, 75)) -> np.ndarray:
    """A small Einstein-ring-like image in e-/s/arcsec^2 (ring + lens light + noise)."""
    rng = np.random.default_rng(seed)
    y, x = np.indices(shape, dtype=np.float64)
    cy, cx = (shape[0] - 1) / 2, (shape[1] - 1) / 2
    r = np.hypot(y - cy, x - cx)
    theta = np.arctan2(y - cy, x - cx)
    ring = np.exp(-((r - shape[0] / 4) ** 2) / 8.0) * (1.0 + 0.6 * np.cos(theta - seed))
    lens = 2.0 * np.exp(-r / 4.0)
    return (ring + lens + rng.normal(0, 0.03, shape)).astype(np.float32)


def npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()


def fits_bytes(arr: np.ndarray, gz: bool = False) -> bytes:
    import gzip

    from astropy.io import fits

    hdr = fits.Header()
    hdr["CTYPE1"], hdr["CTYPE2"] = "RA---TAN", "DEC--TAN"
    hdr["CRPIX1"], hdr["CRPIX2"] = 38.0, 38.0
    hdr["CRVAL1"], hdr["CRVAL2"] = 150.1, 2.2
    hdr["CDELT1"], hdr["CDELT2"] = -0.1 / 3600, 0.1 / 3600
    buf = io.BytesIO()
    fits.PrimaryHDU(arr, header=hdr).writeto(buf)
    return gzip.compress(buf.getvalue(), mtime=0) if gz else buf.getvalue()


def mixed_zip(n: int = 6, shape: tuple[int, int] = (75, 75)) -> bytes:
    """A zip of ``n`` LR images, .npy and FITS mixed, in two folders."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for i in range(n):
            img = lens_image(i, shape)
            if i % 3 == 0:
                zf.writestr(f"lr/npy/img{i:03d}.npy", npy_bytes(img))
            elif i % 3 == 1:
                zf.writestr(f"lr/fits/img{i:03d}.fits", fits_bytes(img))
            else:
                zf.writestr(f"lr/fits/img{i:03d}.fits.gz", fits_bytes(img, gz=True))
    return buf.getvalue()


class EvilPickle:
    """Unpickling this would create ``marker`` (it must never happen)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: D105
        return (Path.touch, (self.marker,))


def evil_zip(marker: Path) -> bytes:
    """Path-traversal names, an absolute name and a pickled .npy, plus one good image."""
    payload = io.BytesIO()
    np.save(payload, np.array([EvilPickle(marker)], dtype=object), allow_pickle=True)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("../../escape.npy", npy_bytes(lens_image(1)))
        zf.writestr("/etc/abs.npy", npy_bytes(lens_image(2)))
        zf.writestr("data/pickle.npy", payload.getvalue())
        zf.writestr("data/good.npy", npy_bytes(lens_image(3)))
    return buf.getvalue()


def bomb_zip(size_mb: int = 24) -> bytes:
    """One member of ``size_mb`` MiB of zeros: compression ratio ~1000."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        with zf.open("bomb.npy", "w") as fh:
            block = bytes(1024 * 1024)
            for _ in range(size_mb):
                fh.write(block)
    return buf.getvalue()


def submit(client: TestClient, files: list[tuple[str, bytes]], **form: str):
    data = {"model": "bicubic", "scale": "2", **form}
    parts = [("files[]", (name, raw, "application/octet-stream")) for name, raw in files]
    return client.post("/api/jobs", files=parts, data=data)


def wait(client: TestClient, job_id: str, timeout: float = 30.0) -> dict:
    end = time.time() + timeout
    while time.time() < end:
        job = client.get(f"/api/jobs/{job_id}").json()
        if job["status"] in ("done", "failed", "cancelled"):
            return job
        time.sleep(0.02)
    raise AssertionError(f"job {job_id} did not finish: {job}")


@pytest.fixture
def client(tmp_path: Path):
    app = create_app(Settings(model="bicubic", work_dir=tmp_path / "jobs", previews=3))
    with TestClient(app, base_url=LOCAL) as c:
        yield c


def test_models_health_and_page(client: TestClient) -> None:
    assert client.get("/healthz").json()["status"] == "ok"
    body = client.get("/api/models").json()
    bicubic = next(m for m in body["models"] if m["name"] == "bicubic")
    assert bicubic["scales"] == [2, 4]
    assert body["default"] == "bicubic"
    page = client.get("/")
    assert page.status_code == 200 and 'id="drop"' in page.text
    for asset in ("/static/app.js", "/static/ui.js", "/static/style.css"):
        assert client.get(asset).status_code == 200
    # Everything is served locally: no external scripts or styles.
    assert "http" not in page.text.replace('"http-equiv"', "")


def test_zip_job_equals_cli_result(client: TestClient, tmp_path: Path) -> None:
    from lenssr.inference import upscale_path

    raw = mixed_zip(6)
    r = submit(client, [("lenses.zip", raw)])
    assert r.status_code == 202, r.text
    assert r.json()["total"] == 6
    job = wait(client, r.json()["id"])
    assert job["status"] == "done", job
    assert job["done"] == 6 and job["progress"] == 1.0 and job["skipped"] == []
    assert job["result_name"] == "lenses_sr.zip"
    result = client.get(job["result"])
    assert result.status_code == 200
    assert 'filename="lenses_sr.zip"' in result.headers["content-disposition"]

    (tmp_path / "in.zip").write_bytes(raw)
    batch = client.app.state.settings.batch_size  # the CLI's --batch-size
    upscale_path(
        tmp_path / "in.zip", tmp_path / "cli.zip", model="bicubic", progress=False, batch_size=batch
    )
    with (
        zipfile.ZipFile(io.BytesIO(result.content)) as web,
        zipfile.ZipFile(tmp_path / "cli.zip") as cli,
    ):
        assert web.namelist() == [*cli.namelist(), "report.json"]
        assert len(cli.namelist()) == 6
        for name in cli.namelist():
            assert web.read(name) == cli.read(name), name
        from lenssr.io import read_image

        out = read_image(web.read("lr/fits/img001.fits"), name="lr/fits/img001.fits")
        assert out.data.shape == (150, 150)
        assert out.meta["header"]["CRPIX1"] == pytest.approx((38.0 - 0.5) * 2 + 0.5)


def test_loose_files_and_x4(client: TestClient) -> None:
    files = [
        ("a.npy", npy_bytes(lens_image(0, (20, 30)))),
        ("dir/b.fits", fits_bytes(lens_image(1, (16, 16)))),
        ("notes.txt", b"hello"),
        ("a.npy", npy_bytes(lens_image(2, (20, 30)))),
    ]
    job = wait(client, submit(client, files, scale="4").json()["id"])
    assert job["status"] == "done", job
    assert job["processed"] == ["a.npy", "b.fits"]
    reasons = dict((s["name"], s["reason"]) for s in job["skipped"])
    assert "unsupported extension" in reasons["notes.txt"]
    assert "duplicate" in reasons["a.npy"]
    with zipfile.ZipFile(io.BytesIO(client.get(job["result"]).content)) as zf:
        assert np.load(io.BytesIO(zf.read("a.npy"))).shape == (80, 120)


def test_malicious_zip_is_refused_per_file_and_pickle_never_runs(
    client: TestClient, tmp_path: Path
) -> None:
    marker = tmp_path / "pwned"
    job = wait(client, submit(client, [("evil.zip", evil_zip(marker))]).json()["id"])
    assert not marker.exists()
    assert job["status"] == "done"
    assert job["processed"] == ["data/good.npy"]
    reasons = {s["name"]: s["reason"] for s in job["skipped"]}
    assert "path traversal" in reasons["../../escape.npy"]
    assert "absolute path" in reasons["/etc/abs.npy"]
    assert "pickle" in reasons["data/pickle.npy"]
    with zipfile.ZipFile(io.BytesIO(client.get(job["result"]).content)) as zf:
        assert zf.namelist() == ["data/good.npy", "report.json"]
        report = json.loads(zf.read("report.json"))
        assert report["processed"] == ["data/good.npy"]
        assert {s["name"]: s["reason"] for s in report["skipped"]} == reasons
    # Nothing was written outside the job folders.
    assert not (tmp_path / "escape.npy").exists() and not (tmp_path.parent / "escape.npy").exists()


def test_zip_bomb_refused_and_server_keeps_serving(client: TestClient) -> None:
    r = submit(client, [("bomb.zip", bomb_zip())])
    assert r.status_code == 400
    assert "zip bomb" in r.json()["detail"]
    assert client.get("/healthz").status_code == 200
    job = wait(client, submit(client, [("ok.zip", mixed_zip(2))]).json()["id"])
    assert job["status"] == "done"


def test_upload_limits(tmp_path: Path) -> None:
    settings = Settings(
        model="bicubic", work_dir=tmp_path, max_upload_mb=0.05, max_files=3, max_pixels=900
    )
    with TestClient(create_app(settings), base_url=LOCAL) as c:
        big = submit(c, [("big.npy", npy_bytes(np.zeros((200, 200), np.float32)))])
        assert big.status_code == 413 and "limit" in big.json()["detail"]
        many = submit(c, [("m.zip", mixed_zip(4, (8, 8)))])
        assert many.status_code == 400 and "4 images" in many.json()["detail"]
        files = [
            ("s.npy", npy_bytes(lens_image(0, (30, 30)))),
            ("l.npy", npy_bytes(lens_image(0, (31, 31)))),
        ]
        job = wait(c, submit(c, files).json()["id"])
        assert job["processed"] == ["s.npy"]
        assert "limit of 900" in job["skipped"][0]["reason"]


@pytest.mark.parametrize(
    ("form", "files", "detail"),
    [
        ({"model": "nope"}, [("a.npy", b"x")], "unknown model"),
        ({"scale": "3"}, [("a.npy", b"x")], "serves scales"),
        ({}, [("a.zip", b"x"), ("b.npy", b"y")], "one .zip"),
        ({}, [("a.zip", b"not a zip")], "not a zip"),
        ({}, [("a.txt", b"text")], "no image files"),
    ],
)
def test_bad_requests(client: TestClient, form: dict, files: list, detail: str) -> None:
    r = submit(client, files, **form)
    assert r.status_code == 400
    assert detail in r.json()["detail"]


def test_queue_and_failing_job_do_not_stop_the_server(client: TestClient, monkeypatch) -> None:
    manager = client.app.state.jobs
    real = manager.model

    def broken(name: str):
        model, lock = real(name)

        class Boom:
            name, descriptor = model.name, model.descriptor

            def _forward(self, x, scale):
                raise RuntimeError("kaboom")

            def upscale(self, *a, **k):
                raise RuntimeError("kaboom")

        return Boom(), lock

    monkeypatch.setattr(manager, "model", broken)
    failed = wait(client, submit(client, [("a.zip", mixed_zip(1))]).json()["id"])
    assert failed["status"] == "failed" and "kaboom" in failed["error"]
    monkeypatch.setattr(manager, "model", real)
    ids = [submit(client, [(f"q{i}.zip", mixed_zip(2))]).json()["id"] for i in range(4)]
    jobs = [wait(client, i) for i in ids]
    assert [j["status"] for j in jobs] == ["done"] * 4
    assert client.get("/api/jobs/" + "0" * 32).status_code == 404


def test_ttl_expiry_deletes_files(client: TestClient) -> None:
    manager = client.app.state.jobs
    job = wait(client, submit(client, [("a.zip", mixed_zip(1))]).json()["id"])
    folder = manager.get(job["id"]).folder
    assert folder.is_dir() and (folder / "result.zip").is_file()
    assert manager.expire(now=time.time() + 10) == []
    assert manager.expire(now=time.time() + manager.settings.ttl_seconds + 1) == [job["id"]]
    assert not folder.exists()
    gone = client.get(f"/api/jobs/{job['id']}")
    assert gone.status_code == 410 and "expired" in gone.json()["detail"]
    assert client.get(f"/api/jobs/{job['id']}/result.zip").status_code == 410


def test_previews_are_png_of_sr_size(client: TestClient) -> None:
    job = wait(client, submit(client, [("p.zip", mixed_zip(5))]).json()["id"])
    assert len(job["previews"]) == 3
    p = job["previews"][0]
    lr = Image.open(io.BytesIO(client.get(p["lr"]).content))
    sr = Image.open(io.BytesIO(client.get(p["sr"]).content))
    assert lr.size == sr.size == (150, 150)
    lr_px = np.asarray(lr)
    assert np.array_equal(lr_px[0::2, 0::2], lr_px[1::2, 1::2])  # nearest: 2x2 blocks
    assert not np.array_equal(np.asarray(sr)[0::2, 0::2], np.asarray(sr)[1::2, 1::2])
    assert client.get(f"/api/jobs/{job['id']}/preview/9/lr.png").status_code == 404


def test_render_helpers() -> None:
    x = np.linspace(-1, 3, 50)
    y = asinh_stretch(x, 0.0, 2.0)
    assert y.min() == 0.0 and y.max() == 1.0 and np.all(np.diff(y) >= 0)
    assert asinh_stretch(np.array([0.1]), 0, 1)[0] > 0.1  # asinh lifts faint values
    up = upsample_nearest(np.arange(6.0).reshape(2, 3), (4, 6))
    assert up[3, 5] == 5.0 and up[0, 1] == 0.0
    lr_png, sr_png = render_pair(lens_image(0, (10, 12)), np.zeros((20, 24), np.float32))
    assert Image.open(io.BytesIO(lr_png)).size == (24, 20)


def test_settings_and_serve_command(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from lenssr.cli import app

    with pytest.raises(ConfigError, match="max_files"):
        Settings(max_files=0)
    with pytest.raises(ConfigError, match="unknown model"):
        create_app(Settings(model="no-such-model", work_dir=tmp_path))
    assert Settings().host == "127.0.0.1"
    out = CliRunner().invoke(app, ["serve", "--help"]).output
    for flag in (
        "--host",
        "--port",
        "--model",
        "--max-upload-mb",
        "--max-files",
        "--max-pixels",
        "--ttl-minutes",
        "--workers",
        "--max-decoded-mb",
        "--batch-size",
        "--allowed-host",
        "--allowed-origin",
        "--work-dir",
    ):
        assert flag in out


def test_serve_command_runs_uvicorn(tmp_path: Path) -> None:
    import subprocess
    import sys

    import httpx

    from lenssr.web.local import serve_process

    cmd = [sys.executable, "-m", "lenssr.cli", "serve", "--model", "no-such-model"]
    bad = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "error: unknown model 'no-such-model'" in bad.stderr
    with pytest.raises(RuntimeError, match="unknown model"):  # the helper reports its stderr
        with serve_process("--model", "no-such-model", timeout=60):
            pass
    with serve_process("--model", "bicubic", timeout=60) as url:
        assert httpx.get(f"{url}/healthz", timeout=5).json()["status"] == "ok"
        assert httpx.get(f"{url}/api/models", timeout=5).json()["default"] == "bicubic"


def test_instrument_fields_and_sigma_maps(tmp_path: Path) -> None:
    """The page's instrument fields reach the model (same output as the CLI with the same
    instrument) and the 1-sigma maps come back in the result zip."""
    from lenssr.inference import upscale_path

    app = create_app(Settings(model="hybrid", work_dir=tmp_path / "jobs", previews=0))
    with TestClient(app, base_url=LOCAL) as client:
        hybrid = next(
            m for m in client.get("/api/models").json()["models"] if m["name"] == "hybrid"
        )
        assert hybrid["instrument"] and hybrid["sigma"]
        files = [(f"img{i}.npy", npy_bytes(lens_image(i, (24, 24)))) for i in range(2)]
        r = submit(client, files, model="hybrid", psf_fwhm="0.25", pixel_scale="0.1",
                   uncertainty="true")  # fmt: skip
        assert r.status_code == 202, r.text
        job = wait(client, r.json()["id"], timeout=120)
        assert job["status"] == "done", job
        with zipfile.ZipFile(io.BytesIO(client.get(job["result"]).content)) as zf:
            names = set(zf.namelist())
            assert {"img0.npy", "img0_sigma.npy", "img1_sigma.npy"} <= names
            web = np.load(io.BytesIO(zf.read("img0.npy")))
            sigma = np.load(io.BytesIO(zf.read("img0_sigma.npy")))
        assert sigma.shape == web.shape == (48, 48) and np.all(sigma > 0)
        src = tmp_path / "in"
        src.mkdir()
        (src / "img0.npy").write_bytes(files[0][1])
        upscale_path(src, tmp_path / "cli", model="hybrid", psf_fwhm=0.25, pixel_scale=0.1,
                     uncertainty=True, progress=False,
                     batch_size=app.state.settings.batch_size)  # fmt: skip
        np.testing.assert_array_equal(np.load(tmp_path / "cli" / "img0.npy"), web)
        np.testing.assert_array_equal(np.load(tmp_path / "cli" / "img0_sigma.npy"), sigma)
        bad = submit(client, files, model="hybrid", psf_fwhm="-1")
        assert bad.status_code == 400 and "psf_fwhm" in bad.text
        none = submit(client, files, model="bicubic", uncertainty="true")
        assert none.status_code == 400 and "no sigma head" in none.text


def test_sigma_map_previews(tmp_path: Path) -> None:
    """With 1-sigma maps asked for, each preview has a sigma PNG of SR size, rendered from the
    map in the result zip (linear, 0 .. sigma_max) for .npy, FITS (SIGMA HDU, shown flipped
    like its image) and PNG (``_sigma.tif``) inputs; without them, previews have none."""
    from astropy.io import fits

    app = create_app(Settings(model="hybrid", work_dir=tmp_path / "jobs", previews=3))
    img = lens_image(3, (24, 20))
    png = io.BytesIO()
    Image.fromarray(np.uint8(np.clip(img / img.max(), 0, 1) * 255)).save(png, format="PNG")
    files = [("a.npy", npy_bytes(img)), ("b.fits", fits_bytes(img)), ("c.png", png.getvalue())]
    with TestClient(app, base_url=LOCAL) as client:
        job = wait(client, submit(client, files, model="hybrid", uncertainty="true").json()["id"],
                   timeout=120)  # fmt: skip
        assert job["status"] == "done", job
        result = zipfile.ZipFile(io.BytesIO(client.get(job["result"]).content))
        maps = {
            "a.npy": np.load(io.BytesIO(result.read("a_sigma.npy"))),
            "b.fits": np.flipud(fits.open(io.BytesIO(result.read("b.fits")))["SIGMA"].data),
            "c.png": np.asarray(Image.open(io.BytesIO(result.read("c_sigma.tif")))),
        }
        assert [p["name"] for p in job["previews"]] == ["a.npy", "b.fits", "c.png"]
        for p in job["previews"]:
            sigma = maps[p["name"]].astype(np.float64)
            shown = np.asarray(Image.open(io.BytesIO(client.get(p["sigma"]).content)))
            assert shown.shape == sigma.shape == (48, 40)
            assert p["sigma_max"] == pytest.approx(np.percentile(sigma, 99.5), rel=1e-5)
            expected = np.rint(np.clip(sigma / p["sigma_max"], 0, 1) * 255)
            assert np.abs(shown - expected).max() <= 1
            assert shown.std() > 0
        plain = wait(client, submit(client, files[:1], model="hybrid").json()["id"], timeout=120)
        assert plain["previews"][0]["sigma"] is None
        url = f"/api/jobs/{plain['id']}/preview/0/sigma.png"
        assert client.get(url).status_code == 404
