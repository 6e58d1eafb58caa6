"""Noise models of the denoising pretext task, applied to normalised LR batches.

Every function takes a batch ``x (B, 1, h, w)`` in normalised units (the LR image's min..max
mapped to [0, 1], see :class:`lenssr.data.Normalization`) and returns a noisy copy of the same
shape. Intensities are therefore relative to each image's dynamic range:

========================  ===========================================================
``gaussian(sigma)``       ``x + N(0, sigma^2)``: standard deviation ``sigma``
``uniform(amplitude)``    ``x + U(-a, a)``: standard deviation ``a / sqrt(3)``
``salt_pepper(amount)``   a fraction ``amount`` of pixels set to 0 or 1 (half each)
``poisson(peak)``         ``Poisson(x * peak) / peak``: mean ``x``, variance ``x / peak``
                          (``peak`` = photon counts at the image maximum; lower is noisier)
========================  ===========================================================

:class:`NoiseSampler` draws one noise type and one intensity per batch.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from lenssr.errors import ConfigError

NoiseFn = Callable[[Tensor, float, torch.Generator | None], Tensor]


def gaussian(x: Tensor, sigma: float, generator: torch.Generator | None = None) -> Tensor:
    """Additive white Gaussian noise of standard deviation ``sigma`` (normalised units)."""
    noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    return x + sigma * noise


def uniform(x: Tensor, amplitude: float, generator: torch.Generator | None = None) -> Tensor:
    """Additive uniform noise on ``[-amplitude, amplitude]`` (std ``amplitude / sqrt(3)``)."""
    u = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    return x + amplitude * (2 * u - 1)


def salt_pepper(x: Tensor, amount: float, generator: torch.Generator | None = None) -> Tensor:
    """Impulse noise: each pixel independently becomes 0 (pepper) or 1 (salt) with
    probability ``amount / 2`` each, and is unchanged with probability ``1 - amount``."""
    u = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    out = torch.where(u < amount / 2, torch.zeros_like(x), x)
    return torch.where((u >= amount / 2) & (u < amount), torch.ones_like(x), out)


def poisson(x: Tensor, peak: float, generator: torch.Generator | None = None) -> Tensor:
    """Photon (shot) noise: ``Poisson(x * peak) / peak`` for ``x >= 0`` (negative values are
    clipped to 0 first). Mean ``x``, variance ``x / peak``."""
    rate = (x.clamp_min(0) * peak).float()
    return (torch.poisson(rate, generator=generator) / peak).to(x.dtype)


NOISE_FUNCTIONS: dict[str, NoiseFn] = {
    "gaussian": gaussian,
    "uniform": uniform,
    "salt_pepper": salt_pepper,
    "poisson": poisson,
}

#: Default intensity range per type, in the units of its function's argument.
DEFAULT_INTENSITY: dict[str, tuple[float, float]] = {
    "gaussian": (0.01, 0.10),  # sigma
    "uniform": (0.02, 0.15),  # half-width
    "salt_pepper": (0.005, 0.05),  # fraction of pixels
    "poisson": (20.0, 500.0),  # peak counts
}


def _range(name: str, value: Any) -> tuple[float, float]:
    if isinstance(value, bool):
        raise ConfigError(f"pretrain.noise.{name} must be a number or [low, high], got {value!r}")
    if isinstance(value, int | float):
        lo = hi = float(value)
    elif (
        isinstance(value, list | tuple)
        and len(value) == 2
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
    ):
        lo, hi = float(value[0]), float(value[1])
    else:
        raise ConfigError(f"pretrain.noise.{name} must be a number or [low, high], got {value!r}")
    if lo > hi or lo < 0:
        raise ConfigError(f"pretrain.noise.{name}: need 0 <= low <= high, got {value!r}")
    if name == "poisson" and lo <= 0:
        raise ConfigError(f"pretrain.noise.poisson (peak counts) must be > 0, got {value!r}")
    if name == "salt_pepper" and hi > 1:
        raise ConfigError(f"pretrain.noise.salt_pepper (a fraction) must be <= 1, got {value!r}")
    return lo, hi


@dataclass
class NoiseSampler:
    """Draws one noise type (with ``probabilities``) and one intensity (uniform in its range)
    per batch and applies it.

    Args:
        types: noise names, a subset of :data:`NOISE_FUNCTIONS`.
        intensities: name -> fixed value or ``(low, high)`` range (defaults:
            :data:`DEFAULT_INTENSITY`).
        probabilities: one weight per type (normalised); equal when None.
    """

    types: Sequence[str] = tuple(NOISE_FUNCTIONS)
    intensities: Mapping[str, Any] = field(default_factory=dict)
    probabilities: Sequence[float] | None = None

    def __post_init__(self) -> None:
        self.types = list(self.types)
        if not self.types:
            raise ConfigError("pretrain.noise.types must name at least one noise type")
        unknown = [t for t in self.types if t not in NOISE_FUNCTIONS]
        if unknown:
            raise ConfigError(
                f"unknown noise type(s) {', '.join(unknown)} (use {', '.join(NOISE_FUNCTIONS)})"
            )
        extra = sorted(set(self.intensities) - set(NOISE_FUNCTIONS))
        if extra:
            raise ConfigError(f"pretrain.noise: unknown intensity key(s) {', '.join(extra)}")
        self.ranges = {
            t: _range(t, self.intensities.get(t, DEFAULT_INTENSITY[t])) for t in self.types
        }
        probs = [1.0] * len(self.types) if self.probabilities is None else self.probabilities
        if len(probs) != len(self.types) or any(p < 0 for p in probs) or sum(probs) <= 0:
            raise ConfigError(
                f"pretrain.noise.probabilities must be {len(self.types)} non-negative weights "
                f"with a positive sum, got {self.probabilities!r}"
            )
        self.weights = torch.tensor([float(p) for p in probs], dtype=torch.float64)

    def sample(self, generator: torch.Generator | None = None) -> tuple[str, float]:
        """One ``(type, intensity)`` draw."""
        k = int(torch.multinomial(self.weights, 1, generator=generator))
        name = self.types[k]
        lo, hi = self.ranges[name]
        u = float(torch.rand((), generator=generator, dtype=torch.float64))
        return name, lo + (hi - lo) * u

    def __call__(
        self, x: Tensor, generator: torch.Generator | None = None
    ) -> tuple[Tensor, str, float]:
        """``x (B, 1, h, w)`` -> ``(noisy x, type, intensity)``; one draw for the whole batch.

        ``generator`` must live on CPU; noise is drawn on CPU when ``x`` is elsewhere.
        """
        name, intensity = self.sample(generator)
        fn = NOISE_FUNCTIONS[name]
        if x.device.type != "cpu" and generator is not None:
            return fn(x.cpu(), intensity, generator).to(x.device), name, intensity
        return fn(x, intensity, generator), name, intensity
