"""Rendering: one ray-tracing pass on a fine grid, then one observation per instrument.

The fine grid has pixel ``hr.pixel_scale / hr.supersampling`` and covers the common field of view.
Rays are shot once (lenstronomy ``LensModel(['SIE', 'SHEAR'])`` plus the FFT substructure
deflection), the true sky (lensed source + lens light, e-/s/arcsec^2) is built once, and each
instrument convolves it with its Gaussian PSF (FFT, zero padded) and block-averages it to its
pixel scale. A :class:`Renderer` caches grids, lenstronomy objects, PSF transfer functions and
deflection kernels, so build one per process and reuse it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import fft as sfft

from lenssr.simulation.instrument import (
    add_noise,
    bin_mean,
    gaussian_otf,
    noise_sigma,
    padded_shape,
)
from lenssr.simulation.presets import Preset
from lenssr.simulation.sampling import (
    SOURCE_FAMILIES,
    System,
    distances_for,
    lr_instrument,
    spec_max,
)
from lenssr.simulation.substructure import FFTDeflector, cic_deposit

__all__ = ["Observation", "Renderer"]


@dataclass
class Observation:
    """A rendered system.

    Attributes:
        hr_clean, lr_clean: noiseless HR ``(H, H)`` and LR ``(h, h)`` images [e-/s/arcsec^2].
        hr, lr: noisy observations (None until :meth:`Renderer.observe`).
        lr_peak_snr: peak S/N of the lensed source (no lens light) in the LR image.
    """

    hr_clean: np.ndarray
    lr_clean: np.ndarray
    lr_peak_snr: float
    hr: np.ndarray | None = None
    lr: np.ndarray | None = None


class Renderer:
    """Renders :class:`System` objects of one preset (cached grids, kernels and FFT plans)."""

    def __init__(self, preset: Preset) -> None:
        from lenstronomy.LensModel.lens_model import LensModel
        from lenstronomy.LightModel.light_model import LightModel

        self.preset = preset
        self.distances = distances_for(preset)
        n, pix = preset.fine_num_pix, preset.fine_pixel_scale
        self.n, self.pixel_scale = n, pix
        coords = (np.arange(n) - (n - 1) / 2.0) * pix
        xx, yy = np.meshgrid(coords, coords)
        self.x, self.y = xx.ravel(), yy.ravel()
        self.lens_model = LensModel(["SIE", "SHEAR"])
        self.sersic = LightModel(["SERSIC_ELLIPSE"])
        sig_hr = preset.hr.psf_sigma / pix
        sig_lr = preset.lr.psf_sigma / pix
        mix = preset.config.get("lr_mixture")
        sig_max = max(sig_hr, sig_lr)
        if mix and mix.get("enabled", True):
            fwhm_max = spec_max(mix["psf_fwhm_pix"]) * preset.lr.pixel_scale
            sig_max = max(sig_max, fwhm_max / 2.3548200450309493 / pix)
        p = padded_shape(n, sig_max)
        self.fft_shape = (p, p)
        self.otf_hr = gaussian_otf(self.fft_shape, sig_hr)
        self.otf_lr = gaussian_otf(self.fft_shape, sig_lr)
        self.deflector = FFTDeflector(n, pix)
        self._nfw_table: tuple[np.ndarray, np.ndarray] | None = None

    # -- substructure -------------------------------------------------------------------------
    def substructure_deflection(self, system: System) -> tuple[np.ndarray, np.ndarray] | None:
        """FFT deflection ``(alpha_x, alpha_y)`` [arcsec] of the subhalos / vortex, or None."""
        p = system.params
        if system.sub_mass.size:
            profile = str(self.preset.config["subhalos"]["profile"])
            if profile == "point_mass":
                weight = np.pi * system.sub_mass * self.distances.theta_e2_per_msun
                dens = cic_deposit(system.sub_x, system.sub_y, weight, self.n, self.pixel_scale)
                return self.deflector.deflection(dens, [self.deflector.point_mass_kernel()])
            return self._nfw_deflection(system, profile)
        if np.isfinite(p.get("vortex_mass", np.nan)):
            half = p["vortex_half_length"]
            npts = max(2, int(np.ceil(4.0 * half / self.pixel_scale)) + 1)
            s = np.linspace(-half, half, npts)
            x = p["lens_x"] + s * np.cos(p["vortex_angle"])
            y = p["lens_y"] + s * np.sin(p["vortex_angle"])
            w = np.pi * p["vortex_mass"] / npts * self.distances.theta_e2_per_msun
            weight = np.full(npts, w)
            dens = cic_deposit(x, y, weight, self.n, self.pixel_scale)
            return self.deflector.deflection(dens, [self.deflector.point_mass_kernel()])
        return None

    def nfw_bins(self) -> tuple[np.ndarray, np.ndarray]:
        """Log-mass bin edges and representative (geometric-centre) masses [Msun]."""
        sub = self.preset.config["subhalos"]
        nb = max(1, int(sub["n_mass_bins"]))
        edges = np.geomspace(float(sub["m_min"]), float(sub["m_max"]), nb + 1)
        return edges, np.sqrt(edges[:-1] * edges[1:])

    def _nfw_kernel(self, profile: str, b: int, m_rep: float) -> str:
        key = f"{profile}_{b}"
        if not self.deflector.has_kernel(key):
            from lenstronomy.LensModel.Profiles.nfw import NFW
            from lenstronomy.LensModel.Profiles.tnfw import TNFW

            sub = self.preset.config["subhalos"]
            c = float(sub["concentration"]) * (m_rep / 1e8) ** float(sub["c_slope"])
            rs, alpha_rs = self.distances.nfw_angles(m_rep, c)
            dx, dy = self.deflector.offsets()
            if profile == "nfw":
                ax, ay = NFW().derivatives(dx.ravel(), dy.ravel(), Rs=rs, alpha_Rs=alpha_rs)
            else:
                ax, ay = TNFW().derivatives(
                    dx.ravel(), dy.ravel(), Rs=rs, alpha_Rs=alpha_rs, r_trunc=float(sub["tau"]) * rs
                )
            shape = dx.shape
            self.deflector.set_kernel(key, ax.reshape(shape), ay.reshape(shape))
        return key

    def nfw_parameters(self, mass: float) -> dict[str, float]:
        """lenstronomy NFW/TNFW kwargs (``Rs``, ``alpha_Rs``, ``r_trunc``) of one subhalo mass."""
        sub = self.preset.config["subhalos"]
        c = float(sub["concentration"]) * (mass / 1e8) ** float(sub["c_slope"])
        rs, alpha_rs = self.distances.nfw_angles(mass, c)
        return {"Rs": rs, "alpha_Rs": alpha_rs, "r_trunc": float(sub["tau"]) * rs}

    def _nfw_alpha_table(self, profile: str) -> tuple[np.ndarray, np.ndarray]:
        """``(log10 m, alpha(r_ref))``: NFW/TNFW deflection at ``r_ref = 1"`` vs mass (cached)."""
        if self._nfw_table is None:
            from lenstronomy.LensModel.Profiles.nfw import NFW
            from lenstronomy.LensModel.Profiles.tnfw import TNFW

            sub = self.preset.config["subhalos"]
            logm = np.linspace(np.log10(float(sub["m_min"])), np.log10(float(sub["m_max"])), 129)
            alpha = np.empty_like(logm)
            for k, lm in enumerate(logm):
                kw = self.nfw_parameters(10.0**lm)
                if profile == "nfw":
                    kw.pop("r_trunc")
                    alpha[k] = NFW().derivatives(1.0, 0.0, **kw)[0]
                else:
                    alpha[k] = TNFW().derivatives(1.0, 0.0, **kw)[0]
            self._nfw_table = (logm, alpha)
        return self._nfw_table

    def _nfw_deflection(self, system: System, profile: str) -> tuple[np.ndarray, np.ndarray]:
        edges, reps = self.nfw_bins()
        b = np.clip(np.searchsorted(edges, system.sub_mass, side="right") - 1, 0, len(reps) - 1)
        keys = [self._nfw_kernel(profile, k, reps[k]) for k in range(len(reps))]
        # weight: each subhalo's deflection at 1" relative to its bin's representative profile
        logm, alpha = self._nfw_alpha_table(profile)
        weight = np.interp(np.log10(system.sub_mass), logm, alpha) / np.interp(
            np.log10(reps[b]), logm, alpha
        )
        dens = cic_deposit(
            system.sub_x,
            system.sub_y,
            weight,
            self.n,
            self.pixel_scale,
            bins=b,
            n_bins=len(reps),
        )
        return self.deflector.deflection(dens, keys)

    # -- rendering ----------------------------------------------------------------------------
    def source_plane(self, system: System) -> tuple[np.ndarray, np.ndarray]:
        """Ray-trace the fine grid to the source plane: ``(beta_x, beta_y)`` [arcsec], flat."""
        p = system.params
        kwargs = [
            {
                "theta_E": p["theta_e"],
                "e1": p["lens_e1"],
                "e2": p["lens_e2"],
                "center_x": p["lens_x"],
                "center_y": p["lens_y"],
            },
            {
                "gamma1": p["gamma1"],
                "gamma2": p["gamma2"],
                "ra_0": p["lens_x"],
                "dec_0": p["lens_y"],
            },
        ]
        bx, by = self.lens_model.ray_shooting(self.x, self.y, kwargs)
        sub = self.substructure_deflection(system)
        if sub is not None:
            bx = bx - sub[0].ravel()
            by = by - sub[1].ravel()
        return bx, by

    def sky(self, system: System) -> tuple[np.ndarray, np.ndarray]:
        """True sky on the fine grid: ``(lensed_source, lens_light)`` [e-/s/arcsec^2], (n, n)."""
        p = system.params
        bx, by = self.source_plane(system)
        src = self.sersic.surface_brightness(
            bx,
            by,
            [
                {
                    "amp": p["source_amp"],
                    "R_sersic": p["source_r_sersic"],
                    "n_sersic": p["source_n_sersic"],
                    "e1": p["source_e1"],
                    "e2": p["source_e2"],
                    "center_x": p["source_x"],
                    "center_y": p["source_y"],
                }
            ],
        )
        src = self._morphology(system, bx, by, src)
        for cx, cy, amp, sig in system.clumps:
            r2 = (bx - cx) ** 2 + (by - cy) ** 2
            near = r2 < (6.0 * sig) ** 2
            src[near] += amp * np.exp(-0.5 * r2[near] / sig**2)
        if p["lens_light_amp"] > 0:
            light = self.sersic.surface_brightness(
                self.x,
                self.y,
                [
                    {
                        "amp": p["lens_light_amp"],
                        "R_sersic": p["lens_light_r_sersic"],
                        "n_sersic": p["lens_light_n_sersic"],
                        "e1": p["lens_light_e1"],
                        "e2": p["lens_light_e2"],
                        "center_x": p["lens_x"],
                        "center_y": p["lens_y"],
                    }
                ],
            )
        else:
            light = np.zeros_like(src)
        return src.reshape(self.n, self.n), light.reshape(self.n, self.n)

    def _morphology(
        self, system: System, bx: np.ndarray, by: np.ndarray, sersic: np.ndarray
    ) -> np.ndarray:
        """Source light of the system's morphology family at source-plane points ``(bx, by)``.

        ``sersic`` is the base elliptical Sersic already evaluated there [e-/s/arcsec^2]; the
        ``sersic`` family returns it unchanged (clumps are added by the caller for every family).
        """
        p = system.params
        family = SOURCE_FAMILIES[int(p.get("source_family", 0.0))]
        if family == "sersic":
            return sersic
        # source-frame coordinates: centred, rotated to the source's major axis, q-stretched
        dx, dy = bx - p["source_x"], by - p["source_y"]
        c, s_ = np.cos(p["source_phi"]), np.sin(p["source_phi"])
        u, v = c * dx + s_ * dy, (-s_ * dx + c * dy) / max(p["source_q"], 1e-3)
        r_s = p["source_r_sersic"]
        if family == "grf":
            field = _grf(int(p["source_grf_seed"]), p["source_grf_slope"], 64)
            # the field spans +-4 r_sersic; outside it is periodic (it is only visible where the
            # Sersic envelope is bright)
            g = _sample_periodic(field, u / (8.0 * r_s), v / (8.0 * r_s))
            return sersic * np.exp(p["source_grf_amp"] * g - 0.5 * p["source_grf_amp"] ** 2)
        if family == "spiral":
            r = np.hypot(u, v) + 1e-6
            phi = np.arctan2(v, u)
            m = p["source_spiral_arms"]
            wind = np.log(r / r_s) / np.tan(p["source_spiral_pitch"])
            arms = 1.0 + p["source_spiral_amp"] * np.cos(
                m * (phi - p["source_spiral_phase"]) - wind
            )
            disk = p["source_amp"] * np.exp(-(r / r_s - 1.0) * 1.678) * np.clip(arms, 0.0, None)
            bulge_r = 0.25 * r_s
            bulge = (
                p["source_bulge_frac"] * p["source_amp"] * 8.0 * np.exp(-0.5 * (r / bulge_r) ** 2)
            )
            return (disk + bulge).astype(sersic.dtype)
        if family == "multi":
            out = sersic.copy()
            for cx, cy, amp, size in system.components:
                out += self.sersic.surface_brightness(
                    bx,
                    by,
                    [
                        {
                            "amp": amp,
                            "R_sersic": size,
                            "n_sersic": 1.0,
                            "e1": 0.0,
                            "e2": 0.0,
                            "center_x": cx,
                            "center_y": cy,
                        }
                    ],
                )
            return out
        if family == "shapelets":
            return _shapelets(
                u, v, int(p["source_shapelet_nmax"]), p["source_shapelet_beta"],
                int(p["source_shapelet_seed"]), p["source_amp"],
            )  # fmt: skip
        raise ValueError(f"unknown source family {family!r}")

    def lr_observation_instrument(self, system: System):
        """The LR instrument of ``system`` (the preset's, or the one drawn for it)."""
        return lr_instrument(self.preset, system.params)

    def _lr_otf(self, system: System) -> np.ndarray:
        inst = self.lr_observation_instrument(system)
        if inst.psf_fwhm == self.preset.lr.psf_fwhm:
            return self.otf_lr
        return gaussian_otf(self.fft_shape, inst.psf_sigma / self.pixel_scale)

    def _convolve(self, spectrum: np.ndarray, otf: np.ndarray) -> np.ndarray:
        n = self.n
        return sfft.irfft2(spectrum * otf, s=self.fft_shape, workers=1)[:n, :n]

    def render(self, system: System) -> Observation:
        """Noiseless HR and LR images of ``system`` from one ray-tracing pass."""
        src, light = self.sky(system)
        f_src = sfft.rfft2(src.astype(np.float32), s=self.fft_shape, workers=1)
        hr_sup = self.preset.hr.supersampling
        lr_sup = self.preset.lr.supersampling
        otf_lr = self._lr_otf(system)
        lr_src = bin_mean(self._convolve(f_src, otf_lr), lr_sup)
        if system.params["lens_light_amp"] > 0:
            f_all = f_src + sfft.rfft2(light.astype(np.float32), s=self.fft_shape, workers=1)
            lr_clean = bin_mean(self._convolve(f_all, otf_lr), lr_sup)
        else:
            f_all = f_src
            lr_clean = lr_src
        hr_clean = bin_mean(self._convolve(f_all, self.otf_hr), hr_sup)
        k = int(np.argmax(lr_src))
        lr_inst = self.lr_observation_instrument(system)
        snr = float(lr_src.flat[k] / noise_sigma(lr_clean.flat[k], lr_inst))
        return Observation(
            hr_clean=np.asarray(hr_clean, dtype=np.float32),
            lr_clean=np.asarray(lr_clean, dtype=np.float32),
            lr_peak_snr=snr,
        )

    def observe(self, system: System, rng: np.random.Generator) -> Observation:
        """Render and add each instrument's noise (HR first, then LR, from ``rng``)."""
        obs = self.render(system)
        obs.hr = add_noise(obs.hr_clean, self.preset.hr, rng)
        obs.lr = add_noise(obs.lr_clean, self.lr_observation_instrument(system), rng)
        return obs


