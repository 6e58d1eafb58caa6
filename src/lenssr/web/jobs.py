"""Upscaling jobs of the web server: a queue, worker threads, cached models, expiry.

A job is one upload (a zip of LR images, or loose image files packed into a zip by the server).
Worker threads take jobs from a FIFO queue, so concurrent users wait instead of overloading the
machine, and run :func:`lenssr.inference.upscale_path` on the job's zip: the result zip holds
byte-for-byte what ``lenssr upscale --batch-size B`` writes for the same input and model
(``B = Settings.batch_size``), plus a ``report.json`` of processed and skipped files. Small
jobs (at most ``Settings.small_job_pixels``) have a worker of their own, so one large job
never makes them wait. A job can be cancelled (it stops at the next image and its files are
deleted). A failing job is marked failed with its message; it never stops the workers.
Finished jobs are deleted, files included, ``ttl`` seconds after they end; their ids are
remembered so that a poll says the job expired instead of "unknown".

With a ``work_dir`` of its own choosing, the server survives restarts: each job's state is kept
in ``<work_dir>/<id>/job.json``; at start, finished jobs are served again until their TTL, and
jobs that were queued or running when the server stopped (Ctrl-C) or was killed run again from
their input, to the same result.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import re
import shutil
import tempfile
import threading
import time
import uuid
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lenssr.errors import InputError, LenssrError
from lenssr.web.settings import Settings

log = logging.getLogger("lenssr.web")

QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"
FINISHED = (DONE, FAILED, CANCELLED)
#: How many expired job ids are remembered (for the "expired" message).
EXPIRED_MEMORY = 10_000
#: The state file of a job, in its folder.
JOB_FILE = "job.json"
_JOB_ID = re.compile(r"^[0-9a-f]{32}$")
#: Job fields kept in its state file.
_SAVED = ("id", "model", "scale", "tta", "result_name", "total", "pixels", "status",
          "processed", "skipped", "notes", "error", "created", "started", "finished",
          "psf_fwhm", "pixel_scale", "noise_sigma", "uncertainty")  # fmt: skip
BICUBIC = "bicubic"
#: Largest SR image (pixels) kept in memory for a preview; bigger images get none.
PREVIEW_MAX_PIXELS = 2048 * 2048


class ServerBusy(LenssrError):
    """Too many jobs are waiting; the client should retry later."""


@dataclass
class Preview:
    """A before/after pair shown on the page (rendered to PNG lazily, then cached), with the
    SR image's calibrated 1-sigma map when the job asked for it."""

    name: str
    lr: np.ndarray
    sr: np.ndarray
    sigma: np.ndarray | None = None
    png: dict[str, bytes] = field(default_factory=dict)

    @property
    def sigma_max(self) -> float | None:
        """Top of the sigma map's display range (image units), None without a map."""
        if self.sigma is None:
            return None
        from lenssr.web.render import sigma_limit

        return sigma_limit(self.sigma)


