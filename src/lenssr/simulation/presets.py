"""Simulation presets: instruments, parameter distributions, overrides.

A preset is a YAML file in ``lenssr/simulation/presets/`` (or any YAML path). Every value can be
overridden with a nested dict, a YAML file, or dotted ``key=value`` strings
(``lr.psf_fwhm=0.2``, ``subhalos.n=500``). Files and overrides are read by :mod:`lenssr.config`;
unknown keys raise :class:`ConfigError` naming the file (or ``overrides``) and the key.

Distribution values (used by :mod:`lenssr.simulation.sampling`): a number is fixed,
``[lo, hi]`` is uniform, ``{loguniform: [lo, hi]}`` is log-uniform.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from lenssr.config import load_yaml, merge, nest, parse_overrides, read_yaml_file
from lenssr.errors import ConfigError

__all__ = [
    "Instrument",
    "Preset",
    "available_presets",
    "load_preset",
    "parse_overrides",
    "preset_from_config",
]

_INSTRUMENT_KEYS = (
    "num_pix",
    "pixel_scale",
    "psf_fwhm",
    "supersampling",
    "exposure_time",
    "sky_brightness",
    "read_noise",
)


@dataclass(frozen=True)
class Instrument:
    """One observation's instrument model.

    Attributes:
        num_pix: image side in pixels (images are ``num_pix x num_pix``).
        pixel_scale: pixel side [arcsec].
        psf_fwhm: Gaussian PSF full width at half maximum [arcsec].
        supersampling: ray-tracing sub-pixels per pixel side.
        exposure_time: exposure [s] (sets the Poisson noise).
        sky_brightness: sky background [e-/s/arcsec^2] (Poisson, subtracted).
        read_noise: read-out noise per pixel [e-].
    """

    num_pix: int
    pixel_scale: float
    psf_fwhm: float
    supersampling: int
    exposure_time: float
    sky_brightness: float
    read_noise: float

    @property
    def psf_sigma(self) -> float:
        """Gaussian PSF standard deviation [arcsec]."""
        return self.psf_fwhm / 2.3548200450309493

    @property
    def psf_fwhm_pix(self) -> float:
        """PSF FWHM [pixels of this instrument]."""
        return self.psf_fwhm / self.pixel_scale

    @property
    def pixel_area(self) -> float:
        """Pixel solid angle [arcsec^2]."""
        return self.pixel_scale**2


@dataclass(frozen=True)
class Preset:
    """A full simulation recipe.

    Attributes:
        name: preset name.
        hr, lr: the two instruments; ``lr.pixel_scale = scale * hr.pixel_scale`` and both cover
            the same field of view.
        config: the whole nested configuration (JSON-serialisable dict).
    """

    name: str
    hr: Instrument
    lr: Instrument
    config: dict

    @property
    def scale(self) -> int:
        """LR -> HR magnification (integer)."""
        return int(round(self.lr.pixel_scale / self.hr.pixel_scale))

    @property
    def fine_pixel_scale(self) -> float:
        """Pixel of the shared ray-tracing grid [arcsec] (HR pixel / HR supersampling)."""
        return self.hr.pixel_scale / self.hr.supersampling

    @property
    def fine_num_pix(self) -> int:
        """Side of the shared ray-tracing grid in pixels."""
        return self.hr.num_pix * self.hr.supersampling

    def section(self, key: str) -> dict:
        """One top-level section of the configuration (``lens``, ``source``, ...)."""
        return self.config[key]

    def to_json(self) -> str:
        """The configuration as a JSON string (stored with every dataset)."""
        return json.dumps(self.config, sort_keys=True)


def _presets_dir() -> Path:
    return Path(str(resources.files("lenssr.simulation") / "presets"))


def available_presets() -> list[str]:
    """Names of the shipped presets."""
    return sorted(p.stem for p in _presets_dir().glob("*.yaml"))


def _is_distribution(value: Any) -> bool:
    return isinstance(value, dict) and set(value) == {"loguniform"}


def _shipped(name: str) -> Path | None:
    path = _presets_dir() / f"{name}.yaml"
    return path if path.is_file() else None


def _include(ref: str, including: Path) -> dict | Path:
    """A preset file's ``defaults:``: a shipped preset, or a file (relative to the including
    file, else to the working directory)."""
    shipped = _shipped(ref)
    if shipped is not None:
        return read_yaml_file(shipped)
    for path in (including.parent / ref, Path(ref)):
        if path.is_file():
            return path
    raise ConfigError(
        f"{including}: defaults {ref!r} is neither a preset ({', '.join(available_presets())}) "
        "nor a file"
    )


def _instrument(cfg: dict, which: str) -> Instrument:
    section = cfg[which]
    try:
        inst = Instrument(
            num_pix=int(section["num_pix"]),
            pixel_scale=float(section["pixel_scale"]),
            psf_fwhm=float(section["psf_fwhm"]),
            supersampling=int(section["supersampling"]),
            exposure_time=float(section["exposure_time"]),
            sky_brightness=float(section["sky_brightness"]),
            read_noise=float(section["read_noise"]),
        )
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"invalid {which} instrument setting: {exc}") from None
    if inst.num_pix < 1 or inst.supersampling < 1:
        raise ConfigError(f"{which}.num_pix and {which}.supersampling must be >= 1")
    if inst.pixel_scale <= 0 or inst.psf_fwhm < 0 or inst.exposure_time <= 0:
        raise ConfigError(f"{which}: pixel_scale and exposure_time must be > 0, psf_fwhm >= 0")
    if inst.sky_brightness < 0 or inst.read_noise < 0:
        raise ConfigError(f"{which}: sky_brightness and read_noise must be >= 0")
    return inst


def _validate(cfg: dict) -> tuple[Instrument, Instrument]:
    hr, lr = _instrument(cfg, "hr"), _instrument(cfg, "lr")
    ratio = lr.pixel_scale / hr.pixel_scale
    scale = int(round(ratio))
    if scale < 1 or abs(ratio - scale) > 1e-6 * scale:
        raise ConfigError(
            f"lr.pixel_scale / hr.pixel_scale = {ratio:.6g} must be an integer (the SR scale)"
        )
    if hr.num_pix != scale * lr.num_pix:
        raise ConfigError(
            f"hr.num_pix ({hr.num_pix}) must equal scale x lr.num_pix ({scale} x {lr.num_pix})"
        )
    if lr.supersampling != scale * hr.supersampling:
        raise ConfigError(
            f"lr.supersampling must be scale x hr.supersampling = {scale * hr.supersampling} "
            "(both observe the same ray-tracing grid)"
        )
    if lr.psf_fwhm < hr.psf_fwhm:
        raise ConfigError("lr.psf_fwhm must be >= hr.psf_fwhm")
    sub = cfg["subhalos"]
    if str(sub["profile"]) not in ("point_mass", "nfw", "tnfw"):
        raise ConfigError(f"subhalos.profile must be point_mass, nfw or tnfw: {sub['profile']!r}")
    if str(cfg["cosmology"]["distances"]) not in ("angular_diameter", "luminosity"):
        raise ConfigError("cosmology.distances must be angular_diameter or luminosity")
    if str(cfg["source"]["position"]["mode"]) not in ("disk", "box"):
        raise ConfigError("source.position.mode must be disk or box")
    return hr, lr


def load_preset(name: str = "default", overrides: dict | str | Path | None = None) -> Preset:
    """Load a preset by name (or YAML path) and apply overrides.

    Args:
        name: a shipped preset (:func:`available_presets`) or a path to a YAML preset file. A
            file holds the settings that differ from ``default``, or from the preset that its
            ``defaults:`` key names (a shipped preset or another file).
        overrides: nested dict or dict with dotted keys, or a path to a YAML file of overrides.

    Returns:
        The validated :class:`Preset`.

    Raises:
        ConfigError: unknown preset, unknown key, or inconsistent instruments.
    """
    if isinstance(name, Preset):
        base = copy.deepcopy(name.config)
    elif (shipped := _shipped(str(name))) is not None:
        base = read_yaml_file(shipped)
    elif str(name).endswith((".yaml", ".yml")) and Path(name).is_file():
        base = load_yaml(
            name, include=_include, root=_default_config(), strict=True, leaf=_is_distribution
        )
    else:
        raise ConfigError(f"unknown preset {name!r} (available: {', '.join(available_presets())})")
    if overrides is not None:
        origin = "overrides"
        if isinstance(overrides, (str, Path)):
            origin, overrides = str(overrides), read_yaml_file(overrides)
        if not isinstance(overrides, dict):
            raise ConfigError("overrides must be a mapping of settings")
        over = nest(overrides, _is_distribution)
        base = merge(base, over, strict=True, origin=origin, leaf=_is_distribution)
    hr, lr = _validate(base)
    return Preset(name=str(base.get("name", name)), hr=hr, lr=lr, config=base)


def preset_from_config(config: dict) -> Preset:
    """Rebuild a :class:`Preset` from its full configuration (e.g. an HDF5 file's ``preset``)."""
    base = copy.deepcopy(config)
    hr, lr = _validate(base)
    return Preset(name=str(base.get("name", "custom")), hr=hr, lr=lr, config=base)


def _default_config() -> dict:
    return read_yaml_file(_presets_dir() / "default.yaml")


def resolve_preset(preset: Preset | str) -> Preset:
    """A :class:`Preset` from a preset or its name."""
    return preset if isinstance(preset, Preset) else load_preset(preset)
