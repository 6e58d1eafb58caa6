"""Simulation of LR/HR strong-lensing pairs (lenstronomy ray tracing, FFT substructure).

Public API: :func:`load_preset`, :func:`simulate`, :func:`degrade_array`, :func:`degrade_path`,
:class:`Preset`, :class:`Instrument`, :class:`Renderer`,
:func:`sample_system`, :data:`CLASSES`. Heavy modules load lazily.
"""

from __future__ import annotations

from lenssr.lazy import exported_names, lazy_exports
from lenssr.simulation import presets

_EXPORTS = {
    "lenssr.simulation.presets": presets.__all__,  # imported now: cheap, no torch
    "lenssr.simulation.sampling": ["CLASSES", "sample_system"],
    "lenssr.simulation.render": ["Renderer"],
    "lenssr.simulation.writer": ["simulate"],
    "lenssr.simulation.degrade": ["degrade_array", "degrade_path"],
}

__all__ = exported_names(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
