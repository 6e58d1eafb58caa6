"""Reading and writing one image: .npy, FITS (plain, gzip, tile-compressed), PNG and TIFF.

Every image comes back as a 2-D ``float32`` array ``(H, W)`` in the file's own units (no 8-bit
quantisation, FITS ``BSCALE``/``BZERO`` applied). :func:`write_image` writes a result in the same
format as the input it was computed from, so a pipeline hands back what it was given:

* ``.npy``: ``float32`` with the input's singleton axes (``(1, h, w)`` in -> ``(1, sH, sW)`` out).
* FITS: the input header is kept; the WCS is rescaled for the new pixel grid (``CDi_j`` and
  ``CDELTi`` divided by ``scale``, ``CRPIXi -> (CRPIXi - 0.5) * scale + 0.5``, SIP coefficients
  rescaled), a ``HISTORY`` card and a ``FLUXCONV`` card stating the flux convention are added.
  Gzipped input gives gzipped output, tile-compressed input gives (lossless) tile-compressed
  output.
* PNG / TIFF: the input's bit depth (8/16-bit integers are rounded and clipped to the dtype's
  range, with a warning when values are clipped; float TIFF stays ``float32``).

Whatever a file claims, reading it costs bounded memory (:class:`ReadLimits`): the pixel count
and byte size a file declares (npy header, FITS ``NAXISn``/``ZNAXISn``, PNG ``IHDR``, TIFF tags)
are checked before any pixel buffer is allocated, gzipped FITS is decompressed as a stream and
only up to the end of the image it declares, deflate TIFF strips are checked against the size
of their image before they are decoded, and a :class:`DecodeBudget` caps the decoded bytes of
all the images of one job.
"""

from __future__ import annotations

import gzip
import io
import math
import re
import struct
import threading
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from lenssr.errors import InputError

#: Lower-case file-name endings understood by :func:`read_image`, and their format.
EXTENSIONS: dict[str, str] = {
    ".npy": "npy",
    ".fits": "fits",
    ".fit": "fits",
    ".fts": "fits",
    ".fits.gz": "fits",
    ".fit.gz": "fits",
    ".fts.gz": "fits",
    ".fz": "fits",
    ".png": "png",
    ".tif": "tiff",
    ".tiff": "tiff",
}

MiB = 1024**2
#: Smallest image side (pixels) an SR model can work on (3x3 convolutions with padding).
MIN_SIDE = 2
_ONE_LINE_MAX = 240  # characters of a library's message quoted in a reason


@dataclass(frozen=True)
class ReadLimits:
    """Caps on one file, checked against what the file declares before pixels are allocated.

    Attributes:
        max_pixels: most pixels ``h * w`` of one image (default 8192 x 8192, 256 MiB as
            float32; the result of x2 is four times that).
        max_file_bytes: largest file (on disk, archive member or upload) read into memory.
        max_decoded_bytes: most bytes one file may decode to (its declared samples, a gzipped
            FITS stream, deflate TIFF strips).
    """

    max_pixels: int = 8192 * 8192
    max_file_bytes: int = 2 * 1024**3
    max_decoded_bytes: int = 2 * 1024**3


class DecodeBudget:
    """Decoded bytes allowed to all the images of one job together (thread-safe).

    Each image costs its ``float32`` size (``h * w * 4`` bytes), charged before it is decoded.
    ``max_bytes=None`` means no cap (only :attr:`used` is counted).
    """

    def __init__(self, max_bytes: int | None = None) -> None:
        self.max_bytes = max_bytes
        self.used = 0
        self._lock = threading.Lock()

    def take(self, nbytes: int, label: str) -> None:
        """Charge ``nbytes`` for image ``label``.

        Raises:
            InputError: the budget would be exceeded (nothing is charged then).
        """
        with self._lock:
            if self.max_bytes is not None and self.used + nbytes > self.max_bytes:
                raise InputError(
                    label,
                    f"this job's budget of {self.max_bytes / MiB:.0f} MiB of decoded images is "
                    f"used up ({self.used / MiB:.0f} MiB so far, this image needs "
                    f"{nbytes / MiB:.1f} MiB)",
                )
            self.used += nbytes

    def refund(self, nbytes: int) -> None:
        """Give back ``nbytes`` charged for an image that could not be decoded after all."""
        with self._lock:
            self.used = max(0, self.used - nbytes)


def one_line(exc: BaseException | str) -> str:
    """A library's error message as one short line, without Python object reprs."""
    text = re.sub(r"\s*<[^<>]* at 0x[0-9a-fA-F]+>", "", str(exc))
    text = " ".join(text.split()) or type(exc).__name__
    return text if len(text) <= _ONE_LINE_MAX else text[: _ONE_LINE_MAX - 3] + "..."


def _fmt_shape(shape: tuple[int, ...]) -> str:
    return "x".join(str(int(n)) for n in shape)


