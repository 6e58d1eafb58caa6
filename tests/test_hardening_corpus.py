"""A hostile corpus, generated here (no committed binaries): lying headers, decompression
bombs, truncated and corrupt files of every format, mixed with good files.

Each case runs through ``lenssr upscale --model bicubic`` (in a subprocess, with its peak RSS
measured from ``/proc/self/status`` after resetting it through ``/proc/self/clear_refs``) and
through the web API. Every good file must come back, every bad one must be skipped with a clear
one-line reason, and no case may cost more than :data:`RSS_LIMIT_MB` above idle.
"""

from __future__ import annotations

import gzip
import io
import json
import struct
import subprocess
import sys
import time
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import tifffile
from astropy.io import fits
from PIL import Image

from lenssr.errors import InputError
from lenssr.io import ZipLimits, iter_inputs, process_path, read_image

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

#: Peak RSS a hostile case may add above the idle CLI process, MB.
RSS_LIMIT_MB = 600
GiB = 1024**3
MiB = 1024**2
GOOD = ("good/a.npy", "good/b.fits", "good/c.png")


def lens(seed: int = 0, shape: tuple[int, int] = (32, 32)) -> np.ndarray:
    """A small ring-like test image in arbitrary surface-brightness units."""
    y, x = np.indices(shape, dtype=np.float32)
    r = np.hypot(y - shape[0] / 2, x - shape[1] / 2)
    noise = np.random.default_rng(seed).normal(0, 0.02, shape)
    return (np.exp(-((r - shape[0] / 4) ** 2) / 6.0) + noise).astype(np.float32)


def npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()


def fits_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    fits.PrimaryHDU(arr).writeto(buf)
    return buf.getvalue()


def png16(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.clip(arr * 1000 + 100, 0, 65535).astype(np.uint16)).save(buf, "PNG")
    return buf.getvalue()


def good_members() -> dict[str, bytes]:
    return {GOOD[0]: npy(lens(1)), GOOD[1]: fits_bytes(lens(2)), GOOD[2]: png16(lens(3))}


# ------------------------------------------------------------------------ hostile files


def npy_header(shape: tuple[int, ...], dtype: str = "<f4") -> bytes:
    """A .npy header (version 1.0) declaring ``shape``; no data."""
    text = f"{{'descr': '{dtype}', 'fortran_order': False, 'shape': {shape}, }}"
    pad = 64 - (10 + len(text) + 1) % 64
    text = text + " " * pad + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text.encode()


def fits_header(shape: tuple[int, ...], bitpix: int = -32, primary: bool = True) -> bytes:
    """Header blocks declaring an image of ``shape`` (numpy order) and no data."""
    cards = [("SIMPLE", True) if primary else ("XTENSION", "IMAGE"), ("BITPIX", bitpix)]
    cards.append(("NAXIS", len(shape)))
    cards += [(f"NAXIS{i + 1}", n) for i, n in enumerate(reversed(shape))]
    if not primary:
        cards += [("PCOUNT", 0), ("GCOUNT", 1)]
    header = fits.Header(cards)
    return header.tostring().encode()


def gzip_stream(parts: list[tuple[bytes, int]]) -> bytes:
    """A gzip stream of ``bytes * repeat`` pieces, compressed without holding them whole."""
    comp = zlib.compressobj(6, zlib.DEFLATED, 31)
    out = [comp.compress(chunk) for chunk, n in parts for _ in range(n)]
    return b"".join(out) + comp.flush()


def fits_gz_1gib() -> bytes:
    """A ~1 MB .fits.gz honestly declaring 16384x16384 float32 (1 GiB of zeros)."""
    zeros = b"\x00" * (16 * MiB)
    return gzip_stream([(fits_header((16384, 16384)), 1), (zeros, 64)])


def fits_gz_small_image_then_1gib() -> bytes:
    """A 32x32 primary image followed by a 1 GiB extension: only the image is decoded."""
    primary = fits_bytes(lens(4))
    zeros = b"\x00" * (16 * MiB)
    ext = fits_header((16384, 16384), primary=False)
    return gzip_stream([(primary, 1), (ext, 1), (zeros, 64)])


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_lying(width: int = 100_000, height: int = 100_000) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1000)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", idat)
        + png_chunk(b"IEND", b"")
    )


