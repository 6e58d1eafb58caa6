"""Discriminators for GAN fine-tuning, one file per architecture, and their registry.

``create_discriminator("patchgan" | "srgan", **config)``; ``list_discriminators()``.
"""

from __future__ import annotations

# Importing the architecture files registers them.
from lenssr.gan.discriminators import patchgan_arch, srgan_arch
from lenssr.gan.discriminators.patchgan_arch import PatchGANDiscriminator
from lenssr.gan.discriminators.registry import (
    create_discriminator,
    list_discriminators,
    register_discriminator,
)
from lenssr.gan.discriminators.srgan_arch import SRGANDiscriminator

__all__ = [
    "PatchGANDiscriminator",
    "SRGANDiscriminator",
    "create_discriminator",
    "list_discriminators",
    "patchgan_arch",
    "register_discriminator",
    "srgan_arch",
]
