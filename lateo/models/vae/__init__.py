"""Variational auto-encoders (seed 001; seed 004, lecture 7): :class:`VAE` with
Gaussian, Gaussian-mixture (GMVAE) and vector-quantised (VQ-VAE) priors.

Layout: ``_objectives`` (the bounds and losses as pure functions), ``_nets``
(Equinox encoder/decoder/prior modules: MLPs, or small CNNs for images with
``conv=True``), ``_train`` (Adam, minibatches, early stopping, checkpoints),
``estimator`` (the scikit-learn-style class).
"""

from .estimator import VAE

__all__ = ["VAE"]
