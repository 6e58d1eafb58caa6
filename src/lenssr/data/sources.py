"""Sources of LR/HR pairs and of LR-only images: our HDF5 files, DeepLense folders, zips of them.

A source is indexable (``src[i]``) and opens files lazily, once per process, so it can be handed
to ``torch.utils.data.DataLoader`` workers (HDF5 and zip handles are dropped when pickled and
reopened in the worker).

DeepLense layout: ``DIR/LR/<name>`` and ``DIR/HR/<name>`` (``.npy``, FITS, PNG or TIFF), matched
by relative file name; a leading or trailing ``LR``/``HR`` token is ignored when matching
(``LR/LR_12.npy`` pairs with ``HR/HR_12.npy``). Optional ``DIR/metadata.json`` gives class
labels, either ``{"classes": [...], "labels": {name: label}}`` or a list of
``{"name": ..., "label": ...}`` records (also under a ``"samples"`` key); a label is a class
index or a class name, ``name`` is the LR file name (with or without folder/extension).

Every source of pairs says which simulation preset made it (``PairSource.preset_config``, the
JSON config ``lenssr simulate`` records: an HDF5 file's attribute ``preset``, a DeepLense
folder's ``metadata.json`` key ``"preset"``), or None for data that record none.
"""

from __future__ import annotations

import json
import os
import re
import zipfile
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from lenssr.errors import InputError, LenssrError
from lenssr.io.batch import ZipLimits, check_zip_infos, read_member, sanitize_member_name
from lenssr.io.images import LoadedImage, is_image_name, read_image

H5_SUFFIXES = (".h5", ".hdf5", ".hdf")
_MAX_LISTED = 5


def _listing(items: Sequence[str]) -> str:
    shown = ", ".join(items[:_MAX_LISTED])
    more = len(items) - _MAX_LISTED
    return shown + (f" and {more} more" if more > 0 else "")


# ------------------------------------------------------------------------------- stores


class _Store:
    """Read-only access to image files by relative name (a folder or a zip archive)."""

    label: str

    def names(self) -> list[str]:
        raise NotImplementedError

    def read(self, name: str) -> LoadedImage:
        raise NotImplementedError

    def shape(self, name: str) -> tuple[int, ...]:
        """``(H, W)`` of an image, read cheaply from the header for ``.npy``."""
        return self.read(name).shape


class _DirStore(_Store):
    def __init__(self, root: Path) -> None:
        self.root = root
        self.label = str(root)

    def names(self) -> list[str]:
        files = sorted(p for p in self.root.rglob("*") if p.is_file())
        rels = [p.relative_to(self.root).as_posix() for p in files]
        return [r for r in rels if is_image_name(r) and not PurePosixPath(r).name.startswith(".")]

    def read(self, name: str) -> LoadedImage:
        return read_image(self.root / name, name=str(self.root / name))

    def shape(self, name: str) -> tuple[int, ...]:
        if name.lower().endswith(".npy"):
            path = self.root / name
            try:
                with open(path, "rb") as fh:
                    return _npy_shape(fh, str(path))
            except (ValueError, OSError):
                pass  # let read() give the precise error
        return self.read(name).shape


class _ZipStore(_Store):
    """Members of a zip archive, read on demand; one ZipFile handle per process."""

    def __init__(self, path: Path, limits: ZipLimits | None = None) -> None:
        self.path = path
        self.label = str(path)
        self.limits = limits or ZipLimits()
        self._zf: zipfile.ZipFile | None = None
        self._pid = -1
        try:
            with zipfile.ZipFile(path) as zf:
                infos = check_zip_infos(zf.infolist(), self.limits, self.label)
        except (zipfile.BadZipFile, OSError, ValueError) as exc:
            raise InputError(path, f"corrupt or not a zip archive ({exc})") from exc
        self._infos: dict[str, zipfile.ZipInfo] = {}
        for info in infos:
            try:
                safe = sanitize_member_name(info.filename)
            except ValueError:
                continue  # never used: unsafe names are not part of the data set
            if safe.split("/")[0] != "__MACOSX" and not safe.split("/")[-1].startswith("."):
                self._infos[safe] = info

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_zf"], state["_pid"] = None, -1
        return state

    def _handle(self) -> zipfile.ZipFile:
        if self._zf is None or self._pid != os.getpid():
            self._zf = zipfile.ZipFile(self.path)
            self._pid = os.getpid()
        return self._zf

    def names(self) -> list[str]:
        return sorted(n for n in self._infos if is_image_name(n))

    def read(self, name: str) -> LoadedImage:
        label = f"{self.label}:{name}"
        try:
            raw = read_member(self._handle(), self._infos[name], self.limits)
        except (zipfile.BadZipFile, RuntimeError, ValueError, OSError, EOFError) as exc:
            raise InputError(label, f"unreadable zip member ({exc})") from exc
        return read_image(raw, name=label)


