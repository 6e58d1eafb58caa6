"""Held-out evaluation sets on a grid of LR instruments (the instrument-aware benchmark).

Each cell fixes one LR instrument (PSF FWHM, exposure; the ``default`` sky and read noise) and
lens light on or off; the systems come from ``survey-mix`` with the source morphology set to a
family the training never used (``shapelets`` by default). Besides the noisy LR/HR pair, every
system gets an *arc mask*: the HR pixels where the lensed source alone (no lens light, no noise)
is above ``arc_fraction`` of its peak, so metrics can be taken on the arcs and not on the lens
core that dominates whole-image numbers.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from lenssr.simulation.presets import Preset, load_preset
from lenssr.simulation.sampling import CLASSES, SOURCE_FAMILIES, sample_system

__all__ = [
    "GRID_EXPOSURES",
    "GRID_PSF_FWHM",
    "GridCell",
    "GridSet",
    "cells_named",
    "grid_cells",
    "render_cell",
    "render_systems",
]

#: LR PSF FWHM of the grid [arcsec] (0.10" LR pixels: 1.2-3.0 pixels).
GRID_PSF_FWHM: tuple[float, ...] = (0.12, 0.18, 0.24, 0.30)
#: LR exposures of the grid [s].
GRID_EXPOSURES: tuple[float, ...] = (200.0, 1000.0, 5000.0)


@dataclass(frozen=True)
class GridCell:
    """One LR instrument of the grid: PSF FWHM [arcsec], exposure [s], lens light on/off."""

    psf_fwhm: float
    exposure_time: float
    lens_light: bool

    @property
    def name(self) -> str:
        light = "light" if self.lens_light else "nolight"
        return f"psf{self.psf_fwhm:.2f}-t{self.exposure_time:g}-{light}"

    def preset(self, family: str = "shapelets", base: str = "survey-mix") -> Preset:
        """The preset of this cell: ``base`` with its LR instrument fixed to the cell's."""
        if family not in SOURCE_FAMILIES:
            raise ValueError(f"unknown source family {family!r}")
        return load_preset(
            base,
            {
                "lr_mixture.enabled": False,
                "lr.psf_fwhm": self.psf_fwhm,
                "lr.exposure_time": self.exposure_time,
                "lens_light.p_off": 0.0 if self.lens_light else 1.0,
                "source.morphology.families": {f: float(f == family) for f in SOURCE_FAMILIES},
            },
        )


def grid_cells(
    psf_fwhm: tuple[float, ...] = GRID_PSF_FWHM,
    exposures: tuple[float, ...] = GRID_EXPOSURES,
    lens_light: tuple[bool, ...] = (True, False),
) -> list[GridCell]:
    """All cells of the grid (PSF x exposure x lens light)."""
    return [GridCell(p, t, ll) for p, t, ll in itertools.product(psf_fwhm, exposures, lens_light)]


@dataclass
class GridSet:
    """Rendered systems of one cell: ``lr (N, h, w)``, ``hr (N, H, W)``, ``arc (N, H, W)``
    bool, ``hr_source (N, H, W)`` the noiseless lensed source alone, ``labels (N,)``."""

    cell: GridCell
    lr: np.ndarray
    hr: np.ndarray
    arc: np.ndarray
    hr_source: np.ndarray
    labels: np.ndarray


def render_systems(
    preset: Preset, n: int, seed: int = 100, arc_fraction: float = 0.1
) -> dict[str, np.ndarray]:
    """Render ``n`` systems of ``preset`` with their arc masks (classes round robin; system ``i``
    uses ``default_rng([seed, i])``).

    Returns ``lr (N, h, w)``, ``hr (N, H, W)``, ``arc (N, H, W)`` bool, ``hr_source (N, H, W)``
    (the noiseless lensed source alone), ``labels (N,)`` and ``psf_fwhm (N,)``, the LR PSF FWHM
    [arcsec] each system was observed with.
    """
    from lenssr.simulation.render import Renderer

    r = Renderer(preset)
    out: dict[str, list] = {k: [] for k in ("lr", "hr", "arc", "hr_source", "labels", "psf_fwhm")}
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        label = i % len(CLASSES)
        system = sample_system(preset, rng, label, r.distances)
        obs = r.observe(system, rng)
        amp = system.params["lens_light_amp"]
        system.params["lens_light_amp"] = 0.0
        source = r.render(system).hr_clean
        system.params["lens_light_amp"] = amp
        out["lr"].append(obs.lr)
        out["hr"].append(obs.hr)
        out["hr_source"].append(source)
        out["arc"].append(source >= arc_fraction * float(source.max()))
        out["labels"].append(label)
        out["psf_fwhm"].append(r.lr_observation_instrument(system).psf_fwhm)
    return {k: np.stack(v) if k not in ("labels", "psf_fwhm") else np.asarray(v)
            for k, v in out.items()}  # fmt: skip


def render_cell(
    cell: GridCell, n: int, seed: int = 100, family: str = "shapelets", arc_fraction: float = 0.1
) -> GridSet:
    """Render ``n`` systems of ``cell`` (:func:`render_systems`: the same seeds in every cell, so
    every cell sees the same lenses and sources)."""
    d = render_systems(cell.preset(family), n, seed, arc_fraction)
    return GridSet(cell, d["lr"], d["hr"], d["arc"], d["hr_source"], d["labels"])


def cells_named(names: str) -> list[GridCell]:
    """The grid cells of a comma-separated list of names (all cells for an empty string)."""
    cells = grid_cells()
    wanted = {c.strip() for c in names.split(",") if c.strip()}
    unknown = wanted - {c.name for c in cells}
    if unknown:
        raise ValueError(f"unknown cell(s) {', '.join(sorted(unknown))}; e.g. {cells[0].name}")
    return [c for c in cells if c.name in wanted] if wanted else cells