def tiff_16k_zlib() -> bytes:
    """A ~1 MB zlib TIFF honestly declaring 16384x16384 float32."""
    buf = io.BytesIO()
    zeros = np.zeros((1024, 1024), np.float32)
    tiles = (zeros for _ in range(256))
    tifffile.imwrite(
        buf, tiles, shape=(16384, 16384), dtype="float32", compression="zlib", tile=(1024, 1024)
    )
    return buf.getvalue()


def tiff_lying_strip() -> bytes:
    """A 64x64 float32 zlib TIFF whose one strip inflates to 512 MiB of zeros."""
    buf = io.BytesIO()
    tifffile.imwrite(buf, np.zeros((64, 64), np.float32), compression="zlib")
    raw = bytearray(buf.getvalue())
    page = tifffile.TiffFile(io.BytesIO(bytes(raw))).pages[0]
    bomb = zlib.compress(b"\x00" * (512 * MiB), 9)
    offsets, counts = page.tags["StripOffsets"], page.tags["StripByteCounts"]
    new_offset = len(raw)
    raw += bomb
    for tag, value in ((offsets, new_offset), (counts, len(bomb))):
        fmt = "<I" if tag.dtype == 4 else "<H"
        raw[tag.valueoffset : tag.valueoffset + struct.calcsize(fmt)] = struct.pack(fmt, value)
    return bytes(raw)


def fz_lying() -> bytes:
    """A tile-compressed FITS whose ZNAXIS1/2 claim 100000 (patched, same card width)."""
    buf = io.BytesIO()
    fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(lens(5))]).writeto(buf)
    raw = buf.getvalue()
    for key in (b"ZNAXIS1 =", b"ZNAXIS2 ="):
        at = raw.index(key)
        raw = raw[:at] + key + b"%21d" % 100000 + raw[at + 30 :]
    return raw


def truncated(raw: bytes, keep: float = 0.5) -> bytes:
    return raw[: int(len(raw) * keep)]


def garbage(head: bytes) -> bytes:
    return head + bytes(range(256)) * 8


#: name -> (member name, bytes factory, words one of which the reason must contain)
HOSTILE: dict[str, tuple[str, Callable[[], bytes], tuple[str, ...]]] = {
    "npy_lying_header": (
        "bad/lie.npy",
        lambda: npy_header((100000, 100000)) + b"\x00" * 1024,
        ("declares", "limit"),
    ),
    "npy_truncated": ("bad/trunc.npy", lambda: truncated(npy(lens(6))), ("truncated",)),
    "npy_garbage": ("bad/junk.npy", lambda: garbage(b"\x93NUMPY\x01\x00"), ("corrupt",)),
    "fits_gz_1gib": ("bad/big.fits.gz", fits_gz_1gib, ("declares", "limit")),
    "fits_lying_naxis": (
        "bad/lie.fits",
        lambda: fits_header((100000, 100000)) + b"\x00" * 2880,
        ("declares", "limit"),
    ),
    "fits_truncated": ("bad/trunc.fits", lambda: truncated(fits_bytes(lens(7)), 0.7), ("trunc",)),
    "fits_gz_truncated": (
        "bad/trunc.fits.gz",
        lambda: truncated(gzip.compress(fits_bytes(lens(8)))),
        ("truncated", "corrupt"),
    ),
    "fz_lying_znaxis": ("bad/lie.fz", fz_lying, ("declares", "limit")),
    "png_lying_ihdr": ("bad/lie.png", png_lying, ("declares", "limit")),
    "png_truncated": ("bad/trunc.png", lambda: truncated(png16(lens(9))), ("corrupt",)),
    "png_garbage": ("bad/junk.png", lambda: garbage(b"\x89PNG\r\n\x1a\n"), ("corrupt",)),
    "tiff_16k_zlib": ("bad/big.tif", tiff_16k_zlib, ("declares", "limit")),
    "tiff_lying_strip": ("bad/strip.tif", tiff_lying_strip, ("bomb", "expands")),
    "tiff_truncated": (
        "bad/trunc.tif",
        lambda: truncated(tifffile_bytes(lens(10)), 0.3),
        ("corrupt",),
    ),
}
#: Hostile files that are nevertheless readable: their image comes back.
READABLE = {"fits_gz_small_image_then_1gib": ("ok/tail.fits.gz", fits_gz_small_image_then_1gib)}


