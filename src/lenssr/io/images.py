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
  range; float TIFF stays ``float32``).
"""

from __future__ import annotations

import gzip
import io
import re
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

#: Largest decompressed size of a gzipped FITS file (bytes); bigger files are refused.
MAX_GUNZIP_BYTES = 4 * 1024**3


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


def read_image(source: str | Path | bytes, name: str | None = None) -> LoadedImage:
    """Read one single-channel image as ``(H, W)`` float32.

    Args:
        source: a path, or the file's bytes (e.g. an archive member or an upload).
        name: the name used in messages and to pick the format from its extension; defaults
            to the path. With bytes and no name the format is guessed from the content.

    Raises:
        InputError: missing, empty, corrupt or pickled file; unknown extension; not exactly one
            2-D image; RGB with different channels; NaN or infinite pixels.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        raw = bytes(source)
        label = name or "<bytes>"
    else:
        path = Path(source)
        label = name or str(path)
        if not path.is_file():
            raise InputError(label, "no such file")
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise InputError(label, f"cannot read file ({exc.strerror or exc})") from exc
        name = name or path.name
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
    data, meta = reader(raw, label)
    data = _check_pixels(data, label)
    return LoadedImage(data=data, name=label, fmt=fmt, meta=meta)


def _check_pixels(data: np.ndarray, label: str) -> np.ndarray:
    if data.ndim != 2:
        raise InputError(label, f"expected one 2-D image, got shape {tuple(data.shape)}")
    if data.size == 0:
        raise InputError(label, f"image has no pixels (shape {tuple(data.shape)})")
    if not np.issubdtype(data.dtype, np.number) or np.iscomplexobj(data):
        raise InputError(label, f"unsupported pixel type {data.dtype}")
    out = np.ascontiguousarray(data, dtype=np.float32)
    bad = ~np.isfinite(out)
    if bad.any():
        raise InputError(label, f"{int(bad.sum())} pixels are NaN or infinite")
    return out


def _squeeze_2d(arr: np.ndarray, label: str) -> np.ndarray:
    sq = np.squeeze(arr)
    if sq.ndim != 2:
        raise InputError(label, f"expected one 2-D image, got shape {tuple(arr.shape)}")
    return sq


# ----------------------------------------------------------------------------------- npy


def _read_npy(raw: bytes, label: str) -> tuple[np.ndarray, dict[str, Any]]:
    if not raw.startswith(b"\x93NUMPY"):
        if raw[:1] == b"\x80":  # pickle protocol >= 2 (what np.save(allow_pickle) of objects gives)
            raise InputError(label, "pickled .npy files are refused")
        raise InputError(label, "corrupt .npy file (no NumPy header)")
    try:
        arr = np.load(io.BytesIO(raw), allow_pickle=False)
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            raise InputError(label, "pickled .npy files are refused") from exc
        raise InputError(label, f"corrupt .npy file ({exc})") from exc
    except (OSError, EOFError) as exc:
        raise InputError(label, f"corrupt .npy file ({exc})") from exc
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


def _gunzip(raw: bytes, label: str) -> bytes:
    d = zlib.decompressobj(wbits=31)
    try:
        out = d.decompress(raw, MAX_GUNZIP_BYTES)
    except zlib.error as exc:
        raise InputError(label, f"corrupt gzip data ({exc})") from exc
    if d.unconsumed_tail:
        raise InputError(label, f"gzipped file expands beyond {MAX_GUNZIP_BYTES} bytes")
    if not d.eof:
        raise InputError(label, "corrupt gzip data (truncated)")
    return out


def _read_fits(raw: bytes, label: str) -> tuple[np.ndarray, dict[str, Any]]:
    from astropy.io import fits

    is_gz = raw.startswith(b"\x1f\x8b")
    if is_gz:
        raw = _gunzip(raw, label)
    try:
        with fits.open(io.BytesIO(raw), memmap=False, lazy_load_hdus=False) as hdul:
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
    except Exception as exc:  # astropy raises OSError, ValueError, TypeError, ... on bad files
        raise InputError(label, f"corrupt FITS file ({exc})") from exc
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