@dataclass
class _Guard:
    """The limits and budget of one read (internal)."""

    label: str
    limits: ReadLimits
    budget: DecodeBudget | None
    charged: int = 0

    def refund(self) -> None:
        """Give back what this read charged (the file turned out unreadable)."""
        if self.budget is not None and self.charged:
            self.budget.refund(self.charged)
            self.charged = 0

    def declare(self, shape: tuple[int, ...], itemsize: int, what: str = "") -> None:
        """Check a declared image ``shape`` of ``itemsize``-byte samples before decoding it.

        Raises:
            InputError: more pixels or bytes than the limits, or over the job's budget.
        """
        dims = [int(n) for n in shape]
        if any(n < 0 for n in dims):
            raise InputError(self.label, f"{what}declares a negative size {_fmt_shape(dims)}")
        pixels = math.prod(dims)
        if pixels > self.limits.max_pixels:
            raise InputError(
                self.label,
                f"{what}declares {_fmt_shape(dims)} = {pixels:,} pixels, more than the limit "
                f"of {self.limits.max_pixels:,} (nothing was decoded)",
            )
        nbytes = pixels * int(itemsize)
        if nbytes > self.limits.max_decoded_bytes:
            raise InputError(
                self.label,
                f"{what}declares {nbytes / MiB:.0f} MiB of samples, more than the limit of "
                f"{self.limits.max_decoded_bytes / MiB:.0f} MiB (nothing was decoded)",
            )
        if self.budget is not None and not self.charged:
            self.budget.take(pixels * 4, self.label)
            self.charged = pixels * 4


@dataclass
class LoadedImage:
    """One image read from a file.

    Attributes:
        data: ``(H, W)`` float32 pixel values in the file's units.
        name: the file name or archive member name (used in messages and outputs).
        fmt: ``"npy"``, ``"fits"``, ``"png"`` or ``"tiff"``.
        meta: format details needed to write a result back in the same format:
            npy: ``shape`` (original shape), ``dtype``; FITS: ``header`` (``astropy.io.fits.Header``
            of the image HDU), ``primary_header`` (when the image is in an extension),
            ``compressed`` (tile compression), ``compression_type``, ``gzip``, ``hdu_index``;
            PNG/TIFF: ``dtype`` (numpy dtype name of the stored samples) and ``bits``.
    """

    data: np.ndarray
    name: str
    fmt: str
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int]:
        """``(H, W)`` of :attr:`data`."""
        return tuple(self.data.shape)  # type: ignore[return-value]


def image_format(name: str) -> str | None:
    """The format (``"npy"``, ``"fits"``, ``"png"``, ``"tiff"``) of a file name, or None."""
    low = name.lower()
    for ext in sorted(EXTENSIONS, key=len, reverse=True):
        if low.endswith(ext):
            return EXTENSIONS[ext]
    return None


def is_image_name(name: str) -> bool:
    """True when the file name has an extension :func:`read_image` understands."""
    return image_format(name) is not None