def tifffile_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    tifffile.imwrite(buf, arr)
    return buf.getvalue()


def write_zip(path: Path, members: dict[str, bytes], level: int = 6) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=level) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def zeros_zip(path: Path, n: int = 2000) -> Path:
    """``n`` members of a valid 512x511 float32 .npy of zeros (just under 1 MiB each, so the
    per-member ratio check of large members does not apply; ~4 KB zipped)."""
    member = npy(np.zeros((512, 511), np.float32))
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for name, data in good_members().items():
            zf.writestr(name, data)
        for i in range(n):
            zf.writestr(f"zeros/{i:04d}.npy", member)
    return path


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One zip per case (the hostile member + the good files), the combined zip and a folder."""
    root = tmp_path_factory.mktemp("hostile")
    cases: dict[str, Path] = {}
    everything = good_members()
    for case, (member, make, _) in HOSTILE.items():
        data = make()
        everything[member] = data
        cases[case] = write_zip(root / f"{case}.zip", {**good_members(), member: data})
    for case, (member, make) in READABLE.items():
        data = make()
        everything[member] = data
        cases[case] = write_zip(root / f"{case}.zip", {**good_members(), member: data})
    cases["all"] = write_zip(root / "all.zip", everything)
    cases["zeros_2000"] = zeros_zip(root / "zeros_2000.zip")
    folder = root / "folder"
    for name, data in {**good_members(), "bad/lie.npy": HOSTILE["npy_lying_header"][1]()}.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    cases["folder"] = folder
    return cases


# --------------------------------------------------------------------- in-process checks


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_member_is_one_clear_skip(corpus: dict[str, Path], tmp_path: Path, case: str):
    member, _, words = HOSTILE[case]
    report = process_path(corpus[case], tmp_path / "out.zip", lambda im: im.data, 1, progress=False)
    assert sorted(report.processed) == sorted(GOOD)
    assert [name for name, _ in report.skipped] == [member]
    reason = report.skipped[0][1]
    assert "\n" not in reason and len(reason) < 300 and " at 0x" not in reason, reason
    assert any(w in reason for w in words), reason
    with zipfile.ZipFile(tmp_path / "out.zip") as zf:
        assert sorted(zf.namelist()) == sorted(GOOD)


def test_image_after_a_huge_extension_reads_only_its_own_bytes(corpus: dict[str, Path]):
    member, make = READABLE["fits_gz_small_image_then_1gib"]
    img = read_image(make(), name=member)
    np.testing.assert_allclose(img.data, lens(4))


def test_small_compressible_members_share_one_allowance(corpus: dict[str, Path], tmp_path: Path):
    limits = ZipLimits(max_ratio_bytes=8 * MiB)
    report = process_path(
        corpus["zeros_2000"], tmp_path / "o.zip", lambda im: im.data, 1, False, limits=limits
    )
    assert set(GOOD) <= set(report.processed)
    zeros_done = [n for n in report.processed if n.startswith("zeros/")]
    assert len(zeros_done) == 8  # 8 MiB of (just under) 1 MiB members
    assert len(report.skipped) == 2000 - 8
    assert all("zip bomb" in reason for _, reason in report.skipped)


def test_job_budget_skips_the_rest_with_its_reason(tmp_path: Path):
    root = tmp_path / "in"
    root.mkdir()
    for i in range(5):
        (root / f"{i}.npy").write_bytes(npy(lens(i, (64, 64))))
    limits = ZipLimits(max_job_bytes=3 * 64 * 64 * 4)
    report = process_path(root, tmp_path / "out", lambda im: im.data, 1, False, limits=limits)
    assert report.processed == ["0.npy", "1.npy", "2.npy"]
    assert [n for n, _ in report.skipped] == ["3.npy", "4.npy"]
    assert "budget" in report.skipped[0][1]


def test_unreadable_files_do_not_use_up_the_job_budget(tmp_path: Path):
    root = tmp_path / "in"
    root.mkdir()
    for i in range(3):  # truncated: each declares 64x64 but holds half of it
        (root / f"a{i}.npy").write_bytes(truncated(npy(lens(i, (64, 64)))))
    for i in range(2):
        (root / f"b{i}.npy").write_bytes(npy(lens(i, (64, 64))))
    limits = ZipLimits(max_job_bytes=2 * 64 * 64 * 4)
    report = process_path(root, tmp_path / "out", lambda im: im.data, 1, False, limits=limits)
    assert report.processed == ["b0.npy", "b1.npy"]
    assert all("truncated" in reason for _, reason in report.skipped)


def test_memory_error_of_one_image_skips_only_that_image(tmp_path: Path):
    root = tmp_path / "in"
    root.mkdir()
    for i in range(4):
        (root / f"{i}.npy").write_bytes(npy(lens(i, (16 + i, 16))))

    def batch_fn(images):
        if any(im.data.shape[0] == 18 for im in images):
            raise MemoryError("Unable to allocate 37.3 GiB")
        return [im.data for im in images]

    report = process_path(root, tmp_path / "out", None, 1, False, batch_fn=batch_fn)
    assert report.processed == ["0.npy", "1.npy", "3.npy"]
    assert report.skipped == [("2.npy", "not enough memory to process this image (18x16 pixels)")]


def test_iter_inputs_reads_zip_members_lazily(corpus: dict[str, Path]):
    items = list(iter_inputs(corpus["zeros_2000"]))
    assert len(items) == 2003
    with pytest.raises(InputError, match="zip bomb"):
        items[-1].load()  # past the allowance: refused without inflating anything
    first = items[0].load()  # the archive is still open for the loaders after the listing
    assert first.name == GOOD[0] and first.shape == (32, 32)


# -------------------------------------------------------------------- CLI in a subprocess

#: Runs ``lenssr upscale`` in-process for each case, then a web job for two of them, and prints
#: the peak RSS above idle (MB) of each.
RSS_SCRIPT = r"""
import json, sys
from lenssr.cli import main

