"""Walking files, folders and zip archives, and applying a function to every image in them.

A bad file (or archive member) never stops a batch: it is recorded in :class:`BatchReport` with
its one-line reason and the rest is processed, whatever the failure (a lying header, a
decompression bomb, a ``MemoryError``). Zip archives are read member by member from disk with
safety checks (:class:`ZipLimits`): member names are sanitised (absolute paths and ``..`` are
refused and never written), only image extensions are read, and the member count, total
uncompressed size and compression ratio are capped so that a zip bomb is refused before it is
expanded; highly compressible members share a small allowance, past which they are skipped.
Every image is checked against :class:`~lenssr.io.images.ReadLimits` before it is decoded, and
all the images of one batch share one :class:`~lenssr.io.images.DecodeBudget`.
"""

from __future__ import annotations

import io
import os
import warnings
import zipfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lenssr.errors import InputError, LenssrError
from lenssr.io.images import (
    ClippingWarning,
    DecodeBudget,
    LoadedImage,
    ReadLimits,
    encode_image,
    image_format,
    is_image_name,
    one_line,
    read_image,
    write_image,
)
from lenssr.progress import progress_bar

ImageFn = Callable[[LoadedImage], np.ndarray]
BatchFn = Callable[[list[LoadedImage]], list[np.ndarray]]


MiB = 1024**2


@dataclass(frozen=True)
class ZipLimits:
    """Caps on the inputs of a batch: zip archives (checked before anything is decompressed),
    each image (checked against what it declares before it is decoded) and the whole batch.

    Attributes:
        max_members: most file members (directories not counted).
        max_total_bytes: most uncompressed bytes over all members.
        max_member_bytes: most uncompressed bytes of one member.
        max_ratio: largest uncompressed/compressed ratio of a member. A member larger than
            ``ratio_min_bytes`` above it refuses the archive; smaller ones (a blank image
            compresses extremely well) share ``max_ratio_bytes`` of expansion, past which each
            further one is skipped.
        max_ratio_bytes: uncompressed bytes allowed to small members over ``max_ratio``.
        max_pixels, max_file_bytes, max_decoded_bytes: :class:`~lenssr.io.images.ReadLimits`
            of each image.
        max_job_bytes: decoded ``float32`` bytes of all the images of a batch together
            (None: no cap).
        batch_bytes: most decoded bytes of input images held at once for one ``batch_fn``
            call (a model needs tens of times its input in memory).
    """

    max_members: int = 10_000
    max_total_bytes: int = 2 * 1024**3
    max_member_bytes: int = 512 * 1024**2
    max_ratio: float = 100.0
    ratio_min_bytes: int = 1024**2
    max_ratio_bytes: int = 64 * 1024**2
    max_pixels: int = ReadLimits.max_pixels
    max_file_bytes: int = ReadLimits.max_file_bytes
    max_decoded_bytes: int = ReadLimits.max_decoded_bytes
    max_job_bytes: int | None = None
    batch_bytes: int = 8 * 1024**2

    @property
    def read_limits(self) -> ReadLimits:
        """The per-image caps as :class:`~lenssr.io.images.ReadLimits`."""
        return ReadLimits(
            max_pixels=self.max_pixels,
            max_file_bytes=min(self.max_file_bytes, self.max_member_bytes),
            max_decoded_bytes=self.max_decoded_bytes,
        )


@dataclass
class ZipEntry:
    """One file member of a zip: its (sanitised) name and bytes, or why it was not read."""

    name: str
    data: bytes | None
    error: str | None = None


@dataclass
class InputItem:
    """One input image: its name relative to the input root, and a loader (raises InputError)."""

    name: str
    load: Callable[[], LoadedImage]