def _npy_shape(fh: Any, label: str) -> tuple[int, ...]:
    """The squeezed 2-D shape from a .npy header (ValueError if not readable that way)."""
    version = np.lib.format.read_magic(fh)
    if version == (1, 0):
        shape, _, dtype = np.lib.format.read_array_header_1_0(fh)
    else:
        shape, _, dtype = np.lib.format.read_array_header_2_0(fh)
    if dtype.hasobject:
        raise ValueError("object array")
    sq = tuple(n for n in shape if n != 1)
    if len(sq) != 2:
        raise InputError(label, f"expected one 2-D image, got shape {tuple(shape)}")
    return sq


def _store_for(path: Path, limits: ZipLimits | None = None) -> _Store:
    if path.is_dir():
        return _DirStore(path)
    return _ZipStore(path, limits)


# ----------------------------------------------------------------------------- sources


def recorded_preset_config(value: Any, where: str) -> dict | None:
    """A recorded preset config from its JSON (string, bytes or already an object); ``None``
    for an empty or missing one.

    Raises:
        LenssrError: not valid JSON, or not a JSON object.
    """
    if isinstance(value, bytes | str):
        text = value.decode() if isinstance(value, bytes) else value
        try:
            value = json.loads(text) if text.strip() else None
        except json.JSONDecodeError as exc:
            raise LenssrError(f"{where}: the recorded preset is not valid JSON ({exc})") from None
    if not value:
        return None
    if not isinstance(value, dict):
        raise LenssrError(f"{where}: the recorded preset is not a JSON object")
    return value


class PairSource:
    """Indexable LR/HR pairs: ``src[i] -> (lr (h, w) float32, hr (s*h, s*w) float32)``.

    Attributes:
        names: one name per pair (file name or HDF5 index).
        labels: ``(N,)`` int class labels, or None.
        classes: class names (index = label), or None.
        scale: integer HR/LR size ratio.
    """

    names: list[str]
    labels: np.ndarray | None
    classes: list[str] | None
    scale: int
    #: the simulation preset the pairs were made with (its JSON config), when the data say
    preset_config: dict | None = None
    #: per-pair LR PSF FWHM [arcsec] when the instrument varies per pair (survey-mix), else None
    lr_psf_fwhm: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def psf_fwhm_pix(self, i: int) -> float:
        """LR PSF FWHM of pair ``i`` in LR pixels: the per-pair value, the preset's, or the
        default instrument's (:data:`lenssr.data.conditioning.DEFAULT_INSTRUMENT`)."""
        from lenssr.data.conditioning import DEFAULT_INSTRUMENT

        lr = (self.preset_config or {}).get("lr", {})
        pixel = float(lr.get("pixel_scale", DEFAULT_INSTRUMENT["pixel_scale"]))
        if self.lr_psf_fwhm is not None:
            return float(self.lr_psf_fwhm[int(i)]) / pixel
        return float(lr.get("psf_fwhm", DEFAULT_INSTRUMENT["psf_fwhm"])) / pixel


class ImageSource:
    """Indexable LR-only images: ``src[i] -> (h, w) float32`` (sizes may differ)."""

    names: list[str]

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, i: int) -> np.ndarray:
        raise NotImplementedError


def _index(i: int, n: int) -> int:
    i = int(i)
    if i < 0:
        i += n
    if not 0 <= i < n:
        raise IndexError(f"index {i} out of range for {n} items")
    return i


