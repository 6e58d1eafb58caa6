"""Backend choice for :func:`lenssr.inference.load_model`: ONNX Runtime on CPU, PyTorch on CUDA.

On CPU the network runs as an ONNX Runtime graph (about twice PyTorch eager's images/s on a
2-core machine). Each model is exported once per scale into a user cache folder
(:func:`cache_dir`; ``LENSSR_CACHE_DIR`` overrides it), under a key made of the weights' hash,
the scale, the opset and the ONNX Runtime and PyTorch versions. The first export is checked
against PyTorch (:func:`~lenssr.inference.onnx_export.check_onnx` on images in [0, 1), so the
difference is a fraction of the image range); the worst difference is written in a ``.json``
beside the ``.onnx``. An export that fails, or whose difference exceeds
:data:`PARITY_TOLERANCE`, is recorded there too, and the model runs in PyTorch, with one line of
explanation on the ``lenssr`` logger.

The ONNX-backed model (:class:`OrtSRModel`) is an :class:`~lenssr.inference.api.SRModel`: it
keeps the torch ``module`` (evaluation and training code use it) and runs it for what the graph
does not have (``upscale(..., return_sigma=True)``). On CUDA the network runs in PyTorch, in
half precision when a parity check allows it (:class:`HalfSRModel`).
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import re
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from lenssr.errors import LenssrError
from lenssr.inference.api import BICUBIC, SRModel

#: Values of ``backend=`` (Python) / ``--backend`` (CLI).
BACKENDS = ("auto", "torch", "onnxruntime")
#: Environment variable naming the cache folder of exported graphs (tests point it at a tmp dir).
CACHE_ENV = "LENSSR_CACHE_DIR"
#: ONNX opset of the cached exports.
DEFAULT_OPSET = 17
#: Largest ONNX Runtime vs PyTorch max abs difference, as a fraction of the image range.
PARITY_TOLERANCE = 1e-4
#: ``(height, width)`` LR sizes and batch sizes of the parity check of a new export.
PARITY_SIZES: tuple[tuple[int, int], ...] = ((75, 75), (40, 52))
PARITY_BATCHES: tuple[int, ...] = (1, 2)
#: Age [s] after which a temporary export is taken as left by a killed process and removed.
STALE_TMP_S = 3600.0
#: Largest half- vs single-precision difference (fraction of the image range) for CUDA half.
HALF_TOLERANCE = 1e-4

log = logging.getLogger("lenssr")


class BackendUnavailable(RuntimeError):
    """ONNX Runtime cannot run this model (export failed, session failed, or parity failed)."""


def cache_dir() -> Path:
    """The folder of cached ONNX exports: ``$LENSSR_CACHE_DIR`` or the user cache dir + onnx."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("lenssr")) / "onnx"


def weights_hash(module: nn.Module, descriptor: dict[str, Any] | None = None) -> str:
    """SHA-256 (hex) of the module's state dict (names, dtypes, shapes, bytes) and descriptor."""
    h = hashlib.sha256()
    h.update(json.dumps(descriptor or {}, sort_keys=True, default=str).encode())
    for name, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def cache_key(sr: SRModel, scale: int, opset: int = DEFAULT_OPSET) -> str:
    """File stem of the cached export of ``sr`` at ``scale``: arch, scale, weights hash, opset,
    ONNX Runtime and PyTorch versions (any change exports again)."""
    import onnxruntime

    arch = re.sub(r"[^A-Za-z0-9_.-]", "_", str(sr.descriptor.get("arch", "model")))
    torch_version = re.sub(r"[^A-Za-z0-9_.]", "_", torch.__version__)
    digest = weights_hash(sr.module, sr.descriptor)[:20]
    return (
        f"{arch}-x{scale}-{digest}-opset{opset}-ort{onnxruntime.__version__}-torch{torch_version}"
    )