@dataclass
class BatchReport:
    """What a batch did: names processed, ``(name, reason)`` of those skipped and
    ``(name, note)`` of processed files with a warning (e.g. values clipped to 16 bits)."""

    processed: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    output: Path | None = None
    notes: list[tuple[str, str]] = field(default_factory=list)

    def summary(self) -> str:
        """``"N processed, M skipped"`` followed by one ``"  name: reason"`` line per skip and
        one ``"  name: warning: note"`` line per note."""
        lines = [f"{len(self.processed)} processed, {len(self.skipped)} skipped"]
        lines += [f"  {name}: {reason}" for name, reason in self.skipped]
        lines += [f"  {name}: warning: {note}" for name, note in self.notes]
        return "\n".join(lines)


def is_ignored_name(name: str) -> bool:
    """OS clutter that is silently left out and not counted (macOS resource forks, hidden
    files and folders, e.g. ``__MACOSX/a.npy``, ``.DS_Store``, ``.git/x.npy``)."""
    parts = [p for p in name.replace("\\", "/").split("/") if p not in ("", ".")]
    return bool(parts) and (
        parts[0] == "__MACOSX" or any(p.startswith(".") and p != ".." for p in parts)
    )


_ignored = is_ignored_name


def sanitize_member_name(name: str) -> str:
    """A safe relative POSIX path for a zip member name.

    Raises:
        ValueError: absolute path, drive letter, ``..`` component or empty name (the message is
            the reason).
    """
    norm = name.replace("\\", "/")
    if norm.startswith("/") or (len(norm) > 1 and norm[1] == ":"):
        raise ValueError("absolute path refused")
    parts = [p for p in norm.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise ValueError("'..' in path refused (path traversal)")
    if not parts:
        raise ValueError("empty member name")
    return "/".join(parts)


def _open_zip(data: bytes, name: str) -> zipfile.ZipFile:
    if len(data) == 0:
        raise InputError(name, "empty file (not a zip archive)")
    try:
        return zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise InputError(name, f"corrupt or not a zip archive ({exc})") from exc


def check_zip_infos(
    infos: Sequence[zipfile.ZipInfo], limits: ZipLimits, name: str
) -> list[zipfile.ZipInfo]:
    """The file members of an archive after the :class:`ZipLimits` checks (dirs dropped).

    Raises:
        InputError: empty archive, too many members, too large or a suspicious compression
            ratio (a possible zip bomb).
    """
    files = [i for i in infos if not i.is_dir()]
    if not files:
        raise InputError(name, "empty zip archive (no files)")
    if len(files) > limits.max_members:
        raise InputError(name, f"zip has {len(files)} members, more than {limits.max_members}")
    total = sum(i.file_size for i in files)
    if total > limits.max_total_bytes:
        raise InputError(
            name,
            f"zip expands to {total} bytes, more than the limit of {limits.max_total_bytes}"
            " (refusing a possible zip bomb)",
        )
    for info in files:
        if info.file_size > limits.max_member_bytes:
            raise InputError(
                name,
                f"member {info.filename} expands to {info.file_size} bytes, more than "
                f"{limits.max_member_bytes} (refusing a possible zip bomb)",
            )
        ratio = info.file_size / max(info.compress_size, 1)
        if info.file_size > limits.ratio_min_bytes and ratio > limits.max_ratio:
            raise InputError(
                name,
                f"member {info.filename} has compression ratio {ratio:.0f} > {limits.max_ratio:g}"
                " (refusing a possible zip bomb)",
            )
    return files


def read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, limits: ZipLimits) -> bytes:
    """Bytes of one member, never reading more than its declared size (ValueError if it lies)."""
    cap = min(info.file_size, limits.max_member_bytes)
    with zf.open(info) as fh:
        data = fh.read(cap + 1)
    if len(data) > cap:
        raise ValueError("member is larger than its declared size")
    return data


@dataclass
class _Member:
    """One file member of an archive as a batch sees it: its sanitised name (the raw name
    when unsafe), its ZipInfo and, when it will not be read, why."""

    name: str
    info: zipfile.ZipInfo
    error: str | None = None