class _H5:
    """Lazy, per-process h5py handle (dropped when pickled for DataLoader workers)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._f: Any = None
        self._pid = -1

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "_f": None, "_pid": -1}

    def __call__(self) -> Any:
        import h5py

        if self._f is None or self._pid != os.getpid():
            self._f = h5py.File(self.path, "r")
            self._pid = os.getpid()
        return self._f


def _open_h5(path: Path) -> Any:
    import h5py

    if not path.is_file():
        raise InputError(path, "no such file")
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise InputError(path, f"not a readable HDF5 file ({exc})") from exc


def _h5_names(f: Any, n: int) -> list[str]:
    if "name" in f and f["name"].shape == (n,):
        return [v.decode() if isinstance(v, bytes) else str(v) for v in f["name"][()]]
    return [f"{i:06d}" for i in range(n)]


def _h5_classes(f: Any) -> list[str] | None:
    raw = f.attrs.get("classes")
    if raw is None:
        return None
    if isinstance(raw, bytes):
        raw = raw.decode()
    if isinstance(raw, str):
        try:
            return [str(c) for c in json.loads(raw)]
        except json.JSONDecodeError:
            return [raw]
    return [c.decode() if isinstance(c, bytes) else str(c) for c in raw]


class H5PairSource(PairSource):
    """Pairs from our HDF5 schema: ``lr`` (N, h, w), ``hr`` (N, H, W), ``label`` (N,)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        with _open_h5(self.path) as f:
            missing = [k for k in ("lr", "hr") if k not in f]
            if missing:
                raise InputError(self.path, f"HDF5 file lacks dataset(s) {', '.join(missing)}")
            lr_shape, hr_shape = f["lr"].shape, f["hr"].shape
            if len(lr_shape) != 3 or len(hr_shape) != 3 or lr_shape[0] != hr_shape[0]:
                raise InputError(
                    self.path, f"expected lr (N,h,w) and hr (N,H,W), got {lr_shape} and {hr_shape}"
                )
            self.scale = _pair_scale(lr_shape[1:], hr_shape[1:])
            if self.scale is None:
                raise InputError(
                    self.path,
                    f"HR shape {hr_shape[1:]} is not an integer multiple of LR {lr_shape[1:]}",
                )
            attr_scale = f.attrs.get("scale")
            if attr_scale is not None and int(attr_scale) != self.scale:
                raise InputError(
                    self.path, f"attribute scale={attr_scale} disagrees with shapes (x{self.scale})"
                )
            n = lr_shape[0]
            self.names = _h5_names(f, n)
            self.labels = np.asarray(f["label"][()], dtype=np.int64) if "label" in f else None
            self.classes = _h5_classes(f)
            self.attrs = {k: f.attrs[k] for k in f.attrs}
            self.preset_config = recorded_preset_config(self.attrs.get("preset"), str(self.path))
            if "params" in f and "lr_psf_fwhm" in f["params"]:
                self.lr_psf_fwhm = np.asarray(f["params"]["lr_psf_fwhm"][()], dtype=np.float64)
        self._h5 = _H5(self.path)

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        i = _index(i, len(self))
        f = self._h5()
        lr = np.asarray(f["lr"][i], dtype=np.float32)
        hr = np.asarray(f["hr"][i], dtype=np.float32)
        return lr, hr


def _pair_scale(lr: Sequence[int], hr: Sequence[int]) -> int | None:
    """The integer ``s`` with ``hr == s * lr`` in both axes, or None."""
    if len(lr) != 2 or len(hr) != 2 or min(lr) < 1:
        return None
    if hr[0] % lr[0] or hr[1] % lr[1]:
        return None
    s0, s1 = hr[0] // lr[0], hr[1] // lr[1]
    return s0 if s0 == s1 and s0 >= 1 else None


_TOKEN = {"lr": re.compile(r"^(lr[_\-. ]?)|([_\-. ]?lr)$", re.I)}
_TOKEN["hr"] = re.compile(r"^(hr[_\-. ]?)|([_\-. ]?hr)$", re.I)


def _match_key(name: str, side: str) -> str:
    """Pairing key: relative path without extension and without a leading/trailing LR/HR token."""
    p = PurePosixPath(name)
    stem = p.name
    for ext in (".fits.gz", ".fit.gz", ".fts.gz"):
        if stem.lower().endswith(ext):
            stem = stem[: -len(ext)]
            break
    else:
        stem = p.stem
    stripped = _TOKEN[side].sub("", stem) or stem
    return str(p.parent / stripped)


def _find_split_dirs(names: Sequence[str]) -> tuple[str, str] | None:
    """The ``(lr_prefix, hr_prefix)`` (e.g. ``"data/LR/"``) of member names, shortest first."""
    candidates: dict[str, dict[str, str]] = {}
    for n in names:
        parts = n.split("/")
        for d in range(len(parts) - 1):
            low = parts[d].lower()
            if low in ("lr", "hr"):
                base = "/".join(parts[:d])
                candidates.setdefault(base, {})[low] = "/".join(parts[: d + 1]) + "/"
    both = [b for b, v in candidates.items() if "lr" in v and "hr" in v]
    if not both:
        return None
    base = min(both, key=lambda b: (b.count("/") + bool(b), b))
    return candidates[base]["lr"], candidates[base]["hr"]


