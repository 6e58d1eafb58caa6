"""Dark-matter substructure: mass function, Einstein radii, and FFT deflections.

Many subhalos stay cheap: their convergence is deposited on the ray-tracing grid with
cloud-in-cell (CIC) weights and the summed deflection is one zero-padded (non-periodic) FFT
convolution with a deflection kernel, instead of one profile evaluation per subhalo.

* Point masses (and the axion vortex, a line of point-mass elements): the kernel is
  ``alpha(x) = x / (pi |x|^2)`` per unit convergence integral [arcsec^2]; a point mass of
  Einstein radius ``theta_E`` has convergence integral ``pi theta_E^2``.
* NFW / TNFW: subhalos are grouped in ``n_mass_bins`` log-mass bins; each bin has one kernel, the
  lenstronomy deflection of its representative (geometric-centre) mass, and each subhalo is
  deposited with weight ``m / m_bin``. All bins go through one batched FFT.

Grid convention: array ``[row, col]``; ``x = (col - (n - 1) / 2) * pixel_scale`` and
``y = (row - (n - 1) / 2) * pixel_scale`` [arcsec], centred on the optical axis.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import fft as sfft

__all__ = [
    "FFTDeflector",
    "LensingDistances",
    "cic_deposit",
    "sample_masses",
    "vortex_half_length",
]

_ARCSEC_PER_RAD = 206264.80624709636
_G_OVER_C2_MSUN_M = 1.4766250385e3  # G Msun / c^2 [m]
_MPC_M = 3.0856775814913673e22


@dataclass(frozen=True)
class LensingDistances:
    """Distances for a lens at ``z_lens`` and a source at ``z_source`` [Mpc].

    ``convention='angular_diameter'`` is the physical one. ``'luminosity'`` reproduces
    DeepLenseSim's Einstein radii (luminosity distances, ``D_ls = D_s - D_l``).
    """

    z_lens: float
    z_source: float
    d_l: float
    d_s: float
    d_ls: float
    h0: float
    om0: float

    @classmethod
    def from_config(
        cls,
        z_lens: float,
        z_source: float,
        h0: float = 70.0,
        om0: float = 0.3,
        convention: str = "angular_diameter",
    ) -> LensingDistances:
        """Compute distances with astropy ``FlatLambdaCDM(H0=h0, Om0=om0)``."""
        from astropy.cosmology import FlatLambdaCDM

        cosmo = FlatLambdaCDM(H0=h0, Om0=om0)
        if convention == "luminosity":
            d_l = cosmo.luminosity_distance(z_lens).value
            d_s = cosmo.luminosity_distance(z_source).value
            d_ls = d_s - d_l
        else:
            d_l = cosmo.angular_diameter_distance(z_lens).value
            d_s = cosmo.angular_diameter_distance(z_source).value
            d_ls = cosmo.angular_diameter_distance(z_lens, z_source).value
        return cls(z_lens, z_source, float(d_l), float(d_s), float(d_ls), h0, om0)

    @property
    def theta_e2_per_msun(self) -> float:
        """``theta_E^2 / M`` of a point mass [arcsec^2 / Msun]: ``4 G M / c^2 D_ls / (D_l D_s)``."""
        ratio = self.d_ls / (self.d_l * self.d_s * _MPC_M)
        return 4.0 * _G_OVER_C2_MSUN_M * ratio * _ARCSEC_PER_RAD**2

    def einstein_radius(self, mass: np.ndarray | float) -> np.ndarray | float:
        """Point-mass Einstein radius [arcsec] of ``mass`` [Msun]."""
        return np.sqrt(np.asarray(mass, dtype=np.float64) * self.theta_e2_per_msun)

    def nfw_angles(self, mass: float, concentration: float) -> tuple[float, float]:
        """lenstronomy NFW ``(Rs, alpha_Rs)`` [arcsec] of an M200 halo [Msun]."""
        from astropy.cosmology import FlatLambdaCDM
        from lenstronomy.Cosmo.lens_cosmo import LensCosmo

        cosmo = FlatLambdaCDM(H0=self.h0, Om0=self.om0)
        lc = LensCosmo(z_lens=self.z_lens, z_source=self.z_source, cosmo=cosmo)
        rs, alpha_rs = lc.nfw_physical2angle(M=mass, c=concentration)
        return float(rs), float(alpha_rs)


def sample_masses(
    rng: np.random.Generator, n: int, m_min: float, m_max: float, slope: float
) -> np.ndarray:
    """Draw ``n`` masses [Msun] from ``dN/dm ~ m^slope`` on ``[m_min, m_max]`` (inverse CDF)."""
    u = rng.uniform(0.0, 1.0, size=n)
    if abs(slope + 1.0) < 1e-9:
        return m_min * (m_max / m_min) ** u
    p = slope + 1.0
    lo, hi = m_min**p, m_max**p
    return (lo + (hi - lo) * u) ** (1.0 / p)


def vortex_half_length(axion_mass_ev: float, coefficient: float = 0.03) -> float:
    """Vortex half-length [arcsec] = ``coefficient * (1e-22 eV / m_axion)``.

    This is DeepLenseSim's de Broglie-length relation ``0.06 / (2 m / 1e-22 eV)`` (stated there
    for a halo at z = 0.5): lighter axions give longer vortices.
    """
    return coefficient * 1e-22 / axion_mass_ev


def cic_deposit(
    x: np.ndarray,
    y: np.ndarray,
    weight: np.ndarray,
    num_pix: int,
    pixel_scale: float,
    bins: np.ndarray | None = None,
    n_bins: int = 1,
) -> np.ndarray:
    """Cloud-in-cell deposit of point weights on the grid.

    Args:
        x, y: positions [arcsec], shape ``(K,)``.
        weight: weights (e.g. convergence integrals [arcsec^2]), shape ``(K,)``.
        num_pix: grid side; pixel_scale: grid pixel [arcsec].
        bins: optional bin index per point (``0..n_bins-1``) for a stack of grids.
        n_bins: number of stacked grids.

    Returns:
        float64 ``(n_bins, num_pix, num_pix)``; weight falling outside the grid is dropped.
    """
    out = np.zeros(n_bins * num_pix * num_pix)
    if len(x) == 0:
        return out.reshape(n_bins, num_pix, num_pix)
    c = (num_pix - 1) / 2.0
    u = np.asarray(x, dtype=np.float64) / pixel_scale + c
    v = np.asarray(y, dtype=np.float64) / pixel_scale + c
    i0, j0 = np.floor(u).astype(np.int64), np.floor(v).astype(np.int64)
    fu, fv = u - i0, v - j0
    b = np.zeros(len(x), dtype=np.int64) if bins is None else np.asarray(bins, dtype=np.int64)
    w = np.asarray(weight, dtype=np.float64)
    for di, wi in ((0, 1.0 - fu), (1, fu)):
        for dj, wj in ((0, 1.0 - fv), (1, fv)):
            col, row = i0 + di, j0 + dj
            ok = (col >= 0) & (col < num_pix) & (row >= 0) & (row < num_pix)
            idx = (b[ok] * num_pix + row[ok]) * num_pix + col[ok]
            out += np.bincount(idx, weights=(w * wi * wj)[ok], minlength=out.size)
    return out.reshape(n_bins, num_pix, num_pix)


class FFTDeflector:
    """Summed deflection of deposited mass on an ``num_pix``-square grid by FFT convolution.

    Kernels (one per bin) are sampled at all grid offsets and their spectra cached; the padded
    FFT size ``P >= 2 num_pix - 1`` makes the convolution non-periodic.

    Args:
        num_pix: grid side [pixels].
        pixel_scale: grid pixel [arcsec].
    """

    def __init__(self, num_pix: int, pixel_scale: float) -> None:
        self.num_pix = num_pix
        self.pixel_scale = pixel_scale
        self.size = sfft.next_fast_len(2 * num_pix - 1, real=True)
        idx = np.arange(self.size)
        off = np.where(idx < num_pix, idx, idx - self.size).astype(np.float64)
        self._valid = (idx < num_pix) | (idx > self.size - num_pix)
        self._dx = off[None, :] * pixel_scale
        self._dy = off[:, None] * pixel_scale
        self._spectra: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def offsets(self) -> tuple[np.ndarray, np.ndarray]:
        """Kernel offsets ``(dx, dy)`` [arcsec], each ``(P, P)`` in FFT (wrap-around) order."""
        dx = np.broadcast_to(self._dx, (self.size, self.size))
        dy = np.broadcast_to(self._dy, (self.size, self.size))
        return dx, dy

    def set_kernel(self, key: str, alpha_x: np.ndarray, alpha_y: np.ndarray) -> None:
        """Register a kernel: deflections ``(P, P)`` at :meth:`offsets` per unit deposit weight."""
        mask = self._valid[:, None] & self._valid[None, :]
        kx = np.where(mask, alpha_x, 0.0).astype(np.float32)
        ky = np.where(mask, alpha_y, 0.0).astype(np.float32)
        self._spectra[key] = (sfft.rfft2(kx, workers=1), sfft.rfft2(ky, workers=1))

    def has_kernel(self, key: str) -> bool:
        """Whether ``key`` was registered."""
        return key in self._spectra

    def point_mass_kernel(self) -> str:
        """Register (once) the point-mass kernel ``x / (pi |x|^2)`` (zero at the origin)."""
        key = "point_mass"
        if key not in self._spectra:
            dx, dy = self.offsets()
            r2 = dx**2 + dy**2
            with np.errstate(divide="ignore", invalid="ignore"):
                inv = np.where(r2 > 0, 1.0 / (np.pi * r2), 0.0)
            self.set_kernel(key, dx * inv, dy * inv)
        return key

    def deflection(self, density: np.ndarray, keys: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Convolve deposited weights with kernels and sum.

        Args:
            density: ``(len(keys), num_pix, num_pix)`` deposited weights, one grid per kernel.
            keys: kernel names registered with :meth:`set_kernel`.

        Returns:
            ``(alpha_x, alpha_y)`` [arcsec], each float32 ``(num_pix, num_pix)``.
        """
        n, p = self.num_pix, self.size
        active = [k for k in range(len(keys)) if np.any(density[k])]
        if not active:
            zero = np.zeros((n, n), dtype=np.float32)
            return zero, zero.copy()
        dens = density[active].astype(np.float32)
        spec = sfft.rfft2(dens, s=(p, p), axes=(-2, -1), workers=1)
        sx = sum(spec[j] * self._spectra[keys[k]][0] for j, k in enumerate(active))
        sy = sum(spec[j] * self._spectra[keys[k]][1] for j, k in enumerate(active))
        ax = sfft.irfft2(sx, s=(p, p), workers=1)[:n, :n]
        ay = sfft.irfft2(sy, s=(p, p), workers=1)[:n, :n]
        return ax, ay