@dataclass
class Job:
    """State of one upscaling job (read by the API, written by one worker thread).

    Attributes:
        id: random hex id (unguessable: it is the only access control between users).
        model, scale, tta: what the user asked for.
        psf_fwhm, pixel_scale: the LR instrument [arcsec] given on the page (instrument-aware
            models; None: the FITS header's or the assumed default); noise_sigma: the images'
            noise sigma (None: estimated); uncertainty: also write the 1-sigma maps.
        input_zip: the job's input archive inside ``folder``.
        result_name: download name of the result (``<upload stem>_sr.zip``).
        total: number of image members in the input (progress denominator).
        pixels: estimated LR pixels of the job (from the members' sizes), for scheduling.
        done: images finished so far (written or skipped), counted one by one.
        processed: names written to the result; skipped: ``(name, reason)`` of refused files.
        error: message of a failed job.
    """

    id: str
    model: str
    scale: int
    tta: bool
    folder: Path
    input_zip: Path
    result_name: str
    total: int
    pixels: int = 0
    psf_fwhm: float | None = None
    pixel_scale: float | None = None
    noise_sigma: float | None = None
    uncertainty: bool = False
    status: str = QUEUED
    done: int = 0
    processed: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    notes: list[tuple[str, str]] = field(default_factory=list)
    previews: list[Preview] = field(default_factory=list)
    error: str | None = None
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    cancel: threading.Event = field(default_factory=threading.Event, repr=False)
    cancelled_by_user: bool = False

    def save(self) -> None:
        """Write the job's state to ``folder/job.json`` (atomically)."""
        state = {k: getattr(self, k) for k in _SAVED}
        tmp = self.folder / (JOB_FILE + ".tmp")
        try:
            tmp.write_text(json.dumps(state))
            os.replace(tmp, self.folder / JOB_FILE)
        except OSError:  # the folder was deleted meanwhile (cancelled, expired)
            tmp.unlink(missing_ok=True)

    @classmethod
    def load(cls, folder: Path) -> Job:
        """The job saved in ``folder/job.json``.

        Raises:
            ValueError, OSError, KeyError: missing or unreadable state.
        """
        state = json.loads((folder / JOB_FILE).read_text())
        if state["id"] != folder.name:
            raise ValueError("job id does not match its folder")
        state["skipped"] = [tuple(x) for x in state["skipped"]]
        state["notes"] = [tuple(x) for x in state["notes"]]
        return cls(folder=folder, input_zip=folder / "input.zip", **state)

    @property
    def result_zip(self) -> Path:
        """Where the result archive is written."""
        return self.folder / "result.zip"

    def to_dict(self, position: int | None = None, ttl: float | None = None) -> dict[str, Any]:
        """The JSON body of ``GET /api/jobs/{id}``."""
        total = max(self.total, 1)
        if self.status in FINISHED:
            progress = 1.0
        else:
            progress = min(self.done / total, 0.99)
        has_result = self.status == DONE and self.result_zip.is_file()
        now = self.finished or time.time()
        return {
            "id": self.id,
            "status": self.status,
            "model": self.model,
            "scale": self.scale,
            "tta": self.tta,
            "total": self.total,
            "done": self.done,
            "progress": round(progress, 4),
            "queue_position": position,
            "processed": list(self.processed),
            "skipped": [{"name": n, "reason": r} for n, r in self.skipped],
            "notes": [{"name": n, "note": t} for n, t in self.notes],
            "previews": [
                {
                    "k": k,
                    "name": p.name,
                    "lr_shape": list(p.lr.shape),
                    "sr_shape": list(p.sr.shape),
                    "lr": f"/api/jobs/{self.id}/preview/{k}/lr.png",
                    "sr": f"/api/jobs/{self.id}/preview/{k}/sr.png",
                    "sigma": (
                        f"/api/jobs/{self.id}/preview/{k}/sigma.png"
                        if p.sigma is not None
                        else None
                    ),
                    "sigma_max": p.sigma_max,
                }
                for k, p in enumerate(self.previews)
            ],
            "error": self.error,
            "result": f"/api/jobs/{self.id}/result.zip" if has_result else None,
            "result_name": self.result_name if has_result else None,
            "elapsed_s": round(now - (self.started or now), 3),
            "expires_in_s": (
                round(max(0.0, self.finished + ttl - time.time()), 1)
                if ttl is not None and self.finished is not None
                else None
            ),
        }


def _job_upscaler(inner: Any, job: Job, max_pixels: int) -> Any:
    """An :class:`~lenssr.inference.base.Upscaler` that runs ``inner`` for one job.

    ``upscale_path`` accepts any Upscaler; this one refuses images above ``max_pixels`` (a
    per-file error, the batch goes on) and stops before a network call once the job is
    cancelled.
    """
    from lenssr.inference.base import Upscaler
    from lenssr.io import Cancelled

    class JobUpscaler(Upscaler):
        def __init__(self) -> None:
            super().__init__(inner.name, inner.descriptor)

        def _forward(self, x: np.ndarray, scale: int) -> np.ndarray:
            return inner._forward(x, scale)

        def upscale(self, lr: np.ndarray, *args: Any, **kwargs: Any) -> np.ndarray:
            if job.cancel.is_set():
                raise Cancelled("job cancelled")
            h, w = np.shape(lr)[-2:]
            if h * w > max_pixels:
                raise InputError(
                    "image", f"{h}x{w} pixels is more than this server's limit of {max_pixels}"
                )
            return inner.upscale(lr, *args, **kwargs)

    return JobUpscaler()


def count_images(zip_path: Path, settings: Settings, name: str | None = None) -> int:
    """Number of image members of an uploaded zip, after the zip-bomb checks (OS clutter
    such as ``__MACOSX/`` and hidden files is not counted).

    ``name`` (default: the file name) labels the archive in error messages.

    Raises:
        InputError: corrupt or empty archive, too many members, total size or compression
            ratio over the limits (nothing is decompressed).
    """
    return zip_stats(zip_path, settings, name)[0]