class FilePairSource(PairSource):
    """Pairs from a DeepLense-style folder or zip (``LR/`` and ``HR/`` matched by file name)."""

    def __init__(self, path: str | Path, limits: ZipLimits | None = None) -> None:
        self.path = Path(path)
        self._store = _store_for(self.path, limits)
        all_names = self._store.names()
        prefixes = _find_split_dirs(all_names)
        if prefixes is None:
            raise InputError(self.path, "no LR/ and HR/ folders of images found")
        lr_pre, hr_pre = prefixes
        lr = {n[len(lr_pre) :]: n for n in all_names if n.startswith(lr_pre)}
        hr = {n[len(hr_pre) :]: n for n in all_names if n.startswith(hr_pre)}
        pairs = self._match(lr, hr)
        self._pairs: list[tuple[str, str]] = []
        bad: list[str] = []
        scales: set[int] = set()
        for rel, (lr_name, hr_name) in pairs.items():
            ls, hs = self._store.shape(lr_name), self._store.shape(hr_name)
            s = _pair_scale(ls, hs)
            if s is None:
                bad.append(f"{rel} (LR {ls[0]}x{ls[1]}, HR {hs[0]}x{hs[1]})")
                continue
            scales.add(s)
            self._pairs.append((lr_name, hr_name))
        if bad:
            raise InputError(
                self.path,
                f"{len(bad)} pair(s) whose HR size is not an integer multiple of LR: "
                + _listing(bad),
            )
        if len(scales) > 1:
            raise InputError(self.path, f"pairs have different scales {sorted(scales)}")
        self.scale = scales.pop()
        self.names = list(pairs)
        meta, where = self._read_metadata(lr_pre)
        self.classes, self.labels = _labels_from_metadata(meta, self.names, where)
        if isinstance(meta, dict):
            self.preset_config = recorded_preset_config(meta.get("preset"), where)

    def _match(self, lr: dict[str, str], hr: dict[str, str]) -> dict[str, tuple[str, str]]:
        if not lr or not hr:
            raise InputError(self.path, "LR/ or HR/ folder has no images")
        if set(lr) == set(hr):
            return {k: (lr[k], hr[k]) for k in sorted(lr)}
        lr_keys = {_match_key(k, "lr"): k for k in lr}
        hr_keys = {_match_key(k, "hr"): k for k in hr}
        if len(lr_keys) != len(lr) or len(hr_keys) != len(hr):  # keys collide: exact names only
            lr_keys, hr_keys = {k: k for k in lr}, {k: k for k in hr}
        only_lr = sorted(lr_keys[k] for k in set(lr_keys) - set(hr_keys))
        only_hr = sorted(hr_keys[k] for k in set(hr_keys) - set(lr_keys))
        if only_lr or only_hr:
            parts = []
            if only_lr:
                parts.append(f"LR without HR: {_listing(only_lr)}")
            if only_hr:
                parts.append(f"HR without LR: {_listing(only_hr)}")
            raise InputError(self.path, "unmatched files; " + "; ".join(parts))
        return {
            lr_keys[k]: (lr[lr_keys[k]], hr[hr_keys[k]])
            for k in sorted(lr_keys, key=lambda k: lr_keys[k])
        }

    def _read_metadata(self, lr_pre: str) -> tuple[Any, str]:
        """The ``metadata.json`` beside the ``LR/`` folder (None when there is none) and its
        name for messages."""
        base = lr_pre.rstrip("/").rpartition("/")[0]
        key = f"{base}/metadata.json" if base else "metadata.json"
        where = f"{self.path}/{key}"
        if isinstance(self._store, _DirStore):
            meta_path = self.path / key
            if not meta_path.is_file():
                return None, where
            text = meta_path.read_text()
        else:
            zs: _ZipStore = self._store  # type: ignore[assignment]
            if key not in zs._infos:
                return None, where
            text = read_member(zs._handle(), zs._infos[key], zs.limits).decode()
        try:
            return json.loads(text), where
        except json.JSONDecodeError as exc:
            raise InputError(where, f"invalid JSON ({exc})") from exc

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        lr_name, hr_name = self._pairs[_index(i, len(self))]
        return self._store.read(lr_name).data, self._store.read(hr_name).data


