"""Parameter sampling: every random lens, source and substructure parameter is drawn here.

Sample *i* of seed *s* uses ``np.random.default_rng([s, i])``; :func:`sample_system` draws in a
fixed order, so a system depends only on (preset, seed, i, label).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from lenssr.errors import ConfigError
from lenssr.simulation.presets import Instrument, Preset
from lenssr.simulation.substructure import LensingDistances, sample_masses, vortex_half_length

__all__ = [
    "CLASSES",
    "SOURCE_FAMILIES",
    "System",
    "draw",
    "ellipticity",
    "lr_instrument",
    "sample_lr_instrument",
    "sample_morphology",
    "sample_system",
]

CLASSES: tuple[str, ...] = ("no_sub", "cdm", "axion")
"""Substructure classes; the stored label is the index in this tuple."""

SOURCE_FAMILIES: tuple[str, ...] = ("sersic", "grf", "spiral", "multi", "shapelets")
"""Source morphology families; the stored ``source_family`` is the index in this tuple."""


def draw(spec, rng: np.random.Generator, name: str = "value") -> float:
    """Draw one value: a number is fixed, ``[lo, hi]`` uniform, ``{loguniform: [lo, hi]}``."""
    if isinstance(spec, bool):
        raise ConfigError(f"{name}: expected a number or a range, got {spec!r}")
    if isinstance(spec, (int, float)):
        return float(spec)
    if isinstance(spec, (list, tuple)) and len(spec) == 2:
        lo, hi = float(spec[0]), float(spec[1])
        return float(rng.uniform(lo, hi)) if hi > lo else lo
    if isinstance(spec, dict) and set(spec) == {"choice"}:
        options = [float(v) for v in spec["choice"]]
        if not options:
            raise ConfigError(f"{name}: choice needs at least one value")
        return options[int(rng.integers(0, len(options)))] if len(options) > 1 else options[0]
    if isinstance(spec, dict) and set(spec) == {"loguniform"}:
        lo, hi = (float(v) for v in spec["loguniform"])
        if lo <= 0 or hi <= 0:
            raise ConfigError(f"{name}: loguniform bounds must be > 0")
        return float(np.exp(rng.uniform(np.log(lo), np.log(hi)))) if hi > lo else lo
    raise ConfigError(
        f"{name}: expected a number, [lo, hi], {{loguniform: [lo, hi]}} or {{choice: [...]}}"
    )


def draw_int(spec, rng: np.random.Generator, name: str) -> int:
    """Integer version of :func:`draw`: ``[lo, hi]`` is uniform over lo..hi inclusive."""
    if isinstance(spec, (list, tuple)) and len(spec) == 2:
        return int(rng.integers(int(spec[0]), int(spec[1]) + 1))
    return int(round(draw(spec, rng, name)))


def ellipticity(q: float, phi: float) -> tuple[float, float]:
    """lenstronomy ``(e1, e2)`` from axis ratio ``q`` and position angle ``phi`` [rad]."""
    e = (1.0 - q) / (1.0 + q)
    return e * np.cos(2.0 * phi), e * np.sin(2.0 * phi)


def draw_sersic(spec: dict, rng: np.random.Generator, section: str) -> dict[str, float]:
    """An elliptical Sersic component from the preset section ``section`` (``spec``): the
    ``{section}_`` parameters ``amp``, ``r_sersic`` [arcsec], ``n_sersic``, ``q``, ``phi``
    [rad] (drawn in this order) and the lenstronomy ``e1``, ``e2`` they give."""
    keys = ("amp", "r_sersic", "n_sersic", "q", "phi")
    p = {f"{section}_{key}": draw(spec[key], rng, f"{section}.{key}") for key in keys}
    p[f"{section}_e1"], p[f"{section}_e2"] = ellipticity(p[f"{section}_q"], p[f"{section}_phi"])
    return p


@dataclass
class System:
    """One lens system: scalar parameters plus substructure point lists.

    Attributes:
        label: class index in :data:`CLASSES`.
        params: scalar parameters (angles [rad], positions/sizes [arcsec], amplitudes
            [e-/s/arcsec^2], masses [Msun], axion mass [eV]).
        sub_x, sub_y, sub_mass: subhalo positions [arcsec] and masses [Msun] (cdm).
        clumps: ``(K, 4)`` source knots: x, y [arcsec], peak [e-/s/arcsec^2], sigma [arcsec].
        components: ``(K, 4)`` extra Sersic components of a ``multi`` source: x, y [arcsec],
            amplitude at r_sersic [e-/s/arcsec^2], r_sersic [arcsec].
    """

    label: int
    params: dict[str, float]
    sub_x: np.ndarray = field(default_factory=lambda: np.zeros(0))
    sub_y: np.ndarray = field(default_factory=lambda: np.zeros(0))
    sub_mass: np.ndarray = field(default_factory=lambda: np.zeros(0))
    clumps: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))
    components: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))


def sample_system(
    preset: Preset, rng: np.random.Generator, label: int, distances: LensingDistances | None = None
) -> System:
    """Draw one system of class ``label`` (0 no_sub, 1 cdm, 2 axion) from ``preset``."""
    cfg = preset.config
    lens, light, src, sub, ax = (
        cfg["lens"],
        cfg["lens_light"],
        cfg["source"],
        cfg["subhalos"],
        cfg["axion"],
    )
    if distances is None:
        distances = distances_for(preset)
    p: dict[str, float] = {"z_lens": float(lens["z"]), "z_source": float(src["z"])}

    # main lens: SIE + external shear
    if lens.get("mass") is not None:
        p["lens_mass"] = float(draw(lens["mass"], rng, "lens.mass"))
        p["theta_e"] = float(distances.einstein_radius(p["lens_mass"]))
    else:
        p["theta_e"] = draw(lens["theta_e"], rng, "lens.theta_e")
        p["lens_mass"] = p["theta_e"] ** 2 / distances.theta_e2_per_msun
    p["lens_q"] = draw(lens["q"], rng, "lens.q")
    p["lens_phi"] = draw(lens["phi"], rng, "lens.phi")
    p["lens_e1"], p["lens_e2"] = ellipticity(p["lens_q"], p["lens_phi"])
    p["gamma"] = draw(lens["gamma"], rng, "lens.gamma")
    p["gamma_phi"] = draw(lens["gamma_phi"], rng, "lens.gamma_phi")
    p["gamma1"] = p["gamma"] * np.cos(2.0 * p["gamma_phi"])
    p["gamma2"] = p["gamma"] * np.sin(2.0 * p["gamma_phi"])
    c = float(lens["center"])
    p["lens_x"], p["lens_y"] = (float(v) for v in rng.uniform(-c, c, 2)) if c > 0 else (0.0, 0.0)

    # lens light: elliptical Sersic at the lens centre
    p.update(draw_sersic(light, rng, "lens_light"))

    # source: elliptical Sersic near the caustic centre, plus Gaussian star-forming knots
    p.update(draw_sersic(src, rng, "source"))
    pos = src["position"]
    r_max = float(pos["r_max"]) * (p["theta_e"] if pos.get("unit") == "theta_e" else 1.0)
    if pos["mode"] == "disk":
        r, t = r_max * np.sqrt(rng.uniform()), rng.uniform(0.0, 2.0 * np.pi)
        bx, by = r * np.cos(t), r * np.sin(t)
    else:
        bx, by = rng.uniform(-r_max, r_max, 2)
    p["source_x"], p["source_y"] = float(p["lens_x"] + bx), float(p["lens_y"] + by)
    cl = src["clumps"]
    n_clumps = draw_int(cl["n"], rng, "source.clumps.n")
    clumps = _offset_knots(
        rng, n_clumps, p, float(cl["r_max"]), (cl["amp"], "source.clumps.amp"),
        (cl["sigma"], "source.clumps.sigma"), 1.0,
    )  # fmt: skip
    p["source_n_clumps"] = float(n_clumps)
    p["source_clump_flux"] = float(np.sum(2.0 * np.pi * clumps[:, 2] * clumps[:, 3] ** 2))

    system = System(label=label, params=p, clumps=clumps)
    p["n_subhalos"] = 0.0
    p["subhalo_mass_total"] = 0.0
    p["subhalo_slope"] = np.nan
    p["axion_mass"] = np.nan
    p["vortex_mass"] = np.nan
    p["vortex_angle"] = np.nan
    p["vortex_half_length"] = np.nan
    if CLASSES[label] == "cdm":
        n = float(sub["n"])
        n_sub = int(rng.poisson(n)) if sub.get("poisson") else int(round(n))
        p["subhalo_slope"] = draw(sub["slope"], rng, "subhalos.slope")
        m_lo, m_hi = float(sub["m_min"]), float(sub["m_max"])
        mass = sample_masses(rng, n_sub, m_lo, m_hi, p["subhalo_slope"])
        lo, hi = (float(v) for v in sub["r_range"])
        if sub.get("r_unit") == "theta_e":
            lo, hi = lo * p["theta_e"], hi * p["theta_e"]
        r = np.sqrt(rng.uniform(lo**2, hi**2, n_sub))  # uniform surface density in the annulus
        t = rng.uniform(0.0, 2.0 * np.pi, n_sub)
        system.sub_x = p["lens_x"] + r * np.cos(t)
        system.sub_y = p["lens_y"] + r * np.sin(t)
        system.sub_mass = mass
        p["n_subhalos"] = float(n_sub)
        p["subhalo_mass_total"] = float(mass.sum())
    elif CLASSES[label] == "axion":
        p["axion_mass"] = draw(ax["mass"], rng, "axion.mass")
        p["vortex_mass"] = draw(ax["vortex_mass"], rng, "axion.vortex_mass")
        p["vortex_angle"] = float(rng.uniform(0.0, np.pi))
        p["vortex_half_length"] = min(
            vortex_half_length(p["axion_mass"], float(ax["length_coefficient"])),
            float(ax["max_half_length"]),
        )
    # Draws added after the original recipe, so presets without these sections give the same
    # systems as before: lens light switched off, source morphology, per-system LR instrument.
    p["lens_light_off"] = 0.0
    if float(light.get("p_off", 0.0)) > 0 and rng.uniform() < float(light["p_off"]):
        p["lens_light_off"] = 1.0
        p["lens_light_amp"] = 0.0
    sample_morphology(src.get("morphology"), rng, system)
    p.update(sample_lr_instrument(cfg.get("lr_mixture"), rng, preset))
    return system


def _offset_knots(
    rng: np.random.Generator,
    n: int,
    p: dict[str, float],
    r_max: float,
    amp: tuple,
    size: tuple,
    size_unit: float,
) -> np.ndarray:
    """``(n, 4)`` source components around the source centre: x, y [arcsec] uniform over a disk
    of ``r_max`` source radii, amplitude ``draw(amp) * source_amp`` [e-/s/arcsec^2], size
    ``draw(size) * size_unit`` [arcsec]. ``amp`` and ``size`` are ``(spec, name)``; the draws
    come in that order per component (the recipe's fixed order)."""
    out = np.zeros((n, 4))
    for k in range(n):
        r = r_max * p["source_r_sersic"] * np.sqrt(rng.uniform())
        t = rng.uniform(0.0, 2.0 * np.pi)
        out[k] = (
            p["source_x"] + r * np.cos(t),
            p["source_y"] + r * np.sin(t),
            draw(amp[0], rng, amp[1]) * p["source_amp"],
            draw(size[0], rng, size[1]) * size_unit,
        )
    return out


def sample_morphology(spec: dict | None, rng: np.random.Generator, system: System) -> None:
    """Draw the source's morphology family and its parameters into ``system.params``.

    ``spec``: ``{families: {name: weight}, grf: {...}, spiral: {...}, components: {...},
    shapelets: {...}}`` (see ``presets/survey-mix.yaml``); None keeps the Sersic + clumps source.
    Families (:data:`SOURCE_FAMILIES`): ``sersic`` (Sersic + clumps), ``grf`` (Sersic times
    ``exp(amplitude * G)`` with ``G`` a unit-variance Gaussian random field of power-law spectrum),
    ``spiral`` (a disk with logarithmic arms and a bulge), ``multi`` (2-3 offset Sersic
    components), ``shapelets`` (random Cartesian shapelets, positive part). Every key is always
    written (NaN when unused) so all systems share one parameter table.
    """
    p = system.params
    for key in (
        "source_grf_amp",
        "source_grf_slope",
        "source_grf_seed",
        "source_spiral_arms",
        "source_spiral_pitch",
        "source_spiral_amp",
        "source_spiral_phase",
        "source_bulge_frac",
        "source_n_components",
        "source_shapelet_nmax",
        "source_shapelet_beta",
        "source_shapelet_seed",
    ):
        p[key] = np.nan
    p["source_family"] = 0.0
    if not spec:
        return
    fam = spec["families"]
    names = [n for n in fam if float(fam[n]) > 0]
    for n in names:
        if n not in SOURCE_FAMILIES:
            raise ConfigError(f"source.morphology.families: unknown family {n!r}")
    if not names:
        raise ConfigError("source.morphology.families: no family has a positive weight")
    w = np.asarray([float(fam[n]) for n in names])
    name = names[int(rng.choice(len(names), p=w / w.sum()))]
    p["source_family"] = float(SOURCE_FAMILIES.index(name))
    if name == "grf":
        g = spec["grf"]
        p["source_grf_amp"] = draw(g["amp"], rng, "source.morphology.grf.amp")
        p["source_grf_slope"] = draw(g["slope"], rng, "source.morphology.grf.slope")
        p["source_grf_seed"] = float(rng.integers(0, 2**31))
    elif name == "spiral":
        g = spec["spiral"]
        p["source_spiral_arms"] = float(draw_int(g["arms"], rng, "source.morphology.spiral.arms"))
        p["source_spiral_pitch"] = draw(g["pitch"], rng, "source.morphology.spiral.pitch")
        p["source_spiral_amp"] = draw(g["amp"], rng, "source.morphology.spiral.amp")
        p["source_spiral_phase"] = float(rng.uniform(0.0, 2.0 * np.pi))
        p["source_bulge_frac"] = draw(g["bulge_frac"], rng, "source.morphology.spiral.bulge_frac")
    elif name == "multi":
        g = spec["components"]
        k = draw_int(g["n"], rng, "source.morphology.components.n")
        p["source_n_components"] = float(k)
        system.components = _offset_knots(
            rng, k, p, float(g["offset"]), (g["amp"], "source.morphology.components.amp"),
            (g["size"], "source.morphology.components.size"), p["source_r_sersic"],
        )  # fmt: skip
    elif name == "shapelets":
        g = spec["shapelets"]
        p["source_shapelet_nmax"] = float(draw_int(g["n_max"], rng, "shapelets.n_max"))
        p["source_shapelet_beta"] = draw(g["beta"], rng, "shapelets.beta") * p["source_r_sersic"]
        p["source_shapelet_seed"] = float(rng.integers(0, 2**31))


def sample_lr_instrument(
    spec: dict | None, rng: np.random.Generator, preset: Preset
) -> dict[str, float]:
    """Draw one system's LR instrument from ``spec`` (the preset's ``lr_mixture`` section).

    ``spec`` keys: ``psf_fwhm_pix`` (LR PSF FWHM [LR pixels]), ``exposure_time`` [s],
    ``sky_brightness`` [e-/s/arcsec^2], ``read_noise`` [e-], each a distribution. None or
    ``enabled: false`` gives ``{}`` (the preset's fixed LR instrument). Returns the ``lr_*``
    parameters that :func:`lr_instrument` turns into an :class:`Instrument`.
    """
    if not spec or not spec.get("enabled", True):
        return {}
    fwhm_pix = draw(spec["psf_fwhm_pix"], rng, "lr_mixture.psf_fwhm_pix")
    fwhm = max(fwhm_pix * preset.lr.pixel_scale, preset.hr.psf_fwhm)
    return {
        "lr_psf_fwhm": float(fwhm),
        "lr_exposure_time": draw(spec["exposure_time"], rng, "lr_mixture.exposure_time"),
        "lr_sky_brightness": draw(spec["sky_brightness"], rng, "lr_mixture.sky_brightness"),
        "lr_read_noise": draw(spec["read_noise"], rng, "lr_mixture.read_noise"),
    }


def spec_max(spec) -> float:
    """Largest value a distribution spec of :func:`draw` can take."""
    if isinstance(spec, (list, tuple)):
        return float(max(spec))
    if isinstance(spec, dict):
        return float(max(next(iter(spec.values()))))
    return float(spec)


def lr_instrument(preset: Preset, params: dict[str, float]) -> Instrument:
    """The LR :class:`Instrument` of one system: the preset's, with any drawn ``lr_*`` values."""
    if "lr_psf_fwhm" not in params:
        return preset.lr
    return dataclasses.replace(
        preset.lr,
        psf_fwhm=float(params["lr_psf_fwhm"]),
        exposure_time=float(params["lr_exposure_time"]),
        sky_brightness=float(params["lr_sky_brightness"]),
        read_noise=float(params["lr_read_noise"]),
    )


def distances_for(preset: Preset) -> LensingDistances:
    """Lens/source distances of ``preset`` (its redshifts and cosmology)."""
    cosmo = preset.config["cosmology"]
    return LensingDistances.from_config(
        float(preset.config["lens"]["z"]),
        float(preset.config["source"]["z"]),
        h0=float(cosmo["H0"]),
        om0=float(cosmo["Om0"]),
        convention=str(cosmo["distances"]),
    )
