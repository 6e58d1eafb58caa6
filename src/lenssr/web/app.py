"""The FastAPI application: a static page plus a small JSON API around :class:`JobManager`.

API:
    ``POST /api/jobs`` (multipart ``files[]``, ``model``, ``scale``, ``tta``) -> ``{id, total}``
    ``GET /api/jobs/{id}`` -> status, progress, processed, skipped ``[{name, reason}]``, previews
    ``DELETE /api/jobs/{id}`` cancels a job (or deletes a finished one) and frees its files
    ``GET /api/jobs/{id}/result.zip``, ``GET /api/jobs/{id}/preview/{k}/{lr|sr|sigma}.png``
    ``GET /api/models``, ``GET /healthz``
    An expired job answers 410 with a message saying so (unknown ids: 404).

Uploads are bounded (request size, file count), zip archives are checked for zip bombs before
anything is decompressed, and only image members are ever read, by sanitised name, each checked
against the server's limits before it is decoded.

Safe as a local server: requests whose ``Host`` is not this server's (DNS rebinding) get 421,
and POST/DELETE requests from another web site (``Origin`` or ``Sec-Fetch-Site``) get 403,
unless ``Settings.allowed_hosts`` / ``allowed_origins`` allow them. No documentation page that
loads scripts from a CDN is served (``/docs`` and ``/redoc`` are off; ``/openapi.json`` stays).
"""

from __future__ import annotations

import logging
import re
import shutil
import zipfile
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path, PurePosixPath
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from lenssr import __version__
from lenssr.errors import ConfigError, InputError, LenssrError
from lenssr.web.jobs import BICUBIC, Job, JobManager, ServerBusy, zip_stats
from lenssr.web.render import render_pair, render_sigma
from lenssr.web.settings import Settings

log = logging.getLogger("lenssr.web")

STATIC = Path(__file__).resolve().parent / "static"
_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]+")


class UploadTooLarge(Exception):
    """The request body went over ``Settings.max_upload_mb``."""


def available_models() -> list[dict[str, Any]]:
    """Models the page offers: bicubic (no network) and every shipped checkpoint."""
    from lenssr.models import read_descriptor, shipped_models

    models = [
        {
            "name": BICUBIC,
            "scales": [2, 4],
            "scale": 2,
            "description": "bicubic interpolation (no network, the baseline)",
        }
    ]
    for name, path in shipped_models().items():
        try:
            desc = read_descriptor(path)
        except LenssrError:
            log.warning("skipping shipped model %s: unreadable descriptor", name)
            continue
        scale = int(desc.get("scale", 2))
        models.append(
            {
                "name": name,
                "scales": [int(s) for s in desc.get("scales", [scale])],
                "scale": scale,
                "description": f"{desc.get('arch', name)} network (shipped weights)",
                "instrument": bool((desc.get("conditioning") or {}).get("inputs")),
                "sigma": bool((desc.get("arch_config") or {}).get("sigma_head")),
            }
        )
    return models


def safe_name(name: str) -> str:
    """The base name of an uploaded file with unsafe characters replaced (never a path)."""
    base = PurePosixPath(name.replace("\\", "/")).name
    base = _UNSAFE.sub("_", base).lstrip(".")
    return base or "unnamed"


def _limited(request: Request, limit: int) -> Request:
    """``request`` whose body stream raises :class:`UploadTooLarge` past ``limit`` bytes."""
    seen = 0
    receive = request.receive

    async def counting() -> dict[str, Any]:
        nonlocal seen
        message = await receive()
        seen += len(message.get("body", b""))
        if seen > limit:
            raise UploadTooLarge
        return message

    return Request(request.scope, receive=counting)


def _too_large(settings: Settings) -> HTTPException:
    return HTTPException(
        413, f"upload larger than this server's limit of {settings.max_upload_mb:g} MB"
    )


LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
_WILDCARD_BINDS = ("0.0.0.0", "::", "")


def host_name(host_header: str) -> str:
    """The host part of a ``Host`` header (``[::1]:8000`` -> ``::1``, ``a.b:80`` -> ``a.b``),
    lower-cased."""
    h = host_header.strip().lower()
    if h.startswith("["):
        return h[1 : h.find("]")] if "]" in h else h
    return h.rsplit(":", 1)[0] if h.count(":") == 1 else h


def allowed_host_names(settings: Settings) -> set[str] | None:
    """Host names the server answers to (None: any). Loopback names always; the bound
    address when it is a specific one; plus ``settings.allowed_hosts``."""
    if "*" in settings.allowed_hosts:
        return None
    names = set(LOOPBACK_HOSTS)
    if settings.host not in _WILDCARD_BINDS:
        names.add(host_name(settings.host))
    names.update(host_name(h) for h in settings.allowed_hosts)
    return names