def _labels_from_metadata(
    meta: Any, names: Sequence[str], label: str
) -> tuple[list[str] | None, np.ndarray | None]:
    classes: list[str] | None = None
    table: dict[str, Any] = {}
    records = meta
    if isinstance(meta, dict):
        classes = [str(c) for c in meta["classes"]] if "classes" in meta else None
        if isinstance(meta.get("labels"), dict):
            table = {str(k): v for k, v in meta["labels"].items()}
            records = None
        else:
            records = meta.get("samples")
    if isinstance(records, list):
        for r in records:
            if isinstance(r, dict) and "label" in r and ("name" in r or "file" in r):
                table[str(r.get("name", r.get("file")))] = r["label"]
    if not table:
        return classes, None
    out = np.empty(len(names), dtype=np.int64)
    missing = []
    for i, name in enumerate(names):
        p = PurePosixPath(name)
        for key in (name, p.name, str(p.with_suffix("")), p.stem, _match_key(name, "lr")):
            if key in table:
                value = table[key]
                break
        else:
            missing.append(name)
            continue
        if isinstance(value, str):
            if classes is None or value not in classes:
                raise InputError(label, f"label {value!r} of {name} is not a listed class")
            value = classes.index(value)
        out[i] = int(value)
    if missing:
        raise InputError(label, f"no label for {len(missing)} sample(s): {_listing(missing)}")
    return classes, out


def open_pairs(source: str | Path, limits: ZipLimits | None = None) -> PairSource:
    """Open LR/HR pairs: an HDF5 file (``lr``/``hr`` datasets), a DeepLense folder
    (``LR/`` + ``HR/``) or a ``.zip`` of one.

    Raises:
        InputError: missing/corrupt source, unmatched names, HR not an integer multiple of LR.
    """
    path = Path(source)
    if not path.exists():
        raise InputError(path, "no such file or directory")
    if path.suffix.lower() in H5_SUFFIXES:
        return H5PairSource(path)
    if path.is_dir() or path.suffix.lower() == ".zip":
        return FilePairSource(path, limits)
    raise InputError(path, "expected an .h5 file, a folder with LR/ and HR/, or a .zip of one")


class H5ImageSource(ImageSource):
    """LR images from the ``lr`` dataset ``(N, h, w)`` of an HDF5 file."""

    def __init__(self, path: str | Path, dataset: str = "lr") -> None:
        self.path, self.dataset = Path(path), dataset
        with _open_h5(self.path) as f:
            if dataset not in f or len(f[dataset].shape) != 3:
                raise InputError(self.path, f"HDF5 file lacks an (N,h,w) dataset {dataset!r}")
            self.names = _h5_names(f, f[dataset].shape[0])
        self._h5 = _H5(self.path)

    def __getitem__(self, i: int) -> np.ndarray:
        return np.asarray(self._h5()[self.dataset][_index(i, len(self))], dtype=np.float32)


class FileImageSource(ImageSource):
    """Images in a folder or zip (only its ``LR/`` part when it has one), or one file."""

    def __init__(self, path: str | Path, limits: ZipLimits | None = None) -> None:
        self.path = Path(path)
        if self.path.is_file() and self.path.suffix.lower() != ".zip":
            self._store: _Store | None = None
            self.names = [self.path.name]
            return
        self._store = _store_for(self.path, limits)
        names = self._store.names()
        prefixes = _find_split_dirs(names)
        if prefixes is not None:
            names = [n for n in names if n.startswith(prefixes[0])]
        if not names:
            raise InputError(self.path, "no images found")
        self.names = names

    def __getitem__(self, i: int) -> np.ndarray:
        i = _index(i, len(self))
        if self._store is None:
            return read_image(self.path).data
        return self._store.read(self.names[i]).data


def open_images(source: str | Path, limits: ZipLimits | None = None) -> ImageSource:
    """Open LR-only images: a folder or ``.zip`` of images (its ``LR/`` part if present), one
    image file, or the ``lr`` dataset of an HDF5 file.

    Raises:
        InputError: missing/corrupt source or no images.
    """
    path = Path(source)
    if not path.exists():
        raise InputError(path, "no such file or directory")
    if path.suffix.lower() in H5_SUFFIXES:
        return H5ImageSource(path)
    return FileImageSource(path, limits)
