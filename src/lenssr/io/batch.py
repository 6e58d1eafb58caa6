"""Walking files, folders and zip archives, and applying a function to every image in them.

A bad file (or archive member) never stops a batch: it is recorded in :class:`BatchReport` with
its reason and the rest is processed. Zip archives are read in memory with safety checks
(:class:`ZipLimits`): member names are sanitised (absolute paths and ``..`` are refused and never
written), only image extensions are read, and the member count, total uncompressed size and
compression ratio are capped so that a zip bomb is refused before it is expanded.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lenssr.errors import InputError, LenssrError
from lenssr.io.images import LoadedImage, image_format, is_image_name, read_image, write_image
from lenssr.progress import progress_bar

ImageFn = Callable[[LoadedImage], np.ndarray]
BatchFn = Callable[[list[LoadedImage]], list[np.ndarray]]


@dataclass(frozen=True)
class ZipLimits:
    """Caps applied to a zip archive before anything is decompressed.

    Attributes:
        max_members: most file members (directories not counted).
        max_total_bytes: most uncompressed bytes over all members.
        max_member_bytes: most uncompressed bytes of one member.
        max_ratio: largest uncompressed/compressed ratio of a member, checked for members
            larger than ``ratio_min_bytes`` (tiny blank images compress extremely well).
    """

    max_members: int = 10_000
    max_total_bytes: int = 2 * 1024**3
    max_member_bytes: int = 512 * 1024**2
    max_ratio: float = 100.0
    ratio_min_bytes: int = 1024**2


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
    """What a batch did: names processed and ``(name, reason)`` of those skipped."""

    processed: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    output: Path | None = None

    def summary(self) -> str:
        """``"N processed, M skipped"`` followed by one ``"  name: reason"`` line per skip."""
        lines = [f"{len(self.processed)} processed, {len(self.skipped)} skipped"]
        lines += [f"  {name}: {reason}" for name, reason in self.skipped]
        return "\n".join(lines)


def _ignored(name: str) -> bool:
    """OS clutter that is silently left out (macOS resource forks, hidden files)."""
    parts = name.split("/")
    return parts[0] == "__MACOSX" or parts[-1].startswith(".")


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


def zip_entries(
    data: bytes, limits: ZipLimits | None = None, name: str = "archive.zip"
) -> list[ZipEntry]:
    """Read the image members of a zip archive held in memory.

    Members with unsafe names (absolute, ``..``), non-image extensions or unreadable data
    (bad CRC, encryption) come back with ``data=None`` and ``error`` set; macOS clutter
    (``__MACOSX/``, hidden files) is left out. Names are sanitised relative POSIX paths.

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
        for info in check_zip_infos(zf.infolist(), limits, name):
            try:
                member = sanitize_member_name(info.filename)
            except ValueError as exc:
                entries.append(ZipEntry(info.filename, None, str(exc)))
                continue
            if _ignored(member):
                continue
            if not is_image_name(member):
                entries.append(ZipEntry(member, None, "not an image file (unsupported extension)"))
                continue
            try:
                raw = read_member(zf, info, limits)
            except (zipfile.BadZipFile, RuntimeError, ValueError, OSError, EOFError) as exc:
                entries.append(ZipEntry(member, None, f"unreadable zip member ({exc})"))
                continue
            total += len(raw)
            if total > limits.max_total_bytes:
                raise InputError(name, "zip expands beyond its declared size (refused)")
            entries.append(ZipEntry(member, raw))
    return entries


def _failing(name: str, reason: str) -> Callable[[], LoadedImage]:
    def load() -> LoadedImage:
        raise InputError(name, reason)

    return load


def _bytes_loader(raw: bytes, name: str) -> Callable[[], LoadedImage]:
    return lambda: read_image(raw, name=name)


def _path_loader(path: Path, name: str) -> Callable[[], LoadedImage]:
    return lambda: read_image(path, name=name)


def is_zip_path(path: Path) -> bool:
    """True when ``path`` names a zip archive (by its extension)."""
    return path.suffix.lower() == ".zip"


def iter_inputs(path: str | Path, limits: ZipLimits | None = None) -> Iterator[InputItem]:
    """The images under ``path``: a single file, a folder (recursive, sorted) or a ``.zip``.

    Item names are POSIX paths relative to the folder or archive root (the file name for a
    single file). Files that cannot become images (unsupported extension, unsafe zip name,
    unreadable member) are still yielded: their loader raises the InputError explaining why.

    Raises:
        InputError: ``path`` does not exist, or is a corrupt/empty/over-limit zip.
    """
    root = Path(path)
    if not root.exists():
        raise InputError(root, "no such file or directory")
    if root.is_dir():
        files = sorted(p for p in root.rglob("*") if p.is_file())
        for p in files:
            rel = p.relative_to(root).as_posix()
            if _ignored(rel):
                continue
            if is_image_name(rel):
                yield InputItem(rel, _path_loader(p, rel))
            else:
                yield InputItem(rel, _failing(rel, "not an image file (unsupported extension)"))
    elif is_zip_path(root):
        try:
            raw = root.read_bytes()
        except OSError as exc:
            raise InputError(root, f"cannot read file ({exc})") from exc
        for entry in zip_entries(raw, limits, name=str(root)):
            if entry.data is None:
                yield InputItem(entry.name, _failing(entry.name, entry.error or "unreadable"))
            else:
                yield InputItem(entry.name, _bytes_loader(entry.data, entry.name))
    else:
        yield InputItem(root.name, _path_loader(root, str(root)))