def plan_members(infos: Sequence[zipfile.ZipInfo], limits: ZipLimits, name: str) -> list[_Member]:
    """The members of an archive a batch handles, in archive order, after the archive-level
    checks of :func:`check_zip_infos`: OS clutter is left out; unsafe names, non-image
    extensions and small members over ``max_ratio`` once ``max_ratio_bytes`` is used up come
    with their reason.

    Raises:
        InputError: the archive-level checks failed (see :func:`check_zip_infos`).
    """
    members: list[_Member] = []
    allowance = limits.max_ratio_bytes
    for info in check_zip_infos(infos, limits, name):
        try:
            member = sanitize_member_name(info.filename)
        except ValueError as exc:
            members.append(_Member(info.filename, info, str(exc)))
            continue
        if is_ignored_name(member):
            continue
        if not is_image_name(member):
            members.append(_Member(member, info, "not an image file (unsupported extension)"))
            continue
        ratio = info.file_size / max(info.compress_size, 1)
        if ratio > limits.max_ratio:
            if info.file_size > allowance:
                members.append(
                    _Member(
                        member,
                        info,
                        f"compression ratio {ratio:.0f} > {limits.max_ratio:g} and the archive's "
                        f"allowance of {limits.max_ratio_bytes / MiB:.0f} MiB for such members is "
                        "used up (refusing a possible zip bomb)",
                    )
                )
                continue
            allowance -= info.file_size
        members.append(_Member(member, info))
    return members


def zip_entries(
    data: bytes, limits: ZipLimits | None = None, name: str = "archive.zip"
) -> list[ZipEntry]:
    """Read the image members of a zip archive held in memory.

    Members with unsafe names (absolute, ``..``), non-image extensions, unreadable data
    (bad CRC, encryption) or a suspicious compression ratio come back with ``data=None`` and
    ``error`` set; macOS clutter (``__MACOSX/``, hidden files) is left out. Names are
    sanitised relative POSIX paths.

    Args:
        data: the archive's bytes.
        limits: safety caps (defaults of :class:`ZipLimits`).
        name: the archive's name, used in error messages.

    Raises:
        InputError: corrupt, empty or over-limit archive (a zip bomb is refused before
            anything is decompressed).
    """
    limits = limits or ZipLimits()
    entries: list[ZipEntry] = []
    total = 0
    with _open_zip(data, name) as zf:
        for m in plan_members(zf.infolist(), limits, name):
            if m.error is not None:
                entries.append(ZipEntry(m.name, None, m.error))
                continue
            try:
                raw = read_member(zf, m.info, limits)
            except (zipfile.BadZipFile, RuntimeError, ValueError, OSError, EOFError) as exc:
                entries.append(ZipEntry(m.name, None, f"unreadable zip member ({one_line(exc)})"))
                continue
            total += len(raw)
            if total > limits.max_total_bytes:
                raise InputError(name, "zip expands beyond its declared size (refused)")
            entries.append(ZipEntry(m.name, raw))
    return entries


def _failing(name: str, reason: str) -> Callable[[], LoadedImage]:
    def load() -> LoadedImage:
        raise InputError(name, reason)

    return load


def _path_loader(
    path: Path, name: str, limits: ReadLimits, budget: DecodeBudget | None
) -> Callable[[], LoadedImage]:
    return lambda: read_image(path, name=name, limits=limits, budget=budget)


def _member_loader(
    zf: zipfile.ZipFile, m: _Member, limits: ZipLimits, budget: DecodeBudget | None
) -> Callable[[], LoadedImage]:
    def load() -> LoadedImage:
        cap = limits.read_limits.max_file_bytes
        if m.info.file_size > cap:
            raise InputError(
                m.name,
                f"member expands to {m.info.file_size / MiB:.0f} MiB, more than the limit of "
                f"{cap / MiB:.0f} MiB for one file (not read)",
            )
        try:
            raw = read_member(zf, m.info, limits)
        except (zipfile.BadZipFile, RuntimeError, ValueError, OSError, EOFError) as exc:
            raise InputError(m.name, f"unreadable zip member ({one_line(exc)})") from exc
        return read_image(raw, name=m.name, limits=limits.read_limits, budget=budget)

    return load