def _grf(seed: int, slope: float, n: int) -> np.ndarray:
    """Unit-variance periodic Gaussian random field ``(n, n)`` with power ``P(k) ~ k^-slope``."""
    rng = np.random.default_rng(seed)
    kx = np.fft.fftfreq(n)[None, :]
    ky = np.fft.fftfreq(n)[:, None]
    k = np.hypot(kx, ky)
    k[0, 0] = np.inf
    amp = k ** (-0.5 * slope)
    amp[0, 0] = 0.0
    noise = rng.normal(size=(n, n)) + 1j * rng.normal(size=(n, n))
    field = np.fft.ifft2(noise * amp).real
    std = field.std()
    return field / std if std > 0 else field


def _sample_periodic(field: np.ndarray, fu: np.ndarray, fv: np.ndarray) -> np.ndarray:
    """Bilinear samples of a periodic field at fractional coordinates ``fu, fv`` (period 1)."""
    from scipy.ndimage import map_coordinates

    n = field.shape[0]
    rows = (fv * n + n / 2.0) % n
    cols = (fu * n + n / 2.0) % n
    return map_coordinates(field, [rows, cols], order=1, mode="grid-wrap")


def _shapelets(
    u: np.ndarray, v: np.ndarray, n_max: int, beta: float, seed: int, amp: float
) -> np.ndarray:
    """Positive part of a random Cartesian shapelet expansion (Refregier 2003) [e-/s/arcsec^2].

    Coefficients ``c_{n1 n2} ~ N(0, 1) / (1 + n1 + n2)`` with ``c_00 = 1.5``; scale ``beta``
    [arcsec]; peak normalised to ``amp``.
    """
    from numpy.polynomial.hermite import hermval

    rng = np.random.default_rng(seed)
    x, y = u / beta, v / beta
    gauss_x, gauss_y = np.exp(-0.5 * x**2), np.exp(-0.5 * y**2)
    hx = [hermval(x, [0] * n + [1]) * gauss_x for n in range(n_max + 1)]
    hy = [hermval(y, [0] * n + [1]) * gauss_y for n in range(n_max + 1)]
    out = np.zeros_like(u)
    for n1 in range(n_max + 1):
        for n2 in range(n_max + 1 - n1):
            c = 1.5 if n1 == n2 == 0 else rng.normal() / (1.0 + n1 + n2)
            norm = 1.0 / np.sqrt(2.0 ** (n1 + n2) * np.pi * math.factorial(n1) * math.factorial(n2))
            out += c * norm * hx[n1] * hy[n2]
    out = np.clip(out, 0.0, None)
    peak = out.max()
    return (amp * out / peak if peak > 0 else out).astype(np.float64)