def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) / 1024
    raise KeyError(key)

def run(args):
    try:
        main(args)
        return 0
    except SystemExit as exc:
        return exc.code

cases = json.loads(sys.argv[1])
warm = cases.pop("_warm")
run(["upscale", warm[0], "-o", warm[1], "--model", "bicubic", "-q"])
out = {}
for name, (inp, outp) in cases.items():
    idle = status("VmRSS:")
    open("/proc/self/clear_refs", "w").write("5")
    rc = run(["upscale", inp, "-o", outp, "--model", "bicubic", "-q"])
    out[name] = {"rc": rc, "peak_above_idle_mb": round(status("VmHWM:") - idle, 1)}

# The web API in the same process: one job per hostile upload, peak RSS of the whole job.
import time
from fastapi.testclient import TestClient
from lenssr.web import Settings, create_app

settings = Settings(model="bicubic", work_dir=sys.argv[2])
with TestClient(create_app(settings), base_url="http://127.0.0.1:8000") as client:
    for name in ("all", "zeros_2000"):
        inp = cases[name][0]
        idle = status("VmRSS:")
        open("/proc/self/clear_refs", "w").write("5")
        with open(inp, "rb") as fh:
            r = client.post("/api/jobs", files=[("files[]", ("x.zip", fh, "application/zip"))])
        job_id = r.json()["id"]
        while (job := client.get(f"/api/jobs/{job_id}").json())["status"] in ("queued", "running"):
            time.sleep(0.05)
        out["web_" + name] = {
            "status": job["status"],
            "processed": len(job["processed"]),
            "skipped": len(job["skipped"]),
            "peak_above_idle_mb": round(status("VmHWM:") - idle, 1),
        }