# ------------------------------------------------------------------------------ process


class _Sink:
    """Destination of results: a folder, a single file or a zip archive being written."""

    def __init__(self, kind: str, out: Path) -> None:
        self.kind = kind
        self.out = out
        self._zip: zipfile.ZipFile | None = None
        if kind == "zip":
            out.parent.mkdir(parents=True, exist_ok=True)
            self._zip = zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED)

    def write(self, name: str, result: np.ndarray, like: LoadedImage, **kw: object) -> None:
        if self._zip is not None:
            buf = io.BytesIO()
            write_image(buf, result, like, **kw)  # type: ignore[arg-type]
            self._zip.writestr(name, buf.getvalue())
        elif self.kind == "file":
            write_image(self.out, result, like, **kw)  # type: ignore[arg-type]
        else:
            write_image(self.out / name, result, like, **kw)  # type: ignore[arg-type]

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()


def _resolve_output(inp: Path, out: Path) -> tuple[str, Path]:
    if out.resolve() == inp.resolve():
        raise LenssrError(f"output {out} must differ from the input")
    if inp.is_dir():
        if out.exists() and not out.is_dir():
            raise LenssrError(f"output {out} must be a folder when the input is a folder")
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
) -> BatchReport:
    """Apply ``fn`` to every image of a file, folder or zip and write the results alike.

    file -> file (``out`` may be a folder), folder -> folder with the same relative names,
    zip -> zip with the same layout and formats. Each result is written with
    :func:`~lenssr.io.write_image` in its input's format.

    Args:
        inp: input file, folder or ``.zip``.
        out: output path (a ``.zip`` for zip input).
        fn: ``LoadedImage -> (sH, sW)`` array in the input's units. May be None when
            ``batch_fn`` is given.
        scale: pixel-grid refinement of the results (for the FITS WCS and ``conserve_flux``).
        description: progress-bar label.
        progress: show a rich progress bar.
        history: FITS HISTORY text (e.g. ``"lenssr hybrid x2"``).
        conserve_flux: divide results by ``scale**2`` (see :func:`write_image`).
        batch_fn: ``list[LoadedImage] -> list[array]`` for images of equal shape; when given,
            up to ``batch_size`` images are loaded at a time and processed in groups of equal
            shape (for batched inference).
        limits: zip safety caps.
        batch_size: most images per ``batch_fn`` call.

    Returns:
        A :class:`BatchReport`; bad files are listed in ``skipped`` with their reason.

    Raises:
        InputError: the input does not exist or is a corrupt/empty/over-limit zip.
        LenssrError: the output path does not fit the input (e.g. same path, wrong extension).
    """
    if fn is None and batch_fn is None:
        raise ValueError("process_path needs fn or batch_fn")
    inp, out = Path(inp), Path(out)
    if not inp.exists():
        raise InputError(inp, "no such file or directory")
    kind, out = _resolve_output(inp, out)
    items = list(iter_inputs(inp, limits))
    report = BatchReport(output=out)
    write_kw = {"scale": scale, "history": history, "conserve_flux": conserve_flux}
    if kind == "dir":
        out.mkdir(parents=True, exist_ok=True)
    sink = _Sink(kind, out)
    step = max(1, batch_size) if batch_fn is not None else 1
    try:
        with progress_bar(len(items), description, enabled=progress) as advance:
            for start in range(0, len(items), step):
                chunk = items[start : start + step]
                loaded: list[tuple[str, LoadedImage]] = []
                for item in chunk:
                    try:
                        loaded.append((item.name, item.load()))
                    except InputError as exc:
                        report.skipped.append((item.name, exc.problem))
                        advance(status=item.name)
                for name, img, result, error in _run(loaded, fn, batch_fn):
                    if error is None:
                        try:
                            sink.write(name, result, img, **write_kw)
                            report.processed.append(name)
                        except InputError as exc:
                            error = exc.problem
                    if error is not None:
                        report.skipped.append((name, error))
                    advance(status=name)
    finally:
        sink.close()
    if kind == "zip" and not report.processed:
        out.unlink(missing_ok=True)
    return report


def _run(
    loaded: list[tuple[str, LoadedImage]], fn: ImageFn | None, batch_fn: BatchFn | None
) -> Iterator[tuple[str, LoadedImage, np.ndarray | None, str | None]]:
    """Results ``(name, image, result, error)`` in input order; InputErrors become ``error``."""
    if batch_fn is None:
        for name, img in loaded:
            try:
                yield name, img, fn(img), None  # type: ignore[misc]
            except InputError as exc:
                yield name, img, None, exc.problem
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
        except InputError:  # find the culprit: one image at a time
            for k, img in zip(idxs, imgs, strict=True):
                try:
                    results[k] = (batch_fn([img])[0], None)
                except InputError as exc:
                    results[k] = (None, exc.problem)
    for k, (name, img) in enumerate(loaded):
        yield name, img, *results[k]
