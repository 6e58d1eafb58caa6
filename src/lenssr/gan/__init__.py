"""GAN fine-tuning of the pretrained hybrid: discriminators, adversarial and perceptual
losses, and the training loop.

Public API (import from the submodules; this package imports nothing heavy so the CLI stays
fast): ``lenssr.gan.trainer.train_gan(config, vgg_weights=None, out=None, device=None,
quiet=False) -> Path`` (a normal hybrid checkpoint), ``lenssr.gan.trainer.load_gan_config``,
``lenssr.gan.discriminators.create_discriminator(name, **cfg)``,
``lenssr.gan.losses.AdversarialLoss`` / ``gradient_penalty`` and
``lenssr.gan.perceptual.VGG19Features`` / ``EncoderFeatures``.
"""
