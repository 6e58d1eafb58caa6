"""The simulation preset a paired data set records, so that no command makes the user retype it.

``lenssr simulate`` writes the full preset into its output: an HDF5 file's attribute ``preset``
(a JSON object) or a DeepLense folder's ``metadata.json`` key ``"preset"``; a ``.zip`` of such a
folder carries the same ``metadata.json``. The pair sources read it
(:attr:`lenssr.data.sources.PairSource.preset_config`); :func:`preset_for_data` returns that
preset, or the one given explicitly (``--preset`` overrides the file), or ``"default"`` for data
that record none (e.g. real observations), and says which it was.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

DEFAULT_PRESET = "default"


@dataclass
class DataPreset:
    """A resolved preset and where it came from.

    Attributes:
        preset: the :class:`lenssr.simulation.Preset`.
        source: ``"option"`` (given by the caller), ``"data"`` (recorded in the data file) or
            ``"default"`` (the data record none and none was given).
    """

    preset: Any
    source: str

    @property
    def name(self) -> str:
        """The preset's name (``default``, ``model_i``, ... or ``custom``)."""
        return str(self.preset.name)


def recorded_preset(data: Any) -> dict | None:
    """The preset config recorded in a paired data set, or ``None`` when it records none.

    Args:
        data: a :class:`~lenssr.data.sources.PairSource` or what
            :func:`~lenssr.data.open_pairs` opens: an HDF5 file (attribute ``preset``), a
            DeepLense folder (``metadata.json`` beside its ``LR/``) or a ``.zip`` of one.

    Raises:
        LenssrError: unreadable data, or a recorded preset that is not readable JSON.
    """
    from lenssr.data.sources import PairSource, open_pairs

    source = data if isinstance(data, PairSource) else open_pairs(data)
    return source.preset_config


def preset_for_data(data: Any, preset: Any = None) -> DataPreset:
    """The preset whose instrument made the LR images of ``data``.

    Args:
        data: the paired data set or its opened source (see :func:`recorded_preset`).
        preset: ``None`` to use the preset recorded in the data; a preset name, YAML path or
            :class:`~lenssr.simulation.Preset` overrides it.

    Returns:
        A :class:`DataPreset`; ``source`` says whether the preset came from the caller, the data
        or (data without a recorded preset) the default preset.
    """
    from lenssr.simulation import load_preset
    from lenssr.simulation.presets import Preset, preset_from_config

    if isinstance(preset, Preset):
        return DataPreset(preset, "option")
    if preset is not None:
        return DataPreset(load_preset(str(preset)), "option")
    config = recorded_preset(data)
    if config is None:
        return DataPreset(load_preset(DEFAULT_PRESET), "default")
    return DataPreset(preset_from_config(config), "data")
