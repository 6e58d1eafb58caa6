"""The simulation preset a paired data set records, so that no command makes the user retype it.

``lenssr simulate`` writes the full preset into its output: an HDF5 file's attribute ``preset``
(a JSON object) or a DeepLense folder's ``metadata.json`` key ``"preset"``; a ``.zip`` of such a
folder carries the same ``metadata.json``. :func:`preset_for_data` returns that preset, or the
one given explicitly (``--preset`` overrides the file), or ``"default"`` for data that record
none (e.g. real observations), and says which it was.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lenssr.errors import LenssrError

DEFAULT_PRESET = "default"
_MAX_METADATA_BYTES = 64 << 20  # metadata.json lists one label per pair: small, but bounded


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


def _from_json(value: Any, where: str) -> dict | None:
    """A preset config from a JSON string or object; ``None`` for an empty or missing one."""
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode()
    if isinstance(value, str):
        try:
            value = json.loads(value) if value.strip() else None
        except json.JSONDecodeError as exc:
            raise LenssrError(f"{where}: the recorded preset is not valid JSON ({exc})") from exc
    if not value:
        return None
    if not isinstance(value, dict):
        raise LenssrError(f"{where}: the recorded preset is not a JSON object")
    return value


def _metadata_preset(text: str | bytes, where: str) -> dict | None:
    try:
        meta = json.loads(text)
    except json.JSONDecodeError as exc:
        raise LenssrError(f"{where}: invalid JSON ({exc})") from exc
    return _from_json(meta.get("preset"), where) if isinstance(meta, dict) else None


def _zip_preset(path: Path) -> dict | None:
    try:
        with zipfile.ZipFile(path) as zf:
            members = [
                i for i in zf.infolist() if i.filename.rstrip("/").split("/")[-1] == "metadata.json"
            ]
            if not members:
                return None
            info = min(members, key=lambda i: i.filename.count("/"))  # the shallowest one
            if info.file_size > _MAX_METADATA_BYTES:
                raise LenssrError(f"{path}/{info.filename}: larger than 64 MiB")
            return _metadata_preset(zf.read(info), f"{path}/{info.filename}")
    except zipfile.BadZipFile as exc:
        raise LenssrError(f"{path}: not a readable zip archive ({exc})") from exc


def recorded_preset(data: str | Path) -> dict | None:
    """The preset config recorded in a paired data set, or ``None`` when it records none.

    Args:
        data: an HDF5 file (attribute ``preset``), a DeepLense folder (``metadata.json`` in it or
            in its only sub-folder) or a ``.zip`` of one.

    Raises:
        LenssrError: the recorded preset is not readable JSON.
    """
    path = Path(data)
    if path.is_dir():
        candidates = [path / "metadata.json"]
        subdirs = [p for p in path.iterdir() if p.is_dir()]
        if len(subdirs) == 1:
            candidates.append(subdirs[0] / "metadata.json")
        for meta in candidates:
            if meta.is_file():
                return _metadata_preset(meta.read_text(), str(meta))
        return None
    if path.suffix.lower() == ".zip":
        return _zip_preset(path)
    if path.suffix.lower() in (".h5", ".hdf5"):
        import h5py

        try:
            with h5py.File(path, "r") as f:
                return _from_json(f.attrs.get("preset"), str(path))
        except OSError as exc:
            raise LenssrError(f"{path}: not a readable HDF5 file ({exc})") from exc
    return None


def preset_for_data(data: str | Path, preset: Any = None) -> DataPreset:
    """The preset whose instrument made the LR images of ``data``.

    Args:
        data: the paired data set (see :func:`recorded_preset`).
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
