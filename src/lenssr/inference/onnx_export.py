"""ONNX export of SR models and an ONNX Runtime model with the same ``upscale`` API.

The exported graph is the bare network at one scale: input ``lr`` is NORMALISED
``(batch, 1, height, width)`` float32 (height, width multiples of the descriptor's
``size_multiple``), output ``sr`` is ``(batch, 1, scale*height, scale*width)``; batch, height
and width are dynamic axes. Normalisation, padding, cropping, tiling and TTA live in
:class:`OnnxSRModel` (Python), exactly as in :class:`~lenssr.inference.api.SRModel`. The
checkpoint descriptor, model name and scale are stored in the ONNX metadata
(``lenssr_descriptor``, ``lenssr_name``, ``lenssr_scale``), so an ``.onnx`` file alone is enough.
"""

from __future__ import annotations

import json
import threading
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from lenssr.errors import LenssrError
from lenssr.inference.api import SRModel, load_model
from lenssr.inference.base import Upscaler

DEFAULT_CHECK_SIZES: tuple[tuple[int, int], ...] = ((75, 75), (64, 64), (40, 52))
DEFAULT_CHECK_BATCHES: tuple[int, ...] = (1, 3)
#: Smallest image side (LR pixels) an exported graph is run on; smaller inputs are padded.
ONNX_MIN_SIDE = 4


class _FixedScale(nn.Module):
    """``forward(x) = module(x, scale=scale)``: one graph per scale."""

    def __init__(self, module: nn.Module, scale: int) -> None:
        super().__init__()
        self.module = module
        self.scale = scale

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        kw = {} if cond is None else {"cond": cond}
        return self.module(x, scale=self.scale, **kw)


