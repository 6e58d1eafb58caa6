"""Checkpoints that describe themselves: ``name.safetensors`` (weights) + ``name.json``.

The JSON descriptor (spandrel / ``save_pretrained`` style) holds everything needed to rebuild
the model, so loading never needs the user to repeat hyper-parameters::

    {"arch": "hybrid", "arch_config": {...constructor kwargs...}, "scale": 2, "scales": [2, 4],
     "in_channels": 1, "out_channels": 1, "normalization": {"kind": "minmax"},
     "size_multiple": 1, "training": {...}, "metrics": {...}, "format_version": 1,
     "lenssr_version": "0.1.0"}

The same descriptor is also stored in the safetensors metadata (key ``"lenssr"``), so a lone
``.safetensors`` file still loads.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from lenssr.device import resolve_device
from lenssr.errors import LenssrError
from lenssr.models.registry import create_model

FORMAT_VERSION = 1
_METADATA_KEY = "lenssr"
_SUFFIXES = (".safetensors", ".json", ".md")


def checkpoint_paths(path: str | Path) -> tuple[Path, Path]:
    """``(weights.safetensors, descriptor.json)`` for a stem or either file's path."""
    p = Path(path)
    if p.suffix in _SUFFIXES:
        p = p.with_suffix("")
    return p.with_name(p.name + ".safetensors"), p.with_name(p.name + ".json")


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, Path):
        return str(value)
    return value


def unwrap_model(model: nn.Module) -> nn.Module:
    """The registered network inside DDP/DataParallel (``.module``) or ``torch.compile``
    (``._orig_mod``) wrappers; ``model`` itself when it is not wrapped."""
    while getattr(model, "arch_name", None) is None:
        inner = getattr(model, "module", None) or getattr(model, "_orig_mod", None)
        if not isinstance(inner, nn.Module):
            break
        model = inner
    return model


def model_descriptor(model: nn.Module, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The JSON-serialisable descriptor of a registered model (see module docstring).

    ``extra`` entries (e.g. ``normalization``, ``training``, ``metrics``) are merged in and
    override the defaults; ``arch`` and ``arch_config`` always come from the model.
    """
    from lenssr import __version__
    from lenssr.data.normalize import Normalization

    model = unwrap_model(model)
    arch = getattr(model, "arch_name", None)
    config = getattr(model, "config", None)
    if arch is None or config is None:
        raise LenssrError(
            f"{type(model).__name__} is not a registered lenssr architecture "
            "(build it with lenssr.models.create_model)"
        )
    descriptor: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "lenssr_version": __version__,
        "arch": arch,
        "arch_config": _jsonable(config),
        "scale": int(model.scale),
        "scales": [int(s) for s in model.scales],
        "in_channels": 1,
        "out_channels": 1,
        "normalization": Normalization().to_dict(),
        "size_multiple": int(getattr(model, "size_multiple", 1)),
        "num_params": sum(p.numel() for p in model.parameters()),
        "training": {},
        "metrics": {},
    }
    for key, value in (extra or {}).items():
        if key not in ("arch", "arch_config"):
            descriptor[key] = _jsonable(value)
    try:
        json.dumps(descriptor)
    except TypeError as exc:
        raise LenssrError(f"checkpoint descriptor is not JSON-serialisable: {exc}") from exc
    return descriptor


def save_checkpoint(
    path: str | Path, model: nn.Module, extra: dict[str, Any] | None = None
) -> Path:
    """Write ``<stem>.safetensors`` and ``<stem>.json`` for ``model``; returns the weights path.

    ``path`` may be the stem or either file name. ``extra`` is merged into the descriptor
    (``normalization``, ``training``, ``metrics``, anything JSON-serialisable). DDP and
    ``torch.compile`` wrappers are unwrapped, so the keys are the bare network's.
    """
    model = unwrap_model(model)
    weights, desc_path = checkpoint_paths(path)
    descriptor = model_descriptor(model, extra)
    weights.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    save_file(state, str(weights), metadata={_METADATA_KEY: json.dumps(descriptor)})
    desc_path.write_text(json.dumps(descriptor, indent=2, sort_keys=False) + "\n")
    return weights


def read_descriptor(path: str | Path) -> dict[str, Any]:
    """The descriptor of a checkpoint: the ``.json`` beside it, else the safetensors metadata."""
    weights, desc_path = checkpoint_paths(path)
    if desc_path.is_file():
        try:
            return json.loads(desc_path.read_text())
        except json.JSONDecodeError as exc:
            raise LenssrError(f"{desc_path}: invalid JSON descriptor ({exc})") from exc
    if not weights.is_file():
        raise LenssrError(f"checkpoint not found: {weights} (nor {desc_path.name})")
    try:
        from safetensors import safe_open

        with safe_open(str(weights), framework="pt") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError) as exc:
        raise LenssrError(f"{weights}: not a safetensors file ({exc})") from exc
    if _METADATA_KEY not in meta:
        raise LenssrError(f"{weights}: no descriptor ({desc_path.name} missing, no metadata)")
    return json.loads(meta[_METADATA_KEY])


def load_state_dict_strict(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """``model.load_state_dict(state)`` that explains mismatches in one LenssrError line."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong_shape = [
        f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
        for k in sorted(set(own) & set(state))
        if own[k].shape != state[k].shape
    ]
    if missing or unexpected or wrong_shape:

        def short(items: list[str]) -> str:
            more = f" (+{len(items) - 8} more)" if len(items) > 8 else ""
            return ", ".join(items[:8]) + more if items else "none"

        raise LenssrError(
            f"{source}: weights do not match the architecture: missing keys: {short(missing)}; "
            f"unexpected keys: {short(unexpected)}; shape mismatches: {short(wrong_shape)}"
        )
    model.load_state_dict(state, strict=True)


def load_checkpoint(
    path: str | Path, map_location: str | torch.device = "cpu"
) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a model from its checkpoint alone; returns ``(model in eval mode, descriptor)``.

    ``path`` may be the stem, the ``.safetensors`` or the ``.json``; ``map_location`` is
    ``"cpu"``, ``"cuda"``, ``"auto"`` or a ``torch.device``. Missing files, unknown
    architectures and weights that do not match the descriptor raise :class:`LenssrError`.
    """
    weights, _ = checkpoint_paths(path)
    descriptor = read_descriptor(path)
    if "arch" not in descriptor:
        raise LenssrError(f"{weights}: descriptor has no 'arch'")
    if not weights.is_file():
        raise LenssrError(f"checkpoint weights not found: {weights}")
    model = create_model(descriptor["arch"], **descriptor.get("arch_config", {}))
    try:
        state = load_file(str(weights), device="cpu")
    except (SafetensorError, OSError) as exc:
        raise LenssrError(f"{weights}: cannot read weights ({exc})") from exc
    load_state_dict_strict(model, state, str(weights))
    model.to(resolve_device(map_location))
    model.eval()
    return model, descriptor
