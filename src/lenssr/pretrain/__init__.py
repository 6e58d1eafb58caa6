"""Self-supervised denoising-autoencoder pretraining of the hybrid on LR images alone.

Public API (import from the submodules; this package imports nothing heavy so the CLI stays
fast): ``lenssr.pretrain.pretrain.pretrain(config, out=None, device=None, quiet=False) ->
Path`` (a normal hybrid checkpoint for ``lenssr train --init``),
``lenssr.pretrain.pretrain.load_pretrain_config(path, overrides)``, and the noise models of
:mod:`lenssr.pretrain.noise` (``gaussian``, ``uniform``, ``salt_pepper``, ``poisson``,
``NoiseSampler``).
"""