def _one_line(exc: BaseException) -> str:
    """``Type: first line of the message`` (at most 160 characters)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text if len(text) <= 160 else text[:157] + "..."


def cached_onnx(
    sr: SRModel, scale: int, opset: int = DEFAULT_OPSET, threads: int | None = None
) -> tuple[Path, dict[str, Any]]:
    """The cached ``.onnx`` of ``sr`` at ``scale`` and its record, exporting it on first use.

    The record (``<key>.json`` beside ``<key>.onnx``) holds ``ok``, ``max_abs_diff`` (ONNX
    Runtime vs PyTorch on images in [0, 1), i.e. a fraction of the image range), ``tolerance``
    and, when not ``ok``, ``reason``. Failed exports are recorded too (except out-of-disk or
    out-of-memory ones), so they are not retried until the key changes or the ``.json`` is
    deleted.

    Raises:
        BackendUnavailable: the export, the session or the parity check failed (now or when it
            was recorded).
    """
    from lenssr.inference.onnx_export import OnnxSRModel, check_onnx, export_onnx

    folder = cache_dir()
    key = cache_key(sr, scale, opset)
    onnx_path, meta_path = folder / f"{key}.onnx", folder / f"{key}.json"
    if meta_path.is_file():
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError):
            meta = None
        if meta is not None and not meta.get("ok"):
            raise BackendUnavailable(str(meta.get("reason", "recorded as failed")))
        if meta is not None and onnx_path.is_file():
            return onnx_path, meta

    folder.mkdir(parents=True, exist_ok=True)
    _remove_stale(folder)
    tmp = folder / f"{key}.{os.getpid()}.{threading.get_ident()}.tmp.onnx"
    meta = {"key": key, "model": sr.name, "scale": scale, "opset": opset}
    meta["tolerance"] = PARITY_TOLERANCE
    try:
        try:
            export_onnx(sr, tmp, scale=scale, opset=opset)
            ort_model = OnnxSRModel(tmp, device="cpu", threads=threads)
            diffs = check_onnx(sr, ort_model, PARITY_SIZES, PARITY_BATCHES)
        except Exception as exc:  # the exporter and onnxruntime raise many exception types
            reason = f"export failed ({_one_line(exc)})"
            if not isinstance(exc, OSError | MemoryError):  # those may pass: not recorded
                _write_json(meta_path, {**meta, "ok": False, "reason": reason})
            raise BackendUnavailable(reason) from exc
        worst = max(diffs.values())
        meta["max_abs_diff"] = worst
        meta["image_range"] = 1.0
        meta["checked"] = [list(k) for k in diffs]  # (batch, height, width) of each check
        if not worst <= PARITY_TOLERANCE:
            reason = (
                f"parity check failed (max abs diff {worst:.2e} of the image range > "
                f"{PARITY_TOLERANCE:g})"
            )
            _write_json(meta_path, {**meta, "ok": False, "reason": reason})
            raise BackendUnavailable(reason)
        os.replace(tmp, onnx_path)
        meta["ok"] = True
        _write_json(meta_path, meta)
    finally:
        tmp.unlink(missing_ok=True)
    return onnx_path, meta


def _remove_stale(folder: Path, age_s: float = STALE_TMP_S) -> None:
    """Delete temporary exports older than ``age_s`` seconds (left by killed processes)."""
    now = time.time()
    for tmp in folder.glob("*.tmp*"):
        try:
            if now - tmp.stat().st_mtime > age_s:
                tmp.unlink()
        except OSError:  # another process removed or replaced it meanwhile
            pass


def _write_json(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` to ``path`` atomically (another process may read it meanwhile)."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, path)


class OrtSRModel(SRModel):
    """An :class:`SRModel` whose network runs as cached ONNX Runtime graphs, one per scale.

    ``module`` stays the torch network: ``upscale(..., return_sigma=True)`` (the graph has no
    sigma output) runs it on CPU, and so does a scale whose export fails later (one logged
    line), unless ``strict``. ``onnx`` maps each exported scale to its cache record.
    """

    backend = "onnxruntime"

    def __init__(
        self,
        module: nn.Module,
        descriptor: dict[str, Any],
        name: str,
        threads: int | None = None,
        opset: int = DEFAULT_OPSET,
        strict: bool = False,
        session_device: str = "cpu",
        data_parallel: bool = True,
    ) -> None:
        from lenssr.inference.onnx_export import ONNX_MIN_SIDE

        super().__init__(module, descriptor, name=name, device="cpu")
        self.min_side = ONNX_MIN_SIDE
        self.threads = threads
        self.data_parallel = data_parallel
        self.opset = opset
        self.strict = strict
        #: where ONNX Runtime runs the graphs (``cuda``: its CUDA execution provider)
        self.session_device = session_device
        self.onnx: dict[int, dict[str, Any]] = {}
        #: the same network in PyTorch: the reference of each export's parity check
        self._torch = SRModel(self.module, descriptor, name=name, device="cpu")
        self._sessions: dict[int, Any] = {}
        self._lock = threading.Lock()
        self._runtime_warned = False
        self._session(self.scale)  # the default scale now, so a failure shows at load time

    def _session(self, scale: int) -> Any:
        """The ONNX Runtime model of ``scale`` (exported on first use), ``None`` after a
        failure on a non-strict model.

        Raises:
            BackendUnavailable: the default scale fails (at construction).
            LenssrError: another scale fails on a ``strict`` model.
        """
        if scale in self._sessions:
            return self._sessions[scale]
        from lenssr.inference.onnx_export import OnnxSRModel

        with self._lock:
            if scale not in self._sessions:
                try:
                    path, meta = cached_onnx(self._torch, scale, self.opset, self.threads)
                    session = OnnxSRModel(
                        path, self.session_device, self.threads, self.data_parallel
                    )
                # LenssrError: a cached file that does not open; OSError: cache not writable
                except (BackendUnavailable, LenssrError, OSError) as exc:
                    reason = str(exc) if isinstance(exc, BackendUnavailable) else _one_line(exc)
                    if not self._sessions:  # the default scale, at construction
                        raise BackendUnavailable(reason) from exc
                    if self.strict:
                        raise LenssrError(
                            f"{self.name} x{scale}: ONNX Runtime cannot run this model: {reason}"
                        ) from exc
                    log.warning(
                        "lenssr: %s x%d: ONNX Runtime cannot run this scale (%s); using PyTorch",
                        self.name,
                        scale,
                        reason,
                    )
                    session = None
                else:
                    self.onnx[scale] = {**meta, "path": str(path)}
                self._sessions[scale] = session
        return self._sessions[scale]

    def _forward(
        self, x: np.ndarray, scale: int, cond: np.ndarray | None = None, sigma: bool = False
    ) -> np.ndarray:
        session = None if sigma else self._session(scale)
        if session is None:
            return super()._forward(x, scale, cond=cond, sigma=sigma)
        try:
            return session._forward(x, scale, cond=cond)
        except Exception as exc:  # onnxruntime's own error types (shape the graph cannot run)
            if self.strict:
                raise LenssrError(
                    f"{self.name}: ONNX Runtime failed on input {x.shape}: {_one_line(exc)}"
                ) from exc
            if not self._runtime_warned:
                self._runtime_warned = True
                log.warning(
                    "lenssr: %s: ONNX Runtime failed on input %s (%s); using PyTorch for such "
                    "inputs",
                    self.name,
                    tuple(x.shape),
                    _one_line(exc),
                )
            return super()._forward(x, scale, cond=cond)


class HalfSRModel(SRModel):
    """An :class:`SRModel` running a half-precision copy of the network (CUDA); inputs and
    outputs stay float32 (normalised ``(B, 1, H, W)`` -> ``(B, 1, s*H, s*W)``)."""

    def __init__(
        self, module: nn.Module, descriptor: dict[str, Any], name: str, device: Any
    ) -> None:
        super().__init__(module, descriptor, name=name, device=device)
        #: the float32 network stays ``module``; the half copy runs the plain forward
        self.half_module = copy.deepcopy(self.module).half().eval()

    @torch.inference_mode()
    def _forward(
        self, x: np.ndarray, scale: int, cond: np.ndarray | None = None, sigma: bool = False
    ) -> np.ndarray:
        if sigma:
            return super()._forward(x, scale, cond=cond, sigma=True)
        t = torch.from_numpy(x).to(self.device).half()
        kw = {} if cond is None else {"cond": torch.from_numpy(cond).to(self.device).half()}
        return self.half_module(t, scale=scale, **kw).float().cpu().numpy()


def half_parity(sr: SRModel, half: SRModel, seed: int = 0) -> float:
    """Max abs difference of ``half`` vs ``sr`` (fraction of the image range) on random
    images in [0, 1): batches of 1 and 3, 75x75 and 40x52 LR pixels, at the default scale."""
    rng = np.random.default_rng(seed)
    worst = 0.0
    for b, h, w in ((1, 75, 75), (3, 40, 52)):
        x = rng.random((b, h, w), dtype=np.float32)
        worst = max(worst, float(np.max(np.abs(half.upscale(x, tile=0) - sr.upscale(x, tile=0)))))
    return worst


def select_backend(
    sr: SRModel, backend: str = "auto", threads: int | None = None, data_parallel: bool = True
) -> SRModel:
    """``sr`` on the chosen backend.

    Args:
        sr: a loaded PyTorch model.
        backend: ``auto`` (CPU: ONNX Runtime, falling back to PyTorch with one logged line;
            CUDA: PyTorch, half precision when :func:`half_parity` is within
            :data:`HALF_TOLERANCE`; ``bicubic``, which has no weights: PyTorch), ``torch``, or
            ``onnxruntime`` (raises instead of falling back; on a CUDA device it needs
            onnxruntime's CUDA execution provider).
        threads: ONNX Runtime intra-op threads (default: ``torch.get_num_threads()``, so one
            setting governs both backends).
        data_parallel: on CPU with several threads, run a batch as one single-thread ONNX
            Runtime session per thread on slices of it (:class:`~lenssr.inference.onnx_export.
            OnnxSRModel`); False: one session with all the threads.

    Raises:
        LenssrError: unknown backend, or ``onnxruntime`` that cannot run the model.
    """
    chosen = _select(sr, backend, threads, data_parallel)
    chosen.weights_dir = sr.weights_dir
    return chosen


def _select(sr: SRModel, backend: str, threads: int | None, data_parallel: bool) -> SRModel:
    if backend not in BACKENDS:
        raise LenssrError(f"unknown backend {backend!r}; use {', '.join(BACKENDS)}")
    if backend == "torch":
        return sr
    if backend == "auto" and (sr.name == BICUBIC or sr.device.type != "cpu"):
        return _maybe_half(sr) if sr.device.type == "cuda" else sr
    n_threads = threads if threads is not None else torch.get_num_threads()
    try:
        return OrtSRModel(
            sr.module,
            sr.descriptor,
            sr.name,
            threads=n_threads,
            strict=backend != "auto",
            session_device="cpu" if sr.device.type == "cpu" else "cuda",
            data_parallel=data_parallel,
        )
    except BackendUnavailable as exc:
        if backend == "onnxruntime":
            raise LenssrError(f"{sr.name}: ONNX Runtime cannot run this model: {exc}") from exc
        log.warning(
            "lenssr: %s: ONNX Runtime cannot run this model (%s); using PyTorch", sr.name, exc
        )
        return sr
    except ImportError as exc:
        if backend == "onnxruntime":
            raise LenssrError(f"onnxruntime is not installed ({exc})") from exc
        log.warning("lenssr: %s: onnxruntime is not usable (%s); using PyTorch", sr.name, exc)
        return sr


def _maybe_half(sr: SRModel) -> SRModel:
    """``sr`` in half precision when its output stays within :data:`HALF_TOLERANCE`."""
    try:
        half = HalfSRModel(sr.module, sr.descriptor, sr.name, sr.device)
        if half_parity(sr, half) <= HALF_TOLERANCE:
            return half
    except (RuntimeError, TypeError) as exc:  # ops without a half kernel
        log.info("lenssr: %s: half precision unavailable (%s)", sr.name, _one_line(exc))
    return sr
