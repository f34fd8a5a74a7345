"""Variational inference on any log-density: ``lateo.vi.fit(logdensity, init)``.

Public namespace for :mod:`lateo.inference.vi`: ADVI (Kucukelbir et al. 2017)
with mean-field, full-rank and low-rank Gaussian families, the standard,
sticking-the-landing and analytic-entropy ELBO estimators, unconstraining
transforms (``constraints={"sigma": "positive", "w": "simplex"}``), and
closed-form KL divergences between Gaussians and between uniforms (seed 004).
``logdensity`` has the interface of :func:`lateo.mcmc.sample`.
"""

from .inference.vi import (
    ESTIMATORS,
    FAMILIES,
    TRANSFORMS,
    ApproxPosterior,
    elbo,
    elbo_grad,
    fit,
    gaussian_entropy_tril,
    kl_diag_normal,
    kl_mvn,
    kl_mvn_tril,
    kl_normal,
    kl_uniform,
)

__all__ = [
    "ESTIMATORS", "FAMILIES", "TRANSFORMS", "ApproxPosterior", "elbo", "elbo_grad", "fit", "gaussian_entropy_tril",
    "kl_diag_normal", "kl_mvn", "kl_mvn_tril", "kl_normal", "kl_uniform",
]  # fmt: skip
