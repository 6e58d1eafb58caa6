"""Server settings: safe defaults (localhost only, bounded uploads, expiring jobs)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lenssr.errors import ConfigError

MiB = 1024 * 1024


@dataclass(frozen=True)
class Settings:
    """Configuration of the web server (``lenssr serve`` flags map 1:1 onto these fields).

    Attributes:
        host: interface to bind; ``127.0.0.1`` (this machine only) by default.
        port: TCP port.
        model: model preselected on the page (falls back to the first available one).
        device: ``"auto"``, ``"cpu"`` or ``"cuda"`` for the models.
        max_upload_mb: largest request body (all uploaded files together), MiB.
        max_files: most images per job (uploaded files, or members of an uploaded zip).
        max_pixels: most pixels of one LR image (``h * w``); larger images are per-file errors.
        max_unpacked_mb: largest total uncompressed size of an uploaded zip's members, MiB.
        max_ratio: largest compression ratio of one zip member (zip-bomb guard).
        ttl_minutes: finished jobs (and their files) are deleted this long after they end.
        max_decoded_mb: decoded images (float32) of one job together, MiB; further images
            of the job are refused one by one.
        workers: job worker threads for large jobs (jobs beyond this wait in a queue).
        small_job_pixels: jobs of at most this many LR pixels (estimated from the upload,
            4 bytes per pixel) run on a worker of their own, and large jobs pause between
            their network calls while one runs, so a large job never makes them wait.
        batch_size: images per network call; 1 gives progress per image (larger batches are
            somewhat faster on a GPU, progress then moves one batch at a time).
        allowed_hosts: ``Host`` header values (host names, without port) accepted; the
            loopback names are always accepted when serving on loopback. ``"*"`` accepts any
            (for a deployment behind a proxy that checks it).
        allowed_origins: ``Origin`` values (``scheme://host:port``) from which a POST or
            DELETE is accepted besides the server's own; ``"*"`` accepts any.
        max_queued: most jobs waiting or running at once; more are refused with HTTP 503.
        previews: number of images per job with a before/after preview.
        work_dir: where job folders live (default: a fresh temporary folder).
    """

    host: str = "127.0.0.1"
    port: int = 8000
    model: str = "hybrid"
    device: str = "auto"
    max_upload_mb: float = 256.0
    max_files: int = 5000
    max_pixels: int = 4096 * 4096
    max_unpacked_mb: float = 2048.0
    max_ratio: float = 100.0
    max_decoded_mb: float = 4096.0
    ttl_minutes: float = 60.0
    workers: int = 1
    small_job_pixels: int = 256 * 1024
    batch_size: int = 1
    allowed_hosts: tuple[str, ...] = ()
    allowed_origins: tuple[str, ...] = ()
    max_queued: int = 32
    previews: int = 6
    work_dir: Path | None = None

    def __post_init__(self) -> None:
        checks = {
            "port": 0 <= self.port <= 65535,
            "max_upload_mb": self.max_upload_mb > 0,
            "max_files": self.max_files >= 1,
            "max_pixels": self.max_pixels >= 1,
            "max_unpacked_mb": self.max_unpacked_mb > 0,
            "max_ratio": self.max_ratio >= 1,
            "max_decoded_mb": self.max_decoded_mb > 0,
            "small_job_pixels": self.small_job_pixels >= 0,
            "batch_size": self.batch_size >= 1,
            "ttl_minutes": self.ttl_minutes > 0,
            "workers": self.workers >= 1,
            "max_queued": self.max_queued >= 1,
            "previews": self.previews >= 0,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            values = ", ".join(f"{name}={getattr(self, name)!r}" for name in bad)
            raise ConfigError(f"invalid server settings: {values}")

    @property
    def max_upload_bytes(self) -> int:
        """:attr:`max_upload_mb` in bytes."""
        return int(self.max_upload_mb * MiB)

    @property
    def max_unpacked_bytes(self) -> int:
        """:attr:`max_unpacked_mb` in bytes."""
        return int(self.max_unpacked_mb * MiB)

    @property
    def max_decoded_bytes(self) -> int:
        """:attr:`max_decoded_mb` in bytes."""
        return int(self.max_decoded_mb * MiB)

    @property
    def ttl_seconds(self) -> float:
        """:attr:`ttl_minutes` in seconds."""
        return self.ttl_minutes * 60.0