def _example_size(multiple: int) -> tuple[int, int]:
    """A non-square trace size (multiples of ``multiple``) that is not a special case."""
    h = multiple * -(-37 // multiple)
    w = multiple * -(-46 // multiple)
    return h, w


def export_onnx(
    model: SRModel | str | Path,
    path: str | Path,
    scale: int | None = None,
    opset: int = 17,
) -> Path:
    """Export ``model`` at ``scale`` (default: its scale) to ``path`` (``.onnx``).

    Args:
        model: an :class:`SRModel` or anything :func:`~lenssr.inference.api.load_model` accepts.
        path: output file; parent folders are created.
        scale: output scale of the graph (pyramid models: 2 or 4).
        opset: ONNX opset (legacy TorchScript exporter, ``dynamo=False``).

    Returns:
        The written path. The graph takes normalised ``(B, 1, h, w)`` input with dynamic
        ``B, h, w`` (``h, w`` multiples of ``size_multiple``).
    """
    import onnx

    sr = model if isinstance(model, SRModel) else load_model(model, device="cpu")
    s = sr.check_scale(scale)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    module = sr.module
    device = next(iter(module.parameters()), torch.empty(0)).device
    wrapper = _FixedScale(module, s).eval()
    h, w = _example_size(sr.size_multiple)
    dummy = torch.rand(2, 1, h, w, device=device)
    axes = {0: "batch", 2: "height", 3: "width"}
    args: tuple = (dummy,)
    names = ["lr"]
    dynamic = {"lr": axes, "sr": {0: "batch", 2: "sr_height", 3: "sr_width"}}
    if sr.conditioned:  # the instrument: (B, 2) PSF FWHM [LR pixels], log10 relative noise
        args = (dummy, torch.tensor([[1.8, -2.0], [2.5, -1.5]], device=device))
        names.append("cond")
        dynamic["cond"] = {0: "batch"}
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer warnings about Python ints from shapes
        torch.onnx.export(
            wrapper,
            args,
            str(out),
            input_names=names,
            output_names=["sr"],
            dynamic_axes=dynamic,
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )
    proto = onnx.load(str(out))
    meta = {
        "lenssr_descriptor": json.dumps({**sr.descriptor, "scale": s, "scales": [s]}),
        "lenssr_name": sr.name,
        "lenssr_scale": str(s),
    }
    del proto.metadata_props[:]
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, str(out))
    return out


class OnnxSRModel(Upscaler):
    """An exported SR graph run by ONNX Runtime, with :meth:`upscale` as in ``SRModel``.

    ``device="auto"`` uses the CUDA execution provider when onnxruntime has it, else CPU.
    ``scales`` is the single scale the graph was exported at.
    """

    backend = "onnxruntime"

    def __init__(
        self,
        path: str | Path,
        device: str = "auto",
        threads: int | None = None,
        data_parallel: bool = True,
    ) -> None:
        import onnxruntime as ort

        p = Path(path)
        if not p.is_file():
            raise LenssrError(f"ONNX model not found: {p}")
        available = ort.get_available_providers()
        if device == "cpu":
            providers = ["CPUExecutionProvider"]
        elif "CUDAExecutionProvider" in available:
            providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
        elif str(device).startswith("cuda"):
            raise LenssrError("device 'cuda' requested but onnxruntime has no CUDA provider")
        else:
            providers = ["CPUExecutionProvider"]
        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(p), options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own exception types
            raise LenssrError(f"{p}: cannot load ONNX model ({exc})") from exc
        # On CPU with n > 1 threads, a batch of at least n images runs as n single-thread
        # sessions on slices of the batch at once (ORT releases the GIL), which scales better
        # than one session's intra-op threads for small convolutions; smaller batches (one big
        # tiled image) use the n-thread session. ``data_parallel=False``: always the one session.
        on_cpu = providers == ["CPUExecutionProvider"]
        self.data_parallel = int(threads or 1) if data_parallel and on_cpu else 1
        self._workers: list[Any] = []
        self._pool: Any = None
        self._lock = threading.Lock()
        meta = self.session.get_modelmeta().custom_metadata_map
        if "lenssr_descriptor" in meta:
            descriptor: dict[str, Any] = json.loads(meta["lenssr_descriptor"])
        else:
            raise LenssrError(f"{p}: not a lenssr ONNX export (no lenssr_descriptor metadata)")
        super().__init__(meta.get("lenssr_name", p.stem), descriptor)
        # traced graphs fix Python-side branches (e.g. reflect padding inside a network), which
        # break on 1-3 pixel inputs: give the graph at least 4x4 pixels
        self.min_side = ONNX_MIN_SIDE
        self.path = p
        self.providers = self.session.get_providers()
        self._input = self.session.get_inputs()[0].name

    def _forward(
        self, x: np.ndarray, scale: int, cond: np.ndarray | None = None, sigma: bool = False
    ) -> np.ndarray:
        if sigma:
            raise LenssrError("the ONNX export has no sigma output; use --backend torch")
        feeds = {self._input: x}
        if self.conditioned:
            if cond is None:
                raise LenssrError("this ONNX model needs the instrument (cond input)")
            feeds["cond"] = cond
        n = min(self.data_parallel, x.shape[0])
        if n < 2:
            (y,) = self.session.run(None, feeds)
            return np.asarray(y, dtype=np.float32)
        sessions, pool = self._parallel_sessions(n)
        bounds = np.linspace(0, x.shape[0], n + 1).astype(int)
        jobs = [
            pool.submit(sess.run, None, {k: v[a:b] for k, v in feeds.items()})
            for sess, a, b in zip(sessions, bounds[:-1], bounds[1:], strict=True)
        ]
        return np.concatenate([np.asarray(j.result()[0], dtype=np.float32) for j in jobs])

    def _parallel_sessions(self, n: int) -> tuple[list[Any], Any]:
        """``n`` single-thread CPU sessions of the graph and a thread pool to run them."""
        from concurrent.futures import ThreadPoolExecutor

        import onnxruntime as ort

        with self._lock:
            while len(self._workers) < n:
                options = ort.SessionOptions()
                options.intra_op_num_threads = 1
                options.inter_op_num_threads = 1
                self._workers.append(
                    ort.InferenceSession(str(self.path), options, providers=self.providers)
                )
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=self.data_parallel)
        return self._workers[:n], self._pool


def load_onnx_model(path: str | Path, device: str = "auto") -> OnnxSRModel:
    """Open an exported ``.onnx`` file as an :class:`OnnxSRModel`."""
    return OnnxSRModel(path, device=device)


def check_onnx(
    model: SRModel,
    onnx_model: OnnxSRModel,
    sizes: Sequence[tuple[int, int]] = DEFAULT_CHECK_SIZES,
    batches: Sequence[int] = DEFAULT_CHECK_BATCHES,
    seed: int = 0,
) -> dict[tuple[int, int, int], float]:
    """Max abs difference ONNX Runtime vs PyTorch, per ``(batch, h, w)``, in normalised units.

    Inputs are random images in [0, 1) (so normalised ~ input units); both models run the same
    wrapper pipeline (normalise, pad, network, crop, de-normalise) at ``onnx_model.scale``.
    """
    rng = np.random.default_rng(seed)
    diffs = {}
    for b in batches:
        for h, w in sizes:
            x = rng.random((b, h, w), dtype=np.float32)
            ref = model.upscale(x, scale=onnx_model.scale, tile=0)
            got = onnx_model.upscale(x, tile=0)
            if got.shape != ref.shape:
                raise LenssrError(
                    f"ONNX output shape {got.shape} differs from PyTorch {ref.shape} "
                    f"for input {(b, h, w)}"
                )
            diffs[(b, h, w)] = float(np.max(np.abs(got - ref)))
    return diffs