print("RSS=" + json.dumps(out))
"""


def test_cli_peak_rss_per_hostile_case(corpus: dict[str, Path], tmp_path: Path):
    cases = {"_warm": [str(corpus["npy_truncated"]), str(tmp_path / "warm.zip")]}
    for case, path in corpus.items():
        out = tmp_path / (case if case == "folder" else f"{case}.zip")
        cases[case] = [str(path), str(out)]
    proc = subprocess.run(
        [sys.executable, "-c", RSS_SCRIPT, json.dumps(cases), str(tmp_path / "jobs")],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RSS="))
    rss = json.loads(line[4:])
    print(json.dumps(rss, indent=1))
    for case, result in rss.items():
        assert result.get("rc", 0) == 0 and result.get("status", "done") == "done", (case, result)
        assert result["peak_above_idle_mb"] < RSS_LIMIT_MB, (case, result)
    assert rss["web_all"]["processed"] == len(GOOD) + 1
    assert rss["web_all"]["skipped"] == len(HOSTILE)
    assert rss["web_zeros_2000"]["processed"] == len(GOOD) + 64  # 64 MiB allowance
    for case in HOSTILE:
        with zipfile.ZipFile(tmp_path / f"{case}.zip") as zf:
            assert sorted(zf.namelist()) == sorted(GOOD), case
    with zipfile.ZipFile(tmp_path / "all.zip") as zf:
        assert sorted(zf.namelist()) == sorted([*GOOD, "ok/tail.fits.gz"])
    assert sorted(p.relative_to(tmp_path / "folder").as_posix() for p in
                  (tmp_path / "folder").rglob("*.*")) == sorted(GOOD)  # fmt: skip
    assert not list(tmp_path.glob("*.partial"))


def test_cli_process_lying_header_in_zip_exits_0_without_traceback(
    corpus: dict[str, Path], tmp_path: Path
):
    out = tmp_path / "out.zip"
    cmd = [sys.executable, "-m", "lenssr.cli", "upscale", str(corpus["all"]), "-o", str(out)]
    proc = subprocess.run(
        [*cmd, "--model", "bicubic", "-q"], capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert lines[0] == f"{len(GOOD) + 1} processed, {len(HOSTILE)} skipped"
    assert len(lines) == 1 + len(HOSTILE)  # one line per skipped file
    assert not out.with_name("out.zip.partial").exists()


# ------------------------------------------------------------------------------ web API


def test_web_job_with_hostile_members_keeps_every_good_file(corpus: dict[str, Path], tmp_path):
    from fastapi.testclient import TestClient

    from lenssr.web import Settings, create_app

    settings = Settings(model="bicubic", work_dir=tmp_path / "jobs")
    with TestClient(create_app(settings), base_url="http://127.0.0.1:8000") as client:
        raw = corpus["all"].read_bytes()
        r = client.post("/api/jobs", files=[("files[]", ("all.zip", raw, "application/zip"))])
        assert r.status_code == 202, r.text
        job_id = r.json()["id"]
        end = time.time() + 120
        while (job := client.get(f"/api/jobs/{job_id}").json())["status"] in ("queued", "running"):
            assert time.time() < end
            time.sleep(0.1)
        assert job["status"] == "done", job
        assert sorted(job["processed"]) == sorted([*GOOD, "ok/tail.fits.gz"])
        skipped = {s["name"]: s["reason"] for s in job["skipped"]}
        assert set(skipped) == {member for member, _, _ in HOSTILE.values()}
        for member, _, words in HOSTILE.values():
            assert "\n" not in skipped[member] and any(w in skipped[member] for w in words)


def test_zip_member_larger_than_one_file_may_be_is_not_read(tmp_path: Path):
    big = npy(np.zeros((1024, 1024), np.float32))  # 4 MiB, ratio < 100 with random tail
    big = big[:-65536] + np.random.default_rng(0).bytes(65536)
    path = write_zip(tmp_path / "in.zip", {**good_members(), "big.npy": big})
    limits = ZipLimits(max_file_bytes=1 * MiB, max_ratio=1e9)
    report = process_path(path, tmp_path / "out.zip", lambda im: im.data, 1, False, limits=limits)
    assert sorted(report.processed) == sorted(GOOD)
    assert report.skipped == [
        ("big.npy", "member expands to 4 MiB, more than the limit of 1 MiB for one file (not read)")
    ]