def is_zip_path(path: Path) -> bool:
    """True when ``path`` names a zip archive (by its extension)."""
    return path.suffix.lower() == ".zip"


def _list_inputs(
    root: Path, limits: ZipLimits, budget: DecodeBudget | None
) -> tuple[list[InputItem], zipfile.ZipFile | None]:
    """The items under ``root`` and, for a zip, the open archive their loaders read from."""
    read_limits = limits.read_limits
    if not root.exists():
        raise InputError(root, "no such file or directory")
    if root.is_dir():
        items = []
        for p in sorted(p for p in root.rglob("*") if p.is_file()):
            rel = p.relative_to(root).as_posix()
            if is_ignored_name(rel):
                continue
            if is_image_name(rel):
                items.append(InputItem(rel, _path_loader(p, rel, read_limits, budget)))
            else:
                items.append(
                    InputItem(rel, _failing(rel, "not an image file (unsupported extension)"))
                )
        return items, None
    if not is_zip_path(root):
        return [InputItem(root.name, _path_loader(root, str(root), read_limits, budget))], None
    try:
        if root.stat().st_size == 0:
            raise InputError(root, "empty file (not a zip archive)")
        zf = zipfile.ZipFile(root)
    except (zipfile.BadZipFile, ValueError) as exc:
        raise InputError(root, f"corrupt or not a zip archive ({one_line(exc)})") from exc
    except OSError as exc:
        raise InputError(root, f"cannot read file ({exc.strerror or exc})") from exc
    try:
        members = plan_members(zf.infolist(), limits, str(root))
    except BaseException:
        zf.close()
        raise
    items = [
        InputItem(m.name, _failing(m.name, m.error))
        if m.error is not None
        else InputItem(m.name, _member_loader(zf, m, limits, budget))
        for m in members
    ]
    return items, zf


@contextmanager
def open_inputs(
    path: str | Path, limits: ZipLimits | None = None, budget: DecodeBudget | None = None
) -> Iterator[list[InputItem]]:
    """The images under ``path`` (see :func:`iter_inputs`) as a list, with a zip archive kept
    open (and read member by member, never as a whole) until the ``with`` block ends."""
    items, zf = _list_inputs(Path(path), limits or ZipLimits(), budget)
    try:
        yield items
    finally:
        if zf is not None:
            zf.close()


def iter_inputs(
    path: str | Path, limits: ZipLimits | None = None, budget: DecodeBudget | None = None
) -> Iterator[InputItem]:
    """The images under ``path``: a single file, a folder (recursive, sorted) or a ``.zip``.

    Item names are POSIX paths relative to the folder or archive root (the file name for a
    single file). Files that cannot become images (unsupported extension, unsafe zip name,
    unreadable member) are still yielded: their loader raises the InputError explaining why.
    OS clutter (hidden files, ``__MACOSX/``) is left out. Loaders check each image against
    ``limits`` before decoding it and charge ``budget``; a zip archive stays open for them
    as long as they exist (use :func:`open_inputs` to close it at a known point).

    Raises:
        InputError: ``path`` does not exist, or is a corrupt/empty/over-limit zip.
    """
    items, _ = _list_inputs(Path(path), limits or ZipLimits(), budget)
    yield from items


# ------------------------------------------------------------------------------ process


@dataclass
class WithSidecars:
    """A result with companion maps on the same grid (e.g. ``{"sigma": 1-sigma map}``), which
    ``process_path`` writes beside it: FITS as extra image HDUs named by the upper-case key
    (same WCS); ``.npy`` as ``<stem>_<key>.npy``; PNG/TIFF as float32 ``<stem>_<key>.tif``."""

    data: np.ndarray
    sidecars: dict[str, np.ndarray]


