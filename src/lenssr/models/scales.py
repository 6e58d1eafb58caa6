"""Which scales a model serves: the one check of a requested output scale.

Architectures, checkpoint descriptors and loaded models (PyTorch or ONNX Runtime) all answer
"does this model serve this scale?" with :func:`check_scale`; it needs no torch.
"""

from __future__ import annotations

from typing import Any

from lenssr.errors import LenssrError


def check_scale(model: Any, scale: int | None) -> int:
    """The output scale of ``model(x, scale=scale)``: the one answer to "does this model serve
    this scale?" for architectures, checkpoints' descriptors and loaded models alike.

    ``model`` has ``scale`` (the default) and ``scales`` (every scale it serves); a model with
    ``any_scale = True`` (bicubic) serves every positive integer. ``None`` means the default.

    Raises:
        LenssrError: ``scale`` is not served (the message lists what is).
    """
    if scale is None:
        return int(model.scale)
    s = int(scale)
    if getattr(model, "any_scale", False):
        if s < 1:
            raise LenssrError(f"{_name(model)}: scale must be a positive integer, got {scale}")
        return s
    scales = [int(v) for v in (getattr(model, "scales", None) or (model.scale,))]
    if s not in scales:
        raise LenssrError(
            f"{_name(model)}: scale {scale} not supported; this model serves {scales}"
        )
    return s


def _name(model: Any) -> str:
    name = getattr(model, "name", None) or getattr(model, "arch_name", None)
    return str(name or type(model).__name__)


def pyramid_scales(num_levels: int) -> tuple[int, ...]:
    """Scales served by a pyramid of ``num_levels`` x2 levels: ``(2, 4, ..., 2**num_levels)``."""
    return tuple(2 ** (i + 1) for i in range(num_levels))


def pyramid_levels(model: Any, scale: int | None) -> int:
    """Number of x2 pyramid levels ``model`` computes for ``scale`` (checked by
    :func:`check_scale`; ``model.scales`` is :func:`pyramid_scales`)."""
    return list(model.scales).index(check_scale(model, scale)) + 1