def zip_stats(zip_path: Path, settings: Settings, name: str | None = None) -> tuple[int, int]:
    """``(images, estimated LR pixels)`` of an uploaded zip (see :func:`count_images`); the
    pixel estimate assumes 4 bytes per pixel of uncompressed member data (float32)."""
    from lenssr.io import check_zip_infos, is_ignored_name, is_image_name, sanitize_member_name

    name = name or zip_path.name
    try:
        with zipfile.ZipFile(zip_path) as zf:
            infos = check_zip_infos(zf.infolist(), zip_limits(settings), name)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise InputError(name, f"corrupt or not a zip archive ({exc})") from exc
    n, pixels, unsafe = 0, 0, []
    for info in infos:
        try:
            member = sanitize_member_name(info.filename)
        except ValueError as exc:
            unsafe.append(f"{info.filename!r}: {exc}")
            continue
        if is_image_name(member) and not is_ignored_name(member):
            n += 1
            pixels += info.file_size // 4
    if n == 0:
        why = f" ({len(unsafe)} unsafe names refused, e.g. {unsafe[0]})" if unsafe else ""
        raise InputError(name, f"the archive holds no usable image files{why}")
    if n > settings.max_files:
        raise InputError(name, f"{n} images, more than this server's limit of {settings.max_files}")
    return n, pixels


def zip_limits(settings: Settings) -> Any:
    """:class:`lenssr.io.ZipLimits` from the server settings."""
    from lenssr.io import ZipLimits

    member_bytes = min(settings.max_unpacked_bytes, ZipLimits().max_member_bytes)
    # a float64 FITS of the largest allowed image, plus its headers: no valid image is larger
    one_image = settings.max_pixels * 8 + 1024**2
    return ZipLimits(
        max_members=max(settings.max_files * 2, 16),
        max_total_bytes=settings.max_unpacked_bytes,
        max_member_bytes=member_bytes,
        max_ratio=settings.max_ratio,
        max_pixels=settings.max_pixels,
        max_file_bytes=min(member_bytes, one_image),
        max_decoded_bytes=one_image,
        max_job_bytes=settings.max_decoded_bytes,
    )


def _read_member(zf: zipfile.ZipFile, wanted: set[str]) -> dict[str, bytes]:
    """Bytes of the members whose sanitised names are in ``wanted``."""
    from lenssr.io import ZipLimits, sanitize_member_name
    from lenssr.io.batch import read_member

    found: dict[str, bytes] = {}
    for info in zf.infolist():
        try:
            name = sanitize_member_name(info.filename)
        except ValueError:
            continue
        if name in wanted and name not in found:
            found[name] = read_member(zf, info, ZipLimits())
    return found


def write_report(job: Job) -> None:
    """Add ``report.json`` (processed names, skipped names with reasons) to the result zip."""
    report = {
        "model": job.model,
        "scale": job.scale,
        "tta": job.tta,
        "processed": list(job.processed),
        "skipped": [{"name": n, "reason": r} for n, r in job.skipped],
        "notes": [{"name": n, "note": t} for n, t in job.notes],
    }
    with zipfile.ZipFile(job.result_zip, "a", compression=zipfile.ZIP_DEFLATED) as zf:
        if "report.json" not in zf.namelist():
            zf.writestr("report.json", json.dumps(report, indent=1) + "\n")


def make_previews(job: Job, count: int) -> list[Preview]:
    """Before/after pairs for the first ``count`` processed images: LR from the job's input,
    SR (and, for ``job.uncertainty``, its 1-sigma map) read back from the result zip (exactly
    what the user downloads). Images larger than :data:`PREVIEW_MAX_PIXELS` at SR size are left
    out (memory). FITS images are shown with their first row at the bottom, as ds9 and
    ``imshow(origin="lower")`` show them."""
    from lenssr.io import read_image

    names = job.processed[:count]
    if not names:
        return []
    with zipfile.ZipFile(job.input_zip) as zin, zipfile.ZipFile(job.result_zip) as zout:
        lr_raw = _read_member(zin, set(names))
        previews = []
        for name in names:
            if name not in lr_raw:
                continue
            lr_img = read_image(lr_raw[name], name=name)
            lr = lr_img.data
            if lr.size * job.scale**2 > PREVIEW_MAX_PIXELS:
                continue
            raw = zout.read(name)
            sr = read_image(raw, name=name).data
            sigma = _read_sigma(zout, name, raw, lr_img.fmt) if job.uncertainty else None
            if lr_img.fmt == "fits":
                lr, sr = np.flipud(lr), np.flipud(sr)
                sigma = None if sigma is None else np.flipud(sigma)
            previews.append(Preview(name=name, lr=lr, sr=sr, sigma=sigma))
    return previews