def _flag(value: Any) -> bool:
    return str(value).strip().lower() in ("1", "true", "on", "yes")


def _positive(value: Any, key: str) -> float | None:
    """An optional positive number of the upload form (the LR instrument); 400 otherwise."""
    text = str(value).strip() if value is not None else ""
    if not text:
        return None
    try:
        number = float(text)
    except ValueError:
        number = float("nan")
    if not (number > 0 and number != float("inf")):
        raise HTTPException(400, f"{key} must be a positive number, got {text!r}")
    return number


def create_app(settings: Settings | None = None) -> FastAPI:
    """The web application (page + API) for ``settings`` (defaults: :class:`Settings`).

    Raises:
        ConfigError: ``settings.model`` is not available (except the default ``hybrid``, which
            falls back to bicubic when its weights are not shipped).
    """
    settings = settings or Settings()
    models = available_models()
    by_name = {m["name"]: m for m in models}
    default_model = settings.model
    if default_model not in by_name:
        if default_model != Settings.model:
            raise ConfigError(
                f"unknown model {default_model!r}; available: {', '.join(sorted(by_name))}"
            )
        default_model = next((n for n in by_name if n != BICUBIC), BICUBIC)
    manager = JobManager(settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        manager.start()
        try:
            yield
        finally:
            manager.stop()

    app = FastAPI(
        title="lenssr", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None
    )
    app.state.settings = settings
    app.state.jobs = manager
    hosts = allowed_host_names(settings)
    origins = {o.rstrip("/").lower() for o in settings.allowed_origins}

    @app.middleware("http")
    async def _same_site_only(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        host = request.headers.get("host", "")
        if hosts is not None and host_name(host) not in hosts:
            return JSONResponse(
                {"detail": f"unknown host {host!r}: add it with --allowed-host to serve it"},
                status_code=421,
            )
        if request.method not in ("GET", "HEAD", "OPTIONS") and "*" not in origins:
            origin = request.headers.get("origin")
            own = {f"{request.url.scheme}://{host}".lower()}
            if origin is not None and origin.rstrip("/").lower() not in own | origins:
                return JSONResponse(
                    {"detail": f"cross-origin request from {origin} refused"}, status_code=403
                )
            if origin is None and request.headers.get("sec-fetch-site") == "cross-site":
                return JSONResponse({"detail": "cross-site request refused"}, status_code=403)
        return await call_next(request)

    @app.middleware("http")
    async def _no_sniff(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        response = await call_next(request)
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["X-Frame-Options"] = "DENY"
        return response

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @app.get("/healthz")
    def healthz() -> dict[str, Any]:
        return {"status": "ok", "version": __version__}

    @app.get("/api/models")
    def api_models() -> dict[str, Any]:
        return {
            "default": default_model,
            "models": models,
            "limits": {
                "max_upload_mb": settings.max_upload_mb,
                "max_files": settings.max_files,
                "max_pixels": settings.max_pixels,
                "ttl_minutes": settings.ttl_minutes,
            },
        }

    @app.post("/api/jobs", status_code=202)
    async def api_submit(request: Request) -> dict[str, Any]:
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > settings.max_upload_bytes:
            raise _too_large(settings)
        try:
            form = await _limited(request, settings.max_upload_bytes).form(
                max_files=settings.max_files, max_fields=16
            )
        except UploadTooLarge as exc:
            raise _too_large(settings) from exc
        model = str(form.get("model") or default_model)
        if model not in by_name:
            raise HTTPException(
                400, f"unknown model {model!r}; available: {', '.join(sorted(by_name))}"
            )
        scales = by_name[model]["scales"]
        try:
            scale = int(str(form.get("scale") or by_name[model]["scale"]))
        except ValueError as exc:
            raise HTTPException(400, "scale must be an integer") from exc
        if scale not in scales:
            raise HTTPException(400, f"model {model!r} serves scales {scales}, not {scale}")
        instrument = {
            key: _positive(form.get(key), key) for key in ("psf_fwhm", "pixel_scale", "noise_sigma")
        }
        uncertainty = _flag(form.get("uncertainty"))
        if uncertainty and not by_name[model].get("sigma"):
            raise HTTPException(400, f"model {model!r} gives no uncertainty (no sigma head)")
        uploads = [f for f in form.getlist("files[]") + form.getlist("files") if f]
        uploads = [f for f in uploads if isinstance(f, UploadFile)]
        if not uploads:
            raise HTTPException(400, "no files uploaded: drop a .zip or image files")
        # the job's fields that the user chose (the upload decides the others)
        asked = {
            "model": model,
            "scale": scale,
            "tta": _flag(form.get("tta")),
            "uncertainty": uncertainty,
            **instrument,
        }
        job_id, folder = manager.new_folder()
        try:
            job = await run_in_threadpool(_build_job, job_id, folder, uploads, asked)
            manager.submit(job)
        except InputError as exc:
            shutil.rmtree(folder, ignore_errors=True)
            raise HTTPException(400, str(exc)) from exc
        except ServerBusy as exc:
            shutil.rmtree(folder, ignore_errors=True)
            raise HTTPException(503, str(exc)) from exc
        finally:
            await form.close()
        return {"id": job.id, "total": job.total, "page": f"/#job={job.id}"}

    def _build_job(
        job_id: str, folder: Path, uploads: list[UploadFile], asked: dict[str, Any]
    ) -> Job:
        """The job of ``uploads``, stored as one zip in ``folder``, with the fields in ``asked``
        (what the user chose: model, scale, tta, uncertainty, instrument)."""
        from lenssr.io import is_image_name

        zips = [u for u in uploads if (u.filename or "").lower().endswith(".zip")]
        input_zip = folder / "input.zip"
        skipped: list[tuple[str, str]] = []
        if zips:
            if len(uploads) > 1:
                raise InputError(
                    safe_name(zips[0].filename or "upload.zip"),
                    "drop one .zip on its own, or image files without a zip",
                )
            with input_zip.open("wb") as fh:
                shutil.copyfileobj(zips[0].file, fh, length=1024 * 1024)
            upload_name = safe_name(zips[0].filename or "upload.zip")
            stem = upload_name[: -len(".zip")] or "upload"
            total, pixels = zip_stats(input_zip, settings, name=upload_name)
        else:
            stem = "lenssr"
            seen: set[str] = set()
            pixels = 0
            with zipfile.ZipFile(input_zip, "w", compression=zipfile.ZIP_STORED) as zf:
                for upload in uploads:
                    name = safe_name(upload.filename or "unnamed")
                    if not is_image_name(name):
                        skipped.append((name, "not an image file (unsupported extension)"))
                    elif name in seen:
                        skipped.append((name, "duplicate file name (skipped)"))
                    else:
                        seen.add(name)
                        with zf.open(name, "w") as fh:
                            shutil.copyfileobj(upload.file, fh, length=1024 * 1024)
                        pixels += (upload.size or 0) // 4
            if not seen:
                raise InputError(
                    "upload", "no image files (.npy, .fits, .fits.gz, .fz, .png, .tif)"
                )
            total = len(seen)
        job = Job(
            id=job_id,
            folder=folder,
            input_zip=input_zip,
            result_name=f"{stem}_sr.zip",
            total=total,
            pixels=pixels,
            **asked,
        )
        job.skipped.extend(skipped)
        return job

    def _job(job_id: str) -> Job:
        job = manager.get(job_id)
        if job is None:
            ago = manager.expired_ago(job_id)
            if ago is not None:
                raise HTTPException(
                    410,
                    f"this job has expired or was cancelled ({ago / 60:.0f} min ago): its files "
                    f"are deleted (results are kept {settings.ttl_minutes:g} min after a job "
                    "ends); upload the images again",
                )
            raise HTTPException(404, "unknown job (wrong link, or the server was restarted)")
        return job

    @app.delete("/api/jobs/{job_id}")
    def api_cancel(job_id: str) -> dict[str, Any]:
        job = manager.cancel(job_id)
        if job is None:
            _job(job_id)  # 410 or 404 with its message
        return {"id": job_id, "status": "cancelled"}

    @app.get("/api/jobs/{job_id}")
    def api_job(job_id: str) -> dict[str, Any]:
        job = _job(job_id)
        return job.to_dict(position=manager.position(job_id), ttl=settings.ttl_seconds)

    @app.get("/api/jobs/{job_id}/result.zip")
    def api_result(job_id: str) -> FileResponse:
        job = _job(job_id)
        if job.status != "done" or not job.result_zip.is_file():
            raise HTTPException(409, f"job is {job.status}: no result to download")
        return FileResponse(job.result_zip, media_type="application/zip", filename=job.result_name)

    @app.get("/api/jobs/{job_id}/preview/{k}/{which}.png")
    def api_preview(job_id: str, k: int, which: str) -> Response:
        job = _job(job_id)
        if which not in ("lr", "sr", "sigma") or not 0 <= k < len(job.previews):
            raise HTTPException(404, "no such preview")
        preview = job.previews[k]
        if which == "sigma":
            if preview.sigma is None:
                raise HTTPException(404, "this preview has no sigma map")
            if which not in preview.png:
                preview.png["sigma"] = render_sigma(preview.sigma)
        elif which not in preview.png:
            preview.png["lr"], preview.png["sr"] = render_pair(preview.lr, preview.sr)
        return Response(
            preview.png[which], media_type="image/png", headers={"Cache-Control": "max-age=3600"}
        )

    @app.exception_handler(LenssrError)
    async def _lenssr_error(_: Request, exc: LenssrError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=400)

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app