def _write_fits(
    data: np.ndarray,
    like: LoadedImage,
    scale: float,
    history: str | None,
    conserve_flux: bool,
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


def _read_png(raw: bytes, label: str) -> tuple[np.ndarray, dict[str, Any]]:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(raw)) as img:
            if img.format != "PNG":
                raise InputError(label, f"not a PNG file (content is {img.format})")
            if getattr(img, "n_frames", 1) > 1:
                raise InputError(label, "animated PNG: expected one image")
            mode = img.mode
            if mode == "P":
                img = img.convert("RGBA")
            elif mode == "1":
                img = img.convert("L")
            arr = np.array(img)
    except InputError:
        raise
    except Exception as exc:
        raise InputError(label, f"corrupt PNG file ({exc})") from exc
    if arr.ndim == 3:
        arr = _gray_from_channels(arr, label)
    if arr.dtype == np.uint8 or mode in ("P", "1"):
        dtype = "uint8"
    else:  # 16-bit PNG ("I;16", "I"): stored as 16-bit unsigned samples
        dtype = "uint16"
    return arr, {"dtype": dtype, "bits": np.dtype(dtype).itemsize * 8, "mode": mode}


def _read_tiff(raw: bytes, label: str) -> tuple[np.ndarray, dict[str, Any]]:
    import tifffile

    try:
        with tifffile.TiffFile(io.BytesIO(raw)) as tif:
            if len(tif.series) == 0:
                raise InputError(label, "TIFF file has no image")
            series = tif.series[0]
            axes = series.axes
            arr = series.asarray()
            n_series = len(tif.series)
    except InputError:
        raise
    except Exception as exc:
        raise InputError(label, f"corrupt TIFF file ({exc})") from exc
    if n_series > 1:
        raise InputError(label, f"TIFF file holds {n_series} images: expected one")
    if axes.endswith("S") and arr.ndim >= 3:
        arr = _gray_from_channels(np.squeeze(arr, axis=tuple(range(arr.ndim - 3))), label)
    arr = _squeeze_2d(arr, label)
    dt = arr.dtype
    if not np.issubdtype(dt, np.number) or np.iscomplexobj(arr):
        raise InputError(label, f"unsupported TIFF sample type {dt}")
    dtype = str(dt) if np.issubdtype(dt, np.integer) else "float32"
    return arr, {"dtype": dtype, "bits": dt.itemsize * 8}


def _to_stored_dtype(data: np.ndarray, dtype: str) -> np.ndarray:
    dt = np.dtype(dtype)
    if np.issubdtype(dt, np.integer):
        info = np.iinfo(dt)
        return np.clip(np.rint(data), info.min, info.max).astype(dt)
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
        buf, _to_stored_dtype(data, like.meta.get("dtype", "float32")), photometric="minisblack"
    )
    return buf.getvalue()


# ---------------------------------------------------------------------------------- write


def encode_image(
    data: np.ndarray,
    like: LoadedImage,
    scale: float = 1.0,
    history: str | None = None,
    conserve_flux: bool = False,
) -> bytes:
    """The bytes :func:`write_image` would write (same arguments, no destination)."""
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
        return _write_fits(arr, like, scale, history, conserve_flux)
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
            the input pixel's flux; by default values stay surface brightness (FITS ``BUNIT``
            is never changed; the convention is stated in a ``FLUXCONV`` card).

    Raises:
        InputError: the result holds NaN or infinite values.
        ValueError: ``data`` is not 2-D or ``like.fmt`` is unknown.
    """
    raw = encode_image(data, like, scale, history, conserve_flux)
    if isinstance(path_or_buffer, (str, Path)):
        path = Path(path_or_buffer)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(raw)
    else:
        path_or_buffer.write(raw)