def _sniff(raw: bytes) -> str | None:
    """Guess a format from the first bytes (used when no file name is given)."""
    if raw.startswith(b"\x93NUMPY"):
        return "npy"
    if raw.startswith(b"SIMPLE  =") or raw.startswith(b"\x1f\x8b"):
        return "fits"
    if raw.startswith(b"\x89PNG"):
        return "png"
    if raw[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "tiff"
    return None


def read_image(
    source: str | Path | bytes,
    name: str | None = None,
    limits: ReadLimits | None = None,
    budget: DecodeBudget | None = None,
) -> LoadedImage:
    """Read one single-channel image as ``(H, W)`` float32.

    Args:
        source: a path, or the file's bytes (e.g. an archive member or an upload).
        name: the name used in messages and to pick the format from its extension; defaults
            to the path. With bytes and no name the format is guessed from the content.
        limits: caps checked before decoding (defaults of :class:`ReadLimits`).
        budget: the job's decoded-bytes budget, charged ``h * w * 4`` bytes for this image.

    Raises:
        InputError: missing, empty, corrupt, truncated or pickled file; unknown extension; not
            exactly one 2-D image; too small or over the limits; RGB with different channels;
            NaN or infinite pixels.
    """
    limits = limits or ReadLimits()
    if isinstance(source, (bytes, bytearray, memoryview)):
        raw = bytes(source)
        label = name or "<bytes>"
    else:
        path = Path(source)
        label = name or str(path)
        if not path.is_file():
            raise InputError(label, "no such file")
        try:
            size = path.stat().st_size
            if size > limits.max_file_bytes:
                raise InputError(
                    label,
                    f"file is {size / MiB:.0f} MiB, more than the limit of "
                    f"{limits.max_file_bytes / MiB:.0f} MiB",
                )
            raw = path.read_bytes()
        except OSError as exc:
            raise InputError(label, f"cannot read file ({exc.strerror or exc})") from exc
        name = name or path.name
    if len(raw) > limits.max_file_bytes:
        raise InputError(
            label,
            f"file is {len(raw) / MiB:.0f} MiB, more than the limit of "
            f"{limits.max_file_bytes / MiB:.0f} MiB",
        )
    if len(raw) == 0:
        raise InputError(label, "empty file")
    fmt = image_format(name) if name else _sniff(raw)
    if fmt is None:
        if name:
            suffix = "".join(Path(name).suffixes[-2:]) or "(none)"
            known = ", ".join(sorted(EXTENSIONS))
            raise InputError(label, f"unknown extension {suffix} (known: {known})")
        raise InputError(label, "unrecognised file content (not npy, FITS, PNG or TIFF)")
    reader = {"npy": _read_npy, "fits": _read_fits, "png": _read_png, "tiff": _read_tiff}[fmt]
    guard = _Guard(label, limits, budget)
    try:
        data, meta = reader(raw, label, guard)
        data = _check_pixels(data, label)
    except MemoryError as exc:
        guard.refund()
        raise InputError(label, "not enough memory to decode this file") from exc
    except BaseException:
        guard.refund()  # an unreadable file does not use up the job's budget
        raise
    return LoadedImage(data=data, name=label, fmt=fmt, meta=meta)


def _check_pixels(data: np.ndarray, label: str) -> np.ndarray:
    if data.ndim != 2:
        raise InputError(label, f"expected one 2-D image, got shape {tuple(data.shape)}")
    if data.size == 0:
        raise InputError(label, f"image has no pixels (shape {tuple(data.shape)})")
    if min(data.shape) < MIN_SIDE:
        raise InputError(
            label,
            f"image of {data.shape[0]}x{data.shape[1]} pixels is too small: SR needs at least "
            f"{MIN_SIDE}x{MIN_SIDE}",
        )
    if not np.issubdtype(data.dtype, np.number) or np.iscomplexobj(data):
        raise InputError(label, f"unsupported pixel type {data.dtype}")
    out = np.ascontiguousarray(data, dtype=np.float32)
    bad = ~np.isfinite(out)
    if bad.any():
        raise InputError(label, f"{int(bad.sum())} pixels are NaN or infinite")
    return out


def _squeeze_2d(arr: np.ndarray, label: str) -> np.ndarray:
    """Drop length-1 axes while more than two axes remain (``(1, h, w)`` -> ``(h, w)``); a
    2-D ``(1, N)`` stays 2-D so its message can say it is too small, not the wrong shape."""
    sq = arr
    while sq.ndim > 2 and 1 in sq.shape:
        sq = np.squeeze(sq, axis=sq.shape.index(1))
    if sq.ndim != 2:
        raise InputError(label, f"expected one 2-D image, got shape {tuple(arr.shape)}")
    return sq


# ----------------------------------------------------------------------------------- npy


def _npy_header(raw: bytes, label: str) -> tuple[tuple[int, ...], np.dtype, int]:
    """``(shape, dtype, data offset)`` of a .npy file, read from its header only."""
    fh = io.BytesIO(raw)
    try:
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(fh)
        else:
            shape, _, dtype = np.lib.format.read_array_header_2_0(fh)
    except (ValueError, OSError, EOFError, SyntaxError) as exc:
        raise InputError(label, f"corrupt .npy file ({one_line(exc)})") from exc
    return tuple(int(n) for n in shape), dtype, fh.tell()


def _read_npy(raw: bytes, label: str, guard: _Guard) -> tuple[np.ndarray, dict[str, Any]]:
    if not raw.startswith(b"\x93NUMPY"):
        if raw[:1] == b"\x80":  # pickle protocol >= 2 (what np.save(allow_pickle) of objects gives)
            raise InputError(label, "pickled .npy files are refused")
        raise InputError(label, "corrupt .npy file (no NumPy header)")
    shape, dtype, offset = _npy_header(raw, label)
    if dtype.hasobject:
        raise InputError(label, "pickled .npy files are refused")
    guard.declare(shape, dtype.itemsize, "the .npy header ")
    need = math.prod(shape) * dtype.itemsize
    if len(raw) - offset < need:
        raise InputError(
            label,
            f"corrupt .npy file (truncated: the header declares {_fmt_shape(shape)} {dtype} = "
            f"{need:,} bytes, the file holds {len(raw) - offset:,})",
        )
    try:
        arr = np.load(io.BytesIO(raw), allow_pickle=False)
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            raise InputError(label, "pickled .npy files are refused") from exc
        raise InputError(label, f"corrupt .npy file ({one_line(exc)})") from exc
    except (OSError, EOFError) as exc:
        raise InputError(label, f"corrupt .npy file ({one_line(exc)})") from exc
    if not isinstance(arr, np.ndarray):
        raise InputError(label, "not a single .npy array")
    if arr.dtype.fields is not None:
        raise InputError(label, f"structured array dtype {arr.dtype} is not an image")
    return _squeeze_2d(arr, label), {"shape": tuple(arr.shape), "dtype": str(arr.dtype)}


def _write_npy(data: np.ndarray, like: LoadedImage) -> bytes:
    orig = tuple(like.meta.get("shape", like.data.shape))
    big = [i for i, n in enumerate(orig) if n != 1]
    shape = list(orig)
    if len(big) == 2:
        shape[big[0]], shape[big[1]] = data.shape
    else:  # degenerate original (e.g. a 1xN image): fall back to the plain 2-D shape
        shape = list(data.shape)
    buf = io.BytesIO()
    np.save(buf, data.astype(np.float32).reshape(shape), allow_pickle=False)
    return buf.getvalue()


# ----------------------------------------------------------------------------------- FITS


_FITS_BLOCK = 2880
_MAX_HEADER_BLOCKS = 1000  # 1000 blocks = 36,000 cards: more is not a real FITS header
_INFLATE_STEP = 16 * MiB


class _Inflow:
    """A FITS file's bytes, gunzipped on demand as a stream: never more than ``cap`` bytes,
    and only as far as the reader asks (the end of the image it uses)."""

    def __init__(self, raw: bytes, gz: bool, cap: int, label: str) -> None:
        self.raw, self.gz, self.cap, self.label = raw, gz, cap, label
        self._buf = bytearray()
        self._tail = raw
        self._d = zlib.decompressobj(wbits=31) if gz else None

    def fill(self, n: int) -> int:
        """Make the first ``n`` bytes available (fewer at the end of the data); returns how many
        bytes are available.

        Raises:
            InputError: corrupt gzip data, or a stream that expands beyond ``cap`` bytes.
        """
        if self._d is None:
            return len(self.raw)
        if n > self.cap:
            raise InputError(
                self.label,
                f"gzipped FITS needs {n / MiB:.0f} MiB decompressed, more than the limit of "
                f"{self.cap / MiB:.0f} MiB (refused before decompressing it)",
            )
        while len(self._buf) < n and not self._d.eof and self._tail:
            want = min(n - len(self._buf), _INFLATE_STEP)
            try:
                chunk = self._d.decompress(self._tail, want)
            except zlib.error as exc:
                raise InputError(self.label, f"corrupt gzip data ({one_line(exc)})") from exc
            self._tail = self._d.unconsumed_tail
            self._buf += chunk
        return len(self._buf)

    @property
    def truncated(self) -> bool:
        """True when the gzip stream ended before its end-of-stream marker."""
        return self._d is not None and not self._d.eof and not self._tail

    def head(self, n: int) -> bytes:
        """The first ``n`` bytes (as far as available)."""
        if self._d is None:
            return self.raw[:n]
        return bytes(self._buf[:n])


def _fits_header_cards(stream: _Inflow, offset: int, label: str) -> tuple[dict[str, str], int]:
    """Keyword -> raw value text of the header starting at ``offset``, and the offset of the
    end of that header (start of its data). Only the header blocks are decompressed."""
    cards: dict[str, str] = {}
    for k in range(_MAX_HEADER_BLOCKS):
        start = offset + k * _FITS_BLOCK
        if stream.fill(start + _FITS_BLOCK) < start + _FITS_BLOCK:
            if stream.truncated:
                raise InputError(label, "corrupt gzip data (truncated)")
            raise InputError(label, "corrupt FITS file (truncated header, no END card)")
        block = stream.head(start + _FITS_BLOCK)[start:]
        text = block.decode("ascii", errors="replace")
        for i in range(0, _FITS_BLOCK, 80):
            card = text[i : i + 80]
            key = card[:8].rstrip()
            if key == "END":
                return cards, start + _FITS_BLOCK
            if card[8:10] == "= " and key not in cards:
                value = card[10:].split("/", 1)[0].strip()
                cards[key] = value.strip("'").strip()
    raise InputError(label, f"corrupt FITS file (no END card in {_MAX_HEADER_BLOCKS} blocks)")


def _int_card(cards: dict[str, str], key: str, default: int | None, label: str) -> int:
    if key not in cards:
        if default is None:
            raise InputError(label, f"corrupt FITS file (missing {key})")
        return default
    try:
        return int(float(cards[key]))
    except ValueError as exc:
        raise InputError(label, f"corrupt FITS file ({key} = {cards[key]!r})") from exc


def _fits_image_end(stream: _Inflow, label: str, guard: _Guard) -> int:
    """Walk the HDU headers to the first image with data (as astropy would pick it), check
    its declared size against the limits, and return the byte offset where its data end.

    Raises:
        InputError: not FITS, a corrupt or truncated header or data, no image, over the limits.
    """
    if stream.fill(_FITS_BLOCK) < 9 or not stream.head(9).startswith(b"SIMPLE  ="):
        if stream.truncated:
            raise InputError(label, "corrupt gzip data (truncated)")
        raise InputError(label, "corrupt FITS file (it does not start with SIMPLE =)")
    offset, index = 0, 0
    while True:
        if index > 0 and stream.fill(offset + 8) < offset + 8:
            raise InputError(label, "FITS file has no image data")
        cards, data_start = _fits_header_cards(stream, offset, label)
        if index > 0 and "XTENSION" not in cards:
            raise InputError(label, "FITS file has no image data")
        bitpix = _int_card(cards, "BITPIX", None, label)
        naxis = [
            _int_card(cards, f"NAXIS{i}", None, label)
            for i in range(1, _int_card(cards, "NAXIS", None, label) + 1)
        ]
        if bitpix not in (8, 16, 32, 64, -32, -64) or any(n < 0 for n in naxis):
            raise InputError(label, f"corrupt FITS file (BITPIX {bitpix}, NAXIS {naxis})")
        gcount = _int_card(cards, "GCOUNT", 1, label)
        pcount = _int_card(cards, "PCOUNT", 0, label)
        size = abs(bitpix) // 8 * gcount * (pcount + math.prod(naxis)) if naxis else 0
        xtension = cards.get("XTENSION", "")
        is_image = (index == 0 or xtension == "IMAGE") and naxis and math.prod(naxis) > 0
        is_tiled = xtension == "BINTABLE" and cards.get("ZIMAGE") == "T"
        if is_image or is_tiled:
            if is_tiled:
                zn = _int_card(cards, "ZNAXIS", None, label)
                dims = [_int_card(cards, f"ZNAXIS{i}", None, label) for i in range(1, zn + 1)]
                itemsize = abs(_int_card(cards, "ZBITPIX", None, label)) // 8
            else:
                dims, itemsize = naxis, abs(bitpix) // 8
            guard.declare(tuple(reversed(dims)), itemsize, "the FITS header ")
            if size > guard.limits.max_decoded_bytes + 2 * _FITS_BLOCK:
                raise InputError(
                    label,
                    f"the FITS header declares {size / MiB:.0f} MiB of data, more than the "
                    f"limit of {guard.limits.max_decoded_bytes / MiB:.0f} MiB",
                )
            end = data_start + size
            have = stream.fill(end)
            if have < end:
                raise InputError(
                    label,
                    f"corrupt FITS file (truncated: the header declares {size:,} data bytes, "
                    f"the file holds {max(have - data_start, 0):,})",
                )
            padded = -(-end // _FITS_BLOCK) * _FITS_BLOCK
            return min(padded, stream.fill(padded))
        offset = data_start + -(-size // _FITS_BLOCK) * _FITS_BLOCK
        index += 1


def _read_fits(raw: bytes, label: str, guard: _Guard) -> tuple[np.ndarray, dict[str, Any]]:
    from astropy.io import fits

    is_gz = raw.startswith(b"\x1f\x8b")
    stream = _Inflow(raw, is_gz, guard.limits.max_decoded_bytes, label)
    end = _fits_image_end(stream, label, guard)
    raw = stream.head(end)  # only the HDUs up to the image: nothing after it is decoded
    del stream
    try:
        # astropy's notes on fixable headers are not the user's business: silence them.
        with (
            warnings.catch_warnings(action="ignore"),
            fits.open(io.BytesIO(raw), memmap=False, lazy_load_hdus=False) as hdul,
        ):
            for idx, hdu in enumerate(hdul):
                if not isinstance(hdu, (fits.PrimaryHDU, fits.ImageHDU, fits.CompImageHDU)):
                    continue
                data = hdu.data
                if data is None:
                    continue
                if data.ndim != 2:
                    raise InputError(label, f"expected one 2-D image, got shape {data.shape}")
                compressed = isinstance(hdu, fits.CompImageHDU)
                meta: dict[str, Any] = {
                    "header": hdu.header.copy(),
                    "hdu_index": idx,
                    "compressed": compressed,
                    "compression_type": hdu.compression_type if compressed else None,
                    "gzip": is_gz,
                }
                if idx > 0:
                    meta["primary_header"] = hdul[0].header.copy()
                return np.array(data, dtype=np.float32), meta
    except InputError:
        raise
    except MemoryError:
        raise
    except Exception as exc:  # astropy raises OSError, ValueError, TypeError, ... on bad files
        raise InputError(label, f"corrupt FITS file ({one_line(exc)})") from exc
    raise InputError(label, "FITS file has no image data")


_WCS_SUFFIX = "[A-Z]?"
_CD_RE = re.compile(rf"^CD[12]_[12]{_WCS_SUFFIX}$")
_CDELT_RE = re.compile(rf"^CDELT[12]{_WCS_SUFFIX}$")
_CRPIX_RE = re.compile(rf"^CRPIX[12]{_WCS_SUFFIX}$")
_SIP_RE = re.compile(r"^(A|B|AP|BP)_(\d+)_(\d+)$")
_STALE = ("BSCALE", "BZERO", "BLANK", "DATAMIN", "DATAMAX", "CHECKSUM", "DATASUM")


def rescale_fits_header(header: Any, scale: float) -> Any:
    """A copy of ``header`` with its WCS moved to a pixel grid ``scale`` times finer.

    Pixel ``x`` (1-based) of the input covers ``[x - 0.5, x + 0.5]``; on the new grid the same
    sky lies at ``(x - 0.5) * scale + 0.5``. So ``CRPIXi -> (CRPIXi - 0.5) * scale + 0.5``,
    ``CDi_j / scale`` and ``CDELTi / scale`` (``PCi_j`` unchanged), also for alternate WCS
    letters; SIP polynomials ``A_p_q`` etc. are multiplied by ``scale ** (1 - p - q)``.
    """
    hdr = header.copy()
    s = float(scale)
    if s == 1.0:
        return hdr
    for key in list(hdr.keys()):
        if not isinstance(key, str) or key in ("", "HISTORY", "COMMENT"):
            continue
        value = hdr[key]
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            continue
        if _CRPIX_RE.match(key):
            hdr[key] = (value - 0.5) * s + 0.5
        elif _CD_RE.match(key) or _CDELT_RE.match(key):
            hdr[key] = value / s
        elif m := _SIP_RE.match(key):
            p, q = int(m.group(2)), int(m.group(3))
            hdr[key] = value * s ** (1 - p - q)
        elif key in ("A_DMAX", "B_DMAX"):
            hdr[key] = value * s
    return hdr


#: A surface-brightness unit: a flux unit per arcsec^2 or per steradian.
_PER_AREA = re.compile(
    r"^(?P<flux>.+?)\s*(?P<area>/\s*arcsec\s*(\^|\*\*)?\s*2|\s+arcsec\s*(\^|\*\*)?\s*-2"
    r"|/\s*sr|\s+sr\s*(\^|\*\*)?\s*-1)$",
    re.IGNORECASE,
)


def _pixel_area(header: Any, area_unit: str) -> float | None:
    """Area of one pixel of ``header``'s celestial WCS in arcsec^2 (or sr when ``area_unit``
    names steradians), or None without a usable WCS."""
    if header is None:
        return None
    try:
        from astropy.wcs import WCS
        from astropy.wcs.utils import proj_plane_pixel_area

        with warnings.catch_warnings(action="ignore"):
            wcs = WCS(header)
            if not wcs.has_celestial:
                return None
            deg2 = float(proj_plane_pixel_area(wcs.celestial))
    except Exception:  # no or broken WCS: the unit says "per input pixel"
        return None
    if not deg2 > 0:
        return None
    return deg2 * (np.pi / 180) ** 2 if "sr" in area_unit.lower() else deg2 * 3600.0**2


def _write_fits(
    data: np.ndarray,
    like: LoadedImage,
    scale: float,
    history: str | None,
    conserve_flux: bool,
    extra_hdus: dict[str, np.ndarray] | None = None,
) -> bytes:
    from astropy.io import fits

    meta = like.meta
    header = rescale_fits_header(meta.get("header", fits.Header()), scale)
    for key in _STALE:
        header.remove(key, ignore_missing=True, remove_all=True)
    for key in ("ZIMAGE", "ZBITPIX", "ZNAXIS", "ZCMPTYPE", "ZQUANTIZ", "ZDITHER0"):
        header.remove(key, ignore_missing=True, remove_all=True)
    if conserve_flux:
        note = f"per-pixel flux: values divided by scale**2 = {scale**2:g}"
        header["FLUXCONV"] = ("flux", "pixel values conserve total flux per pixel")
        unit = header.get("BUNIT")
        if isinstance(unit, str) and (m := _PER_AREA.match(unit.strip())):
            # The values are no longer per unit area: each pixel holds its flux divided by
            # the area of an *input* pixel (so that sum(values) * LR pixel area = total flux).
            flux = m.group("flux").strip()
            area = _pixel_area(meta.get("header"), m.group("area"))
            label = "arcsec2" if "arcsec" in m.group("area").lower() else "sr"
            header["BUNIT"] = (
                f"{flux}/({area:.6g} {label})" if area else f"{flux} per input pixel",
                "flux per pixel over the input pixel's area",
            )
            if area:
                header["LRPIXAR"] = (area, f"input (LR) pixel area [{label}]")
    else:
        note = "surface brightness: pixel values keep the input's units per unit area"
        header["FLUXCONV"] = ("surface brightness", "pixel values are surface brightness")
    header["SRSCALE"] = (float(scale), "pixel grid refined by this factor")
    if history:
        header.add_history(history)
    header.add_history(f"lenssr: resampled x{scale:g}; {note}")

    arr = np.ascontiguousarray(data, dtype=np.float32)
    if meta.get("compressed"):
        # Tile compression of floats is lossy by default (quantisation): keep it lossless.
        primary = fits.PrimaryHDU(header=meta.get("primary_header"))
        hdu = fits.CompImageHDU(arr, header=header, compression_type="GZIP_2", quantize_level=0.0)
        hdul = fits.HDUList([primary, hdu])
    elif meta.get("hdu_index", 0) > 0:
        primary = fits.PrimaryHDU(header=meta.get("primary_header"))
        hdul = fits.HDUList([primary, fits.ImageHDU(arr, header=header)])
    else:
        hdul = fits.HDUList([fits.PrimaryHDU(arr, header=header)])
    for extname, extra in (extra_hdus or {}).items():
        # same grid as the image: its celestial WCS and units, named by EXTNAME
        ext_header = fits.Header()
        for card in header.cards:
            if card.keyword in _WCS_KEYS or card.keyword.startswith(_WCS_PREFIXES):
                ext_header.append(card)
        if "BUNIT" in header:
            ext_header["BUNIT"] = header["BUNIT"]
        ext_header["EXTNAME"] = extname
        hdul.append(fits.ImageHDU(np.ascontiguousarray(extra, dtype=np.float32), ext_header))
    buf = io.BytesIO()
    hdul.writeto(buf, output_verify="silentfix")
    out = buf.getvalue()
    if meta.get("gzip"):
        out = gzip.compress(out, compresslevel=6, mtime=0)
    return out


# ----------------------------------------------------------------------------- PNG / TIFF


def _gray_from_channels(arr: np.ndarray, label: str) -> np.ndarray:
    """``(H, W, C)`` -> ``(H, W)`` when all colour channels are equal, else an InputError."""
    color = arr[..., :3] if arr.shape[-1] >= 3 else arr[..., :1]
    if not all(np.array_equal(color[..., 0], color[..., c]) for c in range(color.shape[-1])):
        raise InputError(
            label, "colour image (channels differ): save a single-channel (grayscale) image"
        )
    return color[..., 0]


#: Bytes per pixel of the decoded array for each Pillow mode (P and 1 are converted first).
_PIL_BYTES = {"1": 1, "L": 1, "LA": 2, "P": 4, "PA": 4, "RGB": 3, "RGBA": 4, "I": 4, "F": 4,
              "I;16": 2, "I;16B": 2, "I;16L": 2}  # fmt: skip


#: Decoded bytes per pixel for each PNG colour type (palette images become RGBA).
_PNG_CHANNELS = {0: 1, 2: 3, 3: 4, 4: 2, 6: 4}


def _read_png(raw: bytes, label: str, guard: _Guard) -> tuple[np.ndarray, dict[str, Any]]:
    from PIL import Image, UnidentifiedImageError

    if raw.startswith(b"\x89PNG\r\n\x1a\n") and raw[12:16] == b"IHDR" and len(raw) >= 26:
        # The IHDR chunk declares the size: check it before Pillow looks at anything else.
        width, height = struct.unpack(">II", raw[16:24])
        depth = 2 if raw[24] == 16 else 1
        guard.declare((height, width), depth * _PNG_CHANNELS.get(raw[25], 4), "the PNG header ")
    try:
        with Image.open(io.BytesIO(raw)) as img:
            if img.format != "PNG":
                raise InputError(label, f"not a PNG file (content is {img.format})")
            if getattr(img, "n_frames", 1) > 1:
                raise InputError(label, "animated PNG: expected one image")
            mode = img.mode
            width, height = img.size
            guard.declare((height, width), _PIL_BYTES.get(mode, 4), "the PNG header ")
            if mode == "P":
                img = img.convert("RGBA")
            elif mode == "1":
                img = img.convert("L")
            arr = np.array(img)
    except InputError:
        raise
    except MemoryError:
        raise
    except UnidentifiedImageError as exc:
        raise InputError(label, "corrupt PNG file (not a readable PNG image)") from exc
    except Exception as exc:
        raise InputError(label, f"corrupt PNG file ({one_line(exc)})") from exc
    if arr.ndim == 3:
        arr = _gray_from_channels(arr, label)
    if arr.dtype == np.uint8 or mode in ("P", "1"):
        dtype = "uint8"
    else:  # 16-bit PNG ("I;16", "I"): stored as 16-bit unsigned samples
        dtype = "uint16"
    return arr, {"dtype": dtype, "bits": np.dtype(dtype).itemsize * 8, "mode": mode}


#: TIFF compression codes of zlib/deflate, whose strips are checked before decoding.
_DEFLATE = (8, 32946)


def _check_deflate_strips(raw: bytes, page: Any, label: str) -> None:
    """Stream-decompress each deflate strip or tile of ``page`` (discarding the output) and
    refuse the file if one expands beyond the page's declared size: a 1 MB strip can hold
    1 GB of zeros, which the TIFF decoder would otherwise inflate in one piece."""
    cap = int(page.nbytes)
    for offset, count in zip(page.dataoffsets, page.databytecounts, strict=False):
        data = raw[int(offset) : int(offset) + int(count)]
        d = zlib.decompressobj()
        seen = 0
        while data and not d.eof:
            try:
                seen += len(d.decompress(data, MiB))
            except zlib.error as exc:
                raise InputError(label, f"corrupt TIFF file (bad deflate strip: {exc})") from exc
            data = d.unconsumed_tail
            if seen > cap:
                raise InputError(
                    label,
                    f"a TIFF strip expands beyond the image's declared {cap:,} bytes "
                    "(refusing a possible decompression bomb)",
                )


def _read_tiff(raw: bytes, label: str, guard: _Guard) -> tuple[np.ndarray, dict[str, Any]]:
    import tifffile

    try:
        with tifffile.TiffFile(io.BytesIO(raw)) as tif:
            if len(tif.series) == 0:
                raise InputError(label, "TIFF file has no image")
            n_series = len(tif.series)
            if n_series > 1:
                raise InputError(label, f"TIFF file holds {n_series} images: expected one")
            series = tif.series[0]
            axes = series.axes
            guard.declare(tuple(series.shape), series.dtype.itemsize, "the TIFF file ")
            for page in series.pages:
                if page is not None and int(getattr(page, "compression", 1)) in _DEFLATE:
                    _check_deflate_strips(raw, page, label)
            arr = series.asarray()
    except InputError:
        raise
    except MemoryError:
        raise
    except Exception as exc:
        raise InputError(label, f"corrupt TIFF file ({one_line(exc)})") from exc
    if axes.endswith("S") and arr.ndim >= 3:
        arr = _gray_from_channels(np.squeeze(arr, axis=tuple(range(arr.ndim - 3))), label)
    arr = _squeeze_2d(arr, label)
    dt = arr.dtype
    if not np.issubdtype(dt, np.number) or np.iscomplexobj(arr):
        raise InputError(label, f"unsupported TIFF sample type {dt}")
    dtype = str(dt) if np.issubdtype(dt, np.integer) else "float32"
    return arr, {"dtype": dtype, "bits": dt.itemsize * 8}


class ClippingWarning(UserWarning):
    """Result values fell outside the integer range of the output's bit depth and were clipped
    (batch code records it as a note of that file)."""


def _to_stored_dtype(data: np.ndarray, dtype: str, fmt: str = "PNG") -> np.ndarray:
    dt = np.dtype(dtype)
    if np.issubdtype(dt, np.integer):
        info = np.iinfo(dt)
        rounded = np.rint(data)
        low, high = int((rounded < info.min).sum()), int((rounded > info.max).sum())
        if low or high:
            lo, hi = float(data.min()), float(data.max())
            warnings.warn(
                ClippingWarning(
                    f"{low + high} values outside {info.min}..{info.max} clipped to the "
                    f"{dt.itemsize * 8}-bit {fmt} range (result spans {lo:.6g}..{hi:.6g}); "
                    "convert the input to FITS or a float32 TIFF to keep the full range"
                ),
                stacklevel=3,
            )
        return np.clip(rounded, info.min, info.max).astype(dt)
    return data.astype(np.float32)


def _write_png(data: np.ndarray, like: LoadedImage) -> bytes:
    from PIL import Image

    dtype = "uint8" if like.meta.get("dtype") == "uint8" else "uint16"
    img = Image.fromarray(_to_stored_dtype(data, dtype))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _write_tiff(data: np.ndarray, like: LoadedImage) -> bytes:
    import tifffile

    buf = io.BytesIO()
    tifffile.imwrite(
        buf,
        _to_stored_dtype(data, like.meta.get("dtype", "float32"), "TIFF"),
        photometric="minisblack",
    )
    return buf.getvalue()


# ---------------------------------------------------------------------------------- write


#: Header keywords copied onto extra FITS image HDUs (same pixel grid as the image).
_WCS_KEYS = ("WCSAXES", "RADESYS", "EQUINOX", "LONPOLE", "LATPOLE", "MJDREF", "DATEREF")
_WCS_PREFIXES = ("CTYPE", "CUNIT", "CRVAL", "CRPIX", "CDELT", "CD1_", "CD2_", "PC1_", "PC2_")


def encode_image(
    data: np.ndarray,
    like: LoadedImage,
    scale: float = 1.0,
    history: str | None = None,
    conserve_flux: bool = False,
    extra_hdus: dict[str, np.ndarray] | None = None,
) -> bytes:
    """The bytes :func:`write_image` would write (same arguments, no destination).

    ``extra_hdus`` (FITS only): more float32 images on the same grid, appended as image HDUs
    named by their keys (``EXTNAME``) with the image's WCS and ``BUNIT``; they are divided by
    ``scale**2`` too with ``conserve_flux``.
    """
    arr = np.asarray(data)
    if arr.ndim != 2:
        raise ValueError(f"write_image expects a 2-D (H, W) array, got shape {arr.shape}")
    arr = arr.astype(np.float32)
    if not np.isfinite(arr).all():
        raise InputError(like.name, "result contains NaN or infinite values")
    if conserve_flux:
        arr = arr / np.float32(float(scale) ** 2)
    if like.fmt == "npy":
        return _write_npy(arr, like)
    if like.fmt == "fits":
        extras = {}
        for key, extra in (extra_hdus or {}).items():
            ext = np.asarray(extra, dtype=np.float32)
            if ext.shape != arr.shape:
                raise ValueError(f"extra HDU {key} has shape {ext.shape}, the image {arr.shape}")
            extras[key] = ext / np.float32(float(scale) ** 2) if conserve_flux else ext
        return _write_fits(arr, like, scale, history, conserve_flux, extras)
    if like.fmt == "png":
        return _write_png(arr, like)
    if like.fmt == "tiff":
        return _write_tiff(arr, like)
    raise ValueError(f"unknown image format {like.fmt!r}")


def write_image(
    path_or_buffer: str | Path | BinaryIO,
    data: np.ndarray,
    like: LoadedImage,
    scale: float = 1.0,
    history: str | None = None,
    conserve_flux: bool = False,
    extra_hdus: dict[str, np.ndarray] | None = None,
) -> None:
    """Write ``data`` in the format of ``like`` (the image it was computed from).

    Args:
        path_or_buffer: destination path (parent folders are created) or a binary file object.
        data: ``(sH, sW)`` result in the input's units (surface brightness).
        like: the input image; its format and metadata (FITS header, bit depth, npy shape) are
            reused.
        scale: pixel-grid refinement factor ``s`` (FITS WCS is rescaled by it).
        history: text of a FITS ``HISTORY`` card (e.g. ``"lenssr hybrid x2"``).
        conserve_flux: if True, divide values by ``s**2`` so each output pixel holds its share of
            the input pixel's flux; by default values stay surface brightness (the convention
            is stated in a ``FLUXCONV`` card). A surface-brightness FITS ``BUNIT`` (per
            arcsec^2 or per sr) is then rewritten as flux per input-pixel area, e.g.
            ``e-/s/(0.0025 arcsec2)``, with the LR pixel area in ``LRPIXAR``.
        extra_hdus: FITS only: companion maps as extra image HDUs (see :func:`encode_image`).

    Raises:
        InputError: the result holds NaN or infinite values.
        ValueError: ``data`` is not 2-D or ``like.fmt`` is unknown.
    """
    raw = encode_image(data, like, scale, history, conserve_flux, extra_hdus)
    if isinstance(path_or_buffer, (str, Path)):
        path = Path(path_or_buffer)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(raw)
    else:
        path_or_buffer.write(raw)
