"""Adversarial losses: vanilla (BCE), relativistic average (RaGAN) and WGAN-GP.

Discriminator outputs are raw logits, either one per image ``(B, 1)`` (SRGAN-D) or one per
patch ``(B, 1, h, w)`` (PatchGAN); every loss averages over all logits.

========================  =================================================================
``vanilla``               D: ``BCE(D(x), 1) + BCE(D(G(z)), 0)``; G: ``BCE(D(G(z)), 1)``
``relativistic``          ``C_r = D(x) - mean_b D(G(z))``, ``C_f = D(G(z)) - mean_b D(x)``
                          (means over the batch, per patch); D: ``BCE(C_r, 1) + BCE(C_f, 0)``;
                          G: ``BCE(C_r, 0) + BCE(C_f, 1)`` (ESRGAN)
``wgan-gp``               critic ``f(x) = mean of D(x)'s logits per image``; D:
                          ``mean f(G(z)) - mean f(x) + gp_weight * GP``; G: ``-mean f(G(z))``
========================  =================================================================
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lenssr.errors import ConfigError
from lenssr.registry import Registry

#: Adversarial formulations by name (``gan.adversarial``).
ADVERSARIAL = Registry("adversarial loss")


def critic_scores(logits: Tensor) -> Tensor:
    """One critic value per sample: the mean of a discriminator's logits over all but the
    batch dimension, ``(B, ...) -> (B,)``."""
    return logits.flatten(1).mean(1)


def gradient_penalty(
    critic: nn.Module,
    real: Tensor,
    fake: Tensor,
    generator: torch.Generator | None = None,
) -> Tensor:
    """WGAN-GP penalty ``mean_b (||grad_x f(x_b)||_2 - 1)^2`` (Gulrajani et al. 2017).

    ``x_b = eps_b * real_b + (1 - eps_b) * fake_b`` with one ``eps_b ~ U(0, 1)`` per sample;
    the gradient norm is taken **per sample** over ``C, H, W`` (``f`` per sample as in
    :func:`critic_scores`), so the penalty is zero for any critic whose gradient has unit norm
    at every sample. ``create_graph=True`` so the penalty trains the critic.
    """
    b = real.shape[0]
    eps = torch.rand((b, 1, 1, 1), generator=generator, dtype=real.dtype).to(real.device)
    x = (eps * real.detach() + (1 - eps) * fake.detach()).requires_grad_(True)
    scores = critic_scores(critic(x))
    (grad,) = torch.autograd.grad(scores.sum(), x, create_graph=True)
    norms = grad.flatten(1).norm(2, dim=1)
    return ((norms - 1) ** 2).mean()


class AdversarialLoss:
    """Discriminator and generator losses of one adversarial formulation (the base class of
    the registered ones; ``AdversarialLoss(kind, gp_weight)`` builds the one named ``kind``).

    Args:
        kind: ``vanilla``, ``relativistic`` or ``wgan-gp`` (see :data:`ADVERSARIAL`).
        gp_weight: weight of the gradient penalty (``wgan-gp`` only).
    """

    kind = ""

    def __new__(cls, kind: str = "vanilla", gp_weight: float = 10.0) -> AdversarialLoss:
        if cls is AdversarialLoss:
            if kind not in ADVERSARIAL:
                raise ConfigError(
                    f"gan.adversarial {kind!r} unknown (use {', '.join(ADVERSARIAL.names())})"
                )
            cls = ADVERSARIAL.get(kind)
        return super().__new__(cls)

    def __init__(self, kind: str = "vanilla", gp_weight: float = 10.0) -> None:
        self.gp_weight = float(gp_weight)

    @staticmethod
    def _bce(logits: Tensor, target: float) -> Tensor:
        return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target))

    def discriminator_loss(
        self,
        disc: nn.Module,
        real: Tensor,
        fake: Tensor,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, dict[str, float]]:
        """D's loss on a real and a (detached) fake batch; returns ``(loss, logs)``."""
        fake = fake.detach()
        d_real, d_fake = disc(real).float(), disc(fake).float()
        logs = {"d_real": float(d_real.detach().mean()), "d_fake": float(d_fake.detach().mean())}
        return self._d_loss(disc, real, fake, d_real, d_fake, generator, logs), logs

    def _d_loss(self, disc, real, fake, d_real, d_fake, generator, logs) -> Tensor:  # noqa: ANN001
        raise NotImplementedError

    def generator_loss(self, disc: nn.Module, real: Tensor, fake: Tensor) -> Tensor:
        """G's adversarial loss for a fake batch (``real`` is used by ``relativistic``)."""
        raise NotImplementedError


@ADVERSARIAL.register("vanilla")
class VanillaLoss(AdversarialLoss):
    """D: ``BCE(D(x), 1) + BCE(D(G(z)), 0)``; G: ``BCE(D(G(z)), 1)``."""

    kind = "vanilla"

    def _d_loss(self, disc, real, fake, d_real, d_fake, generator, logs) -> Tensor:  # noqa: ANN001
        return self._bce(d_real, 1.0) + self._bce(d_fake, 0.0)

    def generator_loss(self, disc: nn.Module, real: Tensor, fake: Tensor) -> Tensor:
        return self._bce(disc(fake).float(), 1.0)


@ADVERSARIAL.register("relativistic")
class RelativisticLoss(AdversarialLoss):
    """Relativistic average GAN (ESRGAN): each side judged against the other's batch mean."""

    kind = "relativistic"

    def _d_loss(self, disc, real, fake, d_real, d_fake, generator, logs) -> Tensor:  # noqa: ANN001
        loss = self._bce(d_real - d_fake.mean(0, keepdim=True), 1.0)
        return loss + self._bce(d_fake - d_real.mean(0, keepdim=True), 0.0)

    def generator_loss(self, disc: nn.Module, real: Tensor, fake: Tensor) -> Tensor:
        d_fake = disc(fake).float()
        d_real = disc(real).float().detach()
        loss = self._bce(d_real - d_fake.mean(0, keepdim=True), 0.0)
        return loss + self._bce(d_fake - d_real.mean(0, keepdim=True), 1.0)


@ADVERSARIAL.register("wgan-gp")
class WGANGPLoss(AdversarialLoss):
    """Wasserstein critic with gradient penalty (Gulrajani et al. 2017)."""

    kind = "wgan-gp"

    def _d_loss(self, disc, real, fake, d_real, d_fake, generator, logs) -> Tensor:  # noqa: ANN001
        wdist = critic_scores(d_real).mean() - critic_scores(d_fake).mean()
        gp = gradient_penalty(disc, real, fake, generator)
        logs.update(wasserstein=float(wdist.detach()), gp=float(gp.detach()))
        return -wdist + self.gp_weight * gp

    def generator_loss(self, disc: nn.Module, real: Tensor, fake: Tensor) -> Tensor:
        return -critic_scores(disc(fake).float()).mean()