def sidecar_name(name: str, key: str, fmt: str) -> str:
    """File name of the ``key`` map written beside result ``name`` of format ``fmt``."""
    path = Path(name)
    ext = ".npy" if fmt == "npy" else ".tif"
    return str(path.with_name(f"{path.stem}_{key}{ext}"))


class _Sink:
    """Destination of results: a folder, a single file or a zip archive being written.

    A zip is written under ``<out>.partial`` and renamed to ``out`` by ``close(ok=True)``;
    ``close(ok=False)`` (an interrupted or failed run) deletes it, so no partial archive is
    ever left under the output's name.
    """

    def __init__(self, kind: str, out: Path) -> None:
        self.kind = kind
        self.out = out
        self._zip: zipfile.ZipFile | None = None
        if kind == "zip":
            out.parent.mkdir(parents=True, exist_ok=True)
            self.partial = out.with_name(out.name + ".partial")
            self._zip = zipfile.ZipFile(self.partial, "w", compression=zipfile.ZIP_DEFLATED)

    def write(
        self, name: str, result: np.ndarray | WithSidecars, like: LoadedImage, **kw: object
    ) -> None:
        if isinstance(result, WithSidecars):
            if like.fmt == "fits":
                extra = {k.upper(): v for k, v in result.sidecars.items()}
                self.write(name, result.data, like, extra_hdus=extra, **kw)
                return
            # encode every companion first, so a bad map fails before anything is written
            files = []
            for key, arr in result.sidecars.items():
                fmt = "npy" if like.fmt == "npy" else "tiff"
                twin = LoadedImage(
                    data=arr, name=name, fmt=fmt,
                    meta={"dtype": "float32"} if fmt == "tiff" else dict(like.meta),
                )  # fmt: skip
                side_kw = {k: v for k, v in kw.items() if k in ("scale", "conserve_flux")}
                files.append((key, encode_image(arr, twin, **side_kw), fmt))  # type: ignore[arg-type]
            self.write(name, result.data, like, **kw)
            for key, raw, fmt in files:
                self._put(sidecar_name(name, key, fmt), raw, key, fmt)
            return
        if self._zip is not None:
            buf = io.BytesIO()
            write_image(buf, result, like, **kw)  # type: ignore[arg-type]
            self._zip.writestr(name, buf.getvalue())
        elif self.kind == "file":
            write_image(self.out, result, like, **kw)  # type: ignore[arg-type]
        else:
            write_image(self.out / name, result, like, **kw)  # type: ignore[arg-type]

    def _put(self, name: str, raw: bytes, key: str, fmt: str) -> None:
        """Store encoded companion bytes under ``name`` (a single-file output: beside it)."""
        if self._zip is not None:
            self._zip.writestr(name, raw)
            return
        if self.kind == "file":
            path = Path(sidecar_name(str(self.out), key, fmt))
        else:
            path = self.out / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(raw)

    def close(self, ok: bool) -> None:
        if self._zip is not None:
            self._zip.close()
            self._zip = None
            if ok:
                os.replace(self.partial, self.out)
            else:
                self.partial.unlink(missing_ok=True)


def _resolve_output(inp: Path, out: Path) -> tuple[str, Path]:
    if out.resolve() == inp.resolve():
        raise LenssrError(f"output {out} must differ from the input")
    if inp.is_dir():
        if out.exists() and not out.is_dir():
            raise LenssrError(f"output {out} must be a folder when the input is a folder")
        if not out.exists() and (is_image_name(out.name) or is_zip_path(out)):
            raise LenssrError(
                f"output {out} must be a folder when the input is a folder "
                f"(it has a file extension: give a folder name)"
            )
        if out.resolve().is_relative_to(inp.resolve()):
            raise LenssrError(f"output folder {out} must not be inside the input folder {inp}")
        return "dir", out
    if out.is_dir():
        out = out / inp.name
    if is_zip_path(inp):
        if not is_zip_path(out):
            raise LenssrError(f"output {out} must be a .zip when the input is a zip archive")
        return "zip", out
    in_fmt, out_fmt = image_format(inp.name), image_format(out.name)
    if in_fmt is not None and out_fmt != in_fmt:
        raise LenssrError(f"output {out} must have the input's format ({in_fmt})")
    return "file", out


