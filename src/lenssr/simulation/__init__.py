"""Simulation of LR/HR strong-lensing pairs (lenstronomy ray tracing, FFT substructure).

Public API: :func:`load_preset`, :func:`simulate`, :func:`degrade_array`, :func:`degrade_path`,
:class:`Preset`, :class:`Instrument`, :class:`Renderer`,
:func:`sample_system`, :data:`CLASSES`. Heavy modules load lazily.
"""

from __future__ import annotations

from lenssr.simulation.presets import (
    Instrument,
    Preset,
    available_presets,
    load_preset,
    parse_overrides,
    preset_from_config,
)

__all__ = [
    "CLASSES",
    "Instrument",
    "Preset",
    "Renderer",
    "available_presets",
    "degrade_array",
    "degrade_path",
    "load_preset",
    "parse_overrides",
    "preset_from_config",
    "sample_system",
    "simulate",
]

_LAZY = {
    "CLASSES": "lenssr.simulation.sampling",
    "sample_system": "lenssr.simulation.sampling",
    "Renderer": "lenssr.simulation.render",
    "simulate": "lenssr.simulation.writer",
    "degrade_array": "lenssr.simulation.degrade",
    "degrade_path": "lenssr.simulation.degrade",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'lenssr.simulation' has no attribute {name!r}")