def _read_sigma(zout: zipfile.ZipFile, name: str, raw: bytes, fmt: str) -> np.ndarray | None:
    """The 1-sigma map written beside result ``name`` (its FITS ``SIGMA`` HDU, or the
    ``<stem>_sigma.npy`` / ``.tif`` member); None when there is none."""
    from lenssr.io import read_image
    from lenssr.io.batch import sidecar_name

    if fmt == "fits":
        import io

        from astropy.io import fits

        with fits.open(io.BytesIO(raw)) as hdul:
            if "SIGMA" not in hdul:
                return None
            return np.asarray(hdul["SIGMA"].data, dtype=np.float32)
    twin = sidecar_name(name, "sigma", "npy" if fmt == "npy" else "tiff")
    try:
        return read_image(zout.read(twin), name=twin).data
    except KeyError:
        return None


class JobManager:
    """Queue + worker threads + model cache + expiry of finished jobs.

    Usage: ``start()`` once, ``submit(job)`` from request handlers, ``get(id)`` to poll,
    ``stop()`` at shutdown.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        if settings.work_dir is not None:
            self.root = Path(settings.work_dir)
            self.root.mkdir(parents=True, exist_ok=True)
            self._own_root = False
        else:
            self.root = Path(tempfile.mkdtemp(prefix="lenssr-web-"))
            self._own_root = True
        self._jobs: dict[str, Job] = {}
        self._expired: dict[str, float] = {}  # id -> when it expired (bounded memory)
        self._order: list[str] = []  # queued job ids, FIFO
        self._lock = threading.Lock()
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._small: queue.Queue[str | None] = queue.Queue()  # the small-job lane
        self._models: dict[str, Any] = {}
        self._model_locks: dict[str, threading.Lock] = {}
        self._local = threading.local()  # the job this worker thread runs
        self._gate = threading.Condition()  # large jobs wait on it while a small job runs
        self._small_running = 0
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    # ----------------------------------------------------------------------------- lifecycle

    def start(self) -> None:
        """Resume the jobs kept in the work folder, start the worker threads and the janitor
        (idempotent)."""
        if self._threads:
            return
        self._stop.clear()
        if not self._own_root:
            self._resume()
        lanes = [(self._queue, f"lenssr-job-{i}") for i in range(self.settings.workers)]
        lanes.append((self._small, "lenssr-small-jobs"))
        for lane, name in lanes:
            t = threading.Thread(target=self._work, args=(lane,), name=name, daemon=True)
            t.start()
            self._threads.append(t)
        janitor = threading.Thread(target=self._janitor, name="lenssr-janitor", daemon=True)
        janitor.start()
        self._threads.append(janitor)

    def _resume(self) -> None:
        """Load the jobs saved under the work folder: finished ones are served until their
        TTL; queued or interrupted ones are queued again (they restart from their input)."""
        for folder in sorted(self.root.iterdir()):
            if not (_JOB_ID.match(folder.name) and (folder / JOB_FILE).is_file()):
                continue
            try:
                job = Job.load(folder)
            except (OSError, ValueError, KeyError, TypeError) as exc:
                log.warning("ignoring job folder %s: %s", folder, exc)
                continue
            if job.status in (QUEUED, RUNNING):
                job.status, job.started, job.done = QUEUED, None, 0
                job.processed, job.notes = [], []
                job.result_zip.unlink(missing_ok=True)
                with self._lock:
                    self._jobs[job.id] = job
                    self._order.append(job.id)
                lane = self._small if job.pixels <= self.settings.small_job_pixels else self._queue
                lane.put(job.id)
                log.info("job %s queued again after a restart", job.id)
            elif job.status == DONE and job.result_zip.is_file():
                with self._lock:
                    self._jobs[job.id] = job
                try:
                    job.previews = make_previews(job, self.settings.previews)
                except (LenssrError, OSError, zipfile.BadZipFile):
                    log.exception("job %s: previews failed", job.id)
            elif job.status in (FAILED, DONE):
                with self._lock:
                    self._jobs[job.id] = job
            else:
                shutil.rmtree(folder, ignore_errors=True)
        self.expire()

    def stop(self) -> None:
        """Stop the threads (running jobs are interrupted) and delete the job folders, except
        in a work folder given in the settings: there, jobs are kept for the next start."""
        self._stop.set()
        with self._lock:
            for job in self._jobs.values():
                job.cancel.set()
        with self._gate:
            self._gate.notify_all()
        for _ in range(self.settings.workers):
            self._queue.put(None)
        self._small.put(None)
        for t in self._threads:
            t.join(timeout=30)
        self._threads = []
        with self._lock:
            if self._own_root:
                for job in self._jobs.values():
                    shutil.rmtree(job.folder, ignore_errors=True)
            self._jobs.clear()
            self._order.clear()
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)

    # ---------------------------------------------------------------------------------- jobs

    def new_folder(self) -> tuple[str, Path]:
        """A fresh job id and its (created) folder."""
        job_id = uuid.uuid4().hex
        folder = self.root / job_id
        folder.mkdir(parents=True)
        return job_id, folder

    def submit(self, job: Job) -> None:
        """Queue a job.

        Raises:
            ServerBusy: ``max_queued`` jobs are already waiting or running.
        """
        self.expire()
        with self._lock:
            active = sum(1 for j in self._jobs.values() if j.status in (QUEUED, RUNNING))
            if active >= self.settings.max_queued:
                raise ServerBusy(
                    f"the server is busy ({active} jobs waiting or running); try again later"
                )
            self._jobs[job.id] = job
            self._order.append(job.id)
        job.save()
        small = job.pixels <= self.settings.small_job_pixels
        (self._small if small else self._queue).put(job.id)

    def get(self, job_id: str) -> Job | None:
        """The job, or None when unknown or expired."""
        with self._lock:
            return self._jobs.get(job_id)

    def expired_ago(self, job_id: str) -> float | None:
        """Seconds since the job ``job_id`` expired, or None when it never existed here."""
        with self._lock:
            when = self._expired.get(job_id)
        return None if when is None else time.time() - when

    def cancel(self, job_id: str) -> Job | None:
        """Cancel a queued or running job, or delete a finished one. Its files are deleted
        at once; a running job's worker stops at its next network call (a batch of images or
        tiles) and discards what it was writing. None when the job is unknown."""
        with self._lock:
            job = self._jobs.pop(job_id, None)
            if job is None:
                return None
            job.cancel.set()
            job.cancelled_by_user = True
            if job_id in self._order:
                self._order.remove(job_id)
            if job.status in (QUEUED, RUNNING):
                job.status, job.finished = CANCELLED, time.time()
            self._remember_expired(job_id)
        with self._gate:
            self._gate.notify_all()
        # A running worker may still hold the (unlinked) result file open: its inode is
        # freed when the worker closes it, at its next network call at the latest.
        shutil.rmtree(job.folder, ignore_errors=True)
        return job

    def _remember_expired(self, job_id: str) -> None:
        """Record a removed job id (call with ``_lock`` held)."""
        self._expired[job_id] = time.time()
        while len(self._expired) > EXPIRED_MEMORY:
            self._expired.pop(next(iter(self._expired)))

    def position(self, job_id: str) -> int | None:
        """1-based place of a queued job in the queue (None when not queued)."""
        with self._lock:
            try:
                return self._order.index(job_id) + 1
            except ValueError:
                return None

    def expire(self, now: float | None = None) -> list[str]:
        """Delete finished jobs older than the TTL (folders included); returns their ids."""
        now = time.time() if now is None else now
        ttl = self.settings.ttl_seconds
        with self._lock:
            old = [
                j for j in self._jobs.values() if j.finished is not None and now - j.finished > ttl
            ]
            for job in old:
                del self._jobs[job.id]
                self._remember_expired(job.id)
        for job in old:
            shutil.rmtree(job.folder, ignore_errors=True)
            log.info("job %s expired", job.id)
        return [j.id for j in old]

    # ----------------------------------------------------------------------------- workers

    def model(self, name: str) -> tuple[Any, threading.Lock]:
        """The cached model instance for ``name`` (loaded on first use, with the small-job
        gate installed on its network calls) and the lock that guards its loading."""
        with self._lock:
            lock = self._model_locks.setdefault(name, threading.Lock())
        with lock:
            if name not in self._models:
                model = self._load(name)
                self._gate_network(model)
                self._models[name] = model
        return self._models[name], lock

    def _load(self, name: str) -> Any:
        from lenssr.inference import load_model

        return load_model(name, device=self.settings.device)

    def _gate_network(self, model: Any) -> None:
        """Wrap ``model._forward`` (one network call: a batch of images or tiles) so that a
        large job's worker waits while a small job runs, and a cancelled job stops at its
        next network call (within a tile batch, also inside one large image)."""
        from lenssr.io import Cancelled

        forward = model._forward

        def gated(*args: Any, **kwargs: Any) -> Any:
            job: Job | None = getattr(self._local, "job", None)
            if job is not None:
                if not getattr(self._local, "small", False):
                    with self._gate:
                        self._gate.wait_for(lambda: self._small_running == 0 or job.cancel.is_set())
                if job.cancel.is_set():
                    raise Cancelled("job cancelled")
            return forward(*args, **kwargs)

        model._forward = gated

    def _janitor(self) -> None:
        interval = min(30.0, max(0.2, self.settings.ttl_seconds / 4))
        while not self._stop.wait(interval):
            try:
                self.expire()
            except Exception:  # pragma: no cover - never let the janitor die
                log.exception("expiry failed")

    def _work(self, lane: queue.Queue[str | None]) -> None:
        while not self._stop.is_set():
            job_id = lane.get()
            if job_id is None:
                return
            with self._lock:
                job = self._jobs.get(job_id)
                if job_id in self._order:
                    self._order.remove(job_id)
            if job is None or job.status != QUEUED:
                continue
            self.run(job, small=lane is self._small)

    def run(self, job: Job, small: bool = False) -> None:
        """Run one job to completion; every error ends up in ``job.error``. A cancelled job
        stops at its next network call and its files are deleted. While a ``small`` job
        runs, large jobs pause between their network calls."""
        from lenssr.inference import upscale_path
        from lenssr.io import Cancelled

        job.status, job.started = RUNNING, time.time()
        job.save()
        self._local.job, self._local.small = job, small
        if small:
            with self._gate:
                self._small_running += 1

        def on_image(_name: str, _ok: bool) -> None:
            job.done += 1

        try:
            inner, _ = self.model(job.model)
            sr = _job_upscaler(inner, job, self.settings.max_pixels)
            report = upscale_path(
                job.input_zip,
                job.result_zip,
                model=sr,
                scale=job.scale,
                tta=job.tta,
                progress=False,
                batch_size=self.settings.batch_size,
                limits=zip_limits(self.settings),
                on_image=on_image,
                should_stop=job.cancel.is_set,
                psf_fwhm=job.psf_fwhm,
                pixel_scale=job.pixel_scale,
                noise_sigma=job.noise_sigma,
                uncertainty=job.uncertainty,
            )
            if job.cancel.is_set():
                raise Cancelled("job cancelled")
            job.processed = list(report.processed)
            job.skipped.extend(report.skipped)
            job.notes = list(report.notes)
            if not job.processed:
                job.status = FAILED
                job.error = "no image could be processed (see the list of refused files)"
            else:
                write_report(job)
                try:
                    job.previews = make_previews(job, self.settings.previews)
                except (LenssrError, OSError, zipfile.BadZipFile):
                    log.exception("job %s: previews failed", job.id)
                job.status = DONE
        except Cancelled:
            job.status, job.error = CANCELLED, "cancelled"
        except LenssrError as exc:
            job.status, job.error = FAILED, str(exc)
        except Exception as exc:  # an error in one job must never stop the server
            if job.cancel.is_set():  # e.g. its files were deleted under it by a cancel
                job.status, job.error = CANCELLED, "cancelled"
            else:
                log.exception("job %s failed", job.id)
                job.status, job.error = FAILED, f"internal error: {type(exc).__name__}: {exc}"
        finally:
            self._local.job = None
            if small:
                with self._gate:
                    self._small_running -= 1
                    self._gate.notify_all()
            job.finished = time.time()
            if self._stop.is_set() and not job.cancelled_by_user:
                # The server is stopping: keep the job to run it again at the next start.
                job.status, job.finished = QUEUED, None
                job.result_zip.unlink(missing_ok=True)
                job.save()
            elif job.cancel.is_set():
                job.status = CANCELLED
                with self._lock:
                    if self._jobs.pop(job.id, None) is not None:
                        self._remember_expired(job.id)
                shutil.rmtree(job.folder, ignore_errors=True)
            else:
                job.save()