def _is_out_of_memory(exc: BaseException) -> bool:
    """A MemoryError, or a device out-of-memory error (torch raises a RuntimeError subclass)."""
    return isinstance(exc, MemoryError) or (
        isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()
    )


def _memory_reason(img: LoadedImage | None) -> str:
    size = f" ({img.data.shape[0]}x{img.data.shape[1]} pixels)" if img is not None else ""
    return f"not enough memory to process this image{size}"


def process_path(
    inp: str | Path,
    out: str | Path,
    fn: ImageFn | None,
    scale: float,
    description: str = "processing",
    progress: bool = True,
    history: str | None = None,
    conserve_flux: bool = False,
    batch_fn: BatchFn | None = None,
    limits: ZipLimits | None = None,
    batch_size: int = 16,
    on_image: Callable[[str, bool], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> BatchReport:
    """Apply ``fn`` to every image of a file, folder or zip and write the results alike.

    file -> file (``out`` may be a folder), folder -> folder with the same relative names,
    zip -> zip with the same layout and formats. Each result is written with
    :func:`~lenssr.io.write_image` in its input's format. One bad file never stops the
    batch, whatever goes wrong with it (corrupt, lying header, over the limits, out of
    memory): it is skipped with a one-line reason.

    Args:
        inp: input file, folder or ``.zip``.
        out: output path (a ``.zip`` for zip input; written as ``<out>.partial`` and renamed
            when complete, removed if the run fails or is interrupted).
        fn: ``LoadedImage -> (sH, sW)`` array in the input's units. May be None when
            ``batch_fn`` is given.
        scale: pixel-grid refinement of the results (for the FITS WCS and ``conserve_flux``).
        description: progress-bar label.
        progress: show a rich progress bar.
        history: FITS HISTORY text (e.g. ``"lenssr hybrid x2"``).
        conserve_flux: divide results by ``scale**2`` (see :func:`write_image`).
        batch_fn: ``list[LoadedImage] -> list[array]`` for images of equal shape; when given,
            up to ``batch_size`` images (at most ``limits.batch_bytes`` of pixels) are loaded
            at a time and processed in groups of equal shape (for batched inference).
        limits: zip, per-image and per-batch caps (:class:`ZipLimits`).
        batch_size: most images per ``batch_fn`` call (at least 1).
        on_image: called with ``(name, ok)`` after each image is written or skipped.
        should_stop: polled between images; when it returns True the run stops and raises
            :class:`Cancelled` (a zip output is removed).

    Returns:
        A :class:`BatchReport`; bad files are listed in ``skipped`` with their reason.

    Raises:
        InputError: the input does not exist or is a corrupt/empty/over-limit zip.
        LenssrError: the output path does not fit the input (e.g. same path, wrong extension),
            or ``batch_size`` is below 1.
        Cancelled: ``should_stop`` returned True.
    """
    if fn is None and batch_fn is None:
        raise ValueError("process_path needs fn or batch_fn")
    if batch_size < 1:
        raise LenssrError(f"batch size must be at least 1, got {batch_size}")
    inp, out = Path(inp), Path(out)
    if not inp.exists():
        raise InputError(inp, "no such file or directory")
    kind, out = _resolve_output(inp, out)
    limits = limits or ZipLimits()
    budget = DecodeBudget(limits.max_job_bytes)
    report = BatchReport(output=out)
    write_kw = {"scale": scale, "history": history, "conserve_flux": conserve_flux}
    step = batch_size if batch_fn is not None else 1

    with open_inputs(inp, limits, budget) as items:
        if kind == "dir":
            out.mkdir(parents=True, exist_ok=True)
        sink = _Sink(kind, out)
        ok = False
        try:
            with progress_bar(len(items), description, enabled=progress) as advance:

                def done(name: str, error: str | None) -> None:
                    if error is None:
                        report.processed.append(name)
                    else:
                        report.skipped.append((name, error))
                    advance(status=name)
                    if on_image is not None:
                        on_image(name, error is None)

                i = 0
                while i < len(items):
                    loaded: list[tuple[str, LoadedImage]] = []
                    held = 0
                    while i < len(items) and len(loaded) < step and held < limits.batch_bytes:
                        if should_stop is not None and should_stop():
                            raise Cancelled("stopped on request")
                        item = items[i]
                        i += 1
                        img, error = _load(item)
                        if img is None:
                            done(item.name, error)
                        else:
                            loaded.append((item.name, img))
                            held += img.data.nbytes
                    for name, img, result, error in _run(loaded, fn, batch_fn):
                        if error is None:
                            try:
                                with warnings.catch_warnings(record=True) as caught:
                                    warnings.simplefilter("always", ClippingWarning)
                                    sink.write(name, result, img, **write_kw)
                                report.notes += [
                                    (name, str(w.message))
                                    for w in caught
                                    if issubclass(w.category, ClippingWarning)
                                ]
                            except InputError as exc:
                                error = exc.problem
                            except Exception as exc:
                                if not _is_out_of_memory(exc):
                                    raise
                                error = _memory_reason(img)
                        done(name, error)
                        if should_stop is not None and should_stop():
                            raise Cancelled("stopped on request")
            ok = kind != "zip" or bool(report.processed)
        finally:
            sink.close(ok)
    return report


class Cancelled(LenssrError):
    """A batch was stopped on request (``process_path(should_stop=...)``)."""


def _load(item: InputItem) -> tuple[LoadedImage | None, str | None]:
    """``(image, None)`` or ``(None, reason)``: any failure to read one file is its own."""
    try:
        return item.load(), None
    except InputError as exc:
        return None, exc.problem
    except MemoryError:
        return None, "not enough memory to read this file"
    except Exception as exc:  # a reader library failing on hostile bytes
        return None, f"unreadable file ({type(exc).__name__}: {one_line(exc)})"


def _run(
    loaded: list[tuple[str, LoadedImage]], fn: ImageFn | None, batch_fn: BatchFn | None
) -> Iterator[tuple[str, LoadedImage, np.ndarray | None, str | None]]:
    """Results ``(name, image, result, error)`` in input order; InputErrors and out-of-memory
    errors become ``error`` (a failing group is retried one image at a time)."""
    if batch_fn is None:
        for name, img in loaded:
            yield name, img, *_one(fn, img)  # type: ignore[arg-type]
        return
    groups: dict[tuple[int, ...], list[int]] = {}
    for k, (_, img) in enumerate(loaded):
        groups.setdefault(img.data.shape, []).append(k)
    results: dict[int, tuple[np.ndarray | None, str | None]] = {}
    for idxs in groups.values():
        imgs = [loaded[k][1] for k in idxs]
        try:
            outs = batch_fn(imgs)
            if len(outs) != len(imgs):
                raise ValueError(f"batch_fn returned {len(outs)} results for {len(imgs)} images")
            for k, o in zip(idxs, outs, strict=True):
                results[k] = (o, None)
        except Exception as exc:  # find the culprit: one image at a time
            if not (isinstance(exc, InputError) or _is_out_of_memory(exc)):
                raise
            del exc
            for k, img in zip(idxs, imgs, strict=True):
                results[k] = _one(lambda x: batch_fn([x])[0], img)  # type: ignore[misc]
    for k, (name, img) in enumerate(loaded):
        yield name, img, *results[k]


def _one(fn: ImageFn, img: LoadedImage) -> tuple[np.ndarray | None, str | None]:
    try:
        return fn(img), None
    except InputError as exc:
        return None, exc.problem
    except Exception as exc:
        if not _is_out_of_memory(exc):
            raise
        return None, _memory_reason(img)
