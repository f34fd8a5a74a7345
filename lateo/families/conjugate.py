"""Conjugate priors for MAP-EM: Dirichlet weights, Normal-inverse-Wishart components.

The MAP M-step maximises ``E[log p(X, Z | theta)] + log p(theta)``; with
conjugate priors it stays in closed form (seed 004, Bayesian learning;
Fraley & Raftery 2007, "Bayesian regularization for normal mixture
estimation and model-based clustering", J. Classif. 24:155). With
statistics ``n_k, s1_k, s2_k`` (see :mod:`lateo.families.gaussian`):

* weights, Dirichlet(alpha):  ``w_k = (n_k + alpha_k - 1) / (n + sum alpha - K)``;
* means, ``mu | Sigma ~ N(mu0, Sigma / kappa0)``:
  ``mu_k = (s1_k + kappa0 mu0) / (n_k + kappa0)``;
* covariances, ``Sigma ~ IW(Psi0, nu0)``, the joint mode
  ``Sigma_k = (Psi0 + B_k) / (nu0 + n_k + D + 2)`` with the scatter
  ``B_k = s2_k + kappa0 mu0 mu0^T - (n_k + kappa0) mu_k mu_k^T``.
  Tied: ``(Psi0 + sum_k B_k) / (nu0 + n + K + D + 1)``. Diag: each
  coordinate has its own 1-D version, ``sigma^2 ~ IG(nu0/2, psi0/2)``,
  ``(psi0 + B_kd) / (nu0 + n_k + 3)``. Spherical: ``sigma^2 ~
  IG(nu0 D/2, D psi0/2)``, ``(D psi0 + sum_d B_kd) / (D (n_k + nu0 + 1) + 2)``.

``log_prior`` is the log-density of the same prior (in the ``Sigma``
parametrisation the mode refers to), so the MAP-EM objective
``log p(X | theta) + log p(theta)`` never decreases.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.scipy.special import gammaln, multigammaln

from .gaussian import GaussianStats, log_det_cholesky, scatter_about, uses_vech


class NormalInverseWishart(NamedTuple):
    """Conjugate prior of Gaussian components (arrays, in model coordinates).

    Attributes
    ----------
    mean : (D,) ``mu0``.
    mean_precision : scalar ``kappa0 > 0``.
    degrees_of_freedom : scalar ``nu0`` (> D - 1 for full/tied, > 0 otherwise).
    scale : ``Psi0``: (D, D) full/tied, (D,) diag, scalar spherical.
    """

    mean: jax.Array
    mean_precision: jax.Array
    degrees_of_freedom: jax.Array
    scale: jax.Array


class MixturePrior(NamedTuple):
    """Dirichlet ``weight_concentration`` (K,) (>= 1 for a MAP mode) on the
    weights, and a Normal-inverse-Wishart ``components`` prior."""

    weight_concentration: jax.Array
    components: NormalInverseWishart


def map_weights(counts, alpha):
    """Dirichlet MAP mixture weights ``(n_k + alpha_k - 1) / (n + sum(alpha) - K)``."""
    num = counts + alpha - 1.0
    return num / jnp.sum(num)


def map_means(stats: GaussianStats, prior: NormalInverseWishart):
    """Posterior-mode means ``(s1_k + kappa0 mu0) / (n_k + kappa0)``."""
    kappa = prior.mean_precision
    return (stats.sum_x + kappa * prior.mean) / (stats.counts + kappa)[:, None]


def posterior_scatter(stats: GaussianStats, means, prior: NormalInverseWishart, covariance_type: str):
    """``B_k = sum_i r_ik (x_i - mu_k)(x_i - mu_k)^T + kappa0 (mu_k - mu0)(mu_k - mu0)^T``
    (or its diagonal); at the posterior-mode mean it equals
    ``s2_k + kappa0 mu0 mu0^T - (n_k + kappa0) mu_k mu_k^T``."""
    kappa = prior.mean_precision
    delta = means - prior.mean
    scatter = scatter_about(stats, means, stats.counts, covariance_type)
    if uses_vech(covariance_type):
        return scatter + kappa * delta[:, :, None] * delta[:, None, :]
    return scatter + kappa * delta**2


def map_covariances(stats: GaussianStats, means, prior: NormalInverseWishart, covariance_type: str, reg_covar):
    """Posterior-mode covariances (see the module docstring), plus ``reg_covar``."""
    scatter = posterior_scatter(stats, means, prior, covariance_type)
    nu, psi, n = prior.degrees_of_freedom, prior.scale, stats.counts
    dim, k = means.shape[-1], means.shape[0]
    if covariance_type == "full":
        cov = (psi + scatter) / (nu + n + dim + 2)[:, None, None]
        return cov + reg_covar * jnp.eye(dim, dtype=cov.dtype)
    if covariance_type == "tied":
        cov = (psi + jnp.sum(scatter, axis=0)) / (nu + jnp.sum(n) + k + dim + 1)
        return cov + reg_covar * jnp.eye(dim, dtype=cov.dtype)
    if covariance_type == "diag":
        return (psi + scatter) / (nu + n + 3)[:, None] + reg_covar
    return (dim * psi + jnp.sum(scatter, axis=-1)) / (dim * (n + nu + 1) + 2) + reg_covar


def log_dirichlet(weights, alpha):
    """``log Dir(w | alpha)``."""
    return gammaln(jnp.sum(alpha)) - jnp.sum(gammaln(alpha)) + jnp.sum((alpha - 1.0) * jnp.log(weights))


def _log_normal_means(means, prec_chol, prior: NormalInverseWishart, covariance_type: str):
    """``sum_k log N(mu_k | mu0, (kappa0 P_k)^-1)``."""
    dim = means.shape[-1]
    diff = means - prior.mean
    log_det = jnp.broadcast_to(log_det_cholesky(prec_chol, covariance_type, dim), means.shape[:1])
    if covariance_type == "full":
        quad = jnp.sum(jnp.einsum("kd,kde->ke", diff, prec_chol) ** 2, axis=-1)
    elif covariance_type == "tied":
        quad = jnp.sum((diff @ prec_chol) ** 2, axis=-1)
    elif covariance_type == "diag":
        quad = jnp.sum((diff * prec_chol) ** 2, axis=-1)
    else:
        quad = jnp.sum(diff**2, axis=-1) * prec_chol**2
    kappa = prior.mean_precision
    per = -0.5 * dim * math.log(2 * math.pi) + 0.5 * dim * jnp.log(kappa) + log_det - 0.5 * kappa * quad
    return jnp.sum(per)


def _log_inverse_wishart(prec_chol, psi, nu, dim):
    """``log IW(Sigma | Psi, nu)`` from ``L`` with ``Sigma^-1 = L L^T``; L (..., D, D)."""
    log_det_prec = 2.0 * jnp.sum(jnp.log(jnp.diagonal(prec_chol, axis1=-2, axis2=-1)), axis=-1)
    prec = prec_chol @ jnp.swapaxes(prec_chol, -1, -2)
    trace = jnp.sum(psi * prec, axis=(-2, -1))
    _, log_det_psi = jnp.linalg.slogdet(psi)
    norm = 0.5 * nu * log_det_psi - 0.5 * nu * dim * math.log(2.0) - multigammaln(0.5 * nu, dim)
    return norm + 0.5 * (nu + dim + 1) * log_det_prec - 0.5 * trace


def _log_inverse_gamma(inv_var, shape, scale):
    """``log IG(sigma^2 | shape, scale)`` evaluated from ``1 / sigma^2``."""
    return shape * jnp.log(scale) - gammaln(shape) + (shape + 1.0) * jnp.log(inv_var) - scale * inv_var


def log_prior(weights, means, prec_chol, prior: MixturePrior, covariance_type: str):
    """``log p(theta)``: Dirichlet weights plus Normal-inverse-Wishart components."""
    return log_dirichlet(weights, prior.weight_concentration) + log_niw(
        means, prec_chol, prior.components, covariance_type
    )


def log_niw(means, prec_chol, prior: NormalInverseWishart, covariance_type: str):
    """``sum_k log NIW(mu_k, Sigma_k)`` (the diag/spherical variants of the module docstring)."""
    dim = means.shape[-1]
    nu, psi = prior.degrees_of_freedom, prior.scale
    total = _log_normal_means(means, prec_chol, prior, covariance_type)
    if covariance_type == "full":
        total += jnp.sum(_log_inverse_wishart(prec_chol, psi, nu, dim))
    elif covariance_type == "tied":
        total += _log_inverse_wishart(prec_chol, psi, nu, dim)
    elif covariance_type == "diag":
        total += jnp.sum(_log_inverse_gamma(prec_chol**2, 0.5 * nu, 0.5 * psi))
    else:
        total += jnp.sum(_log_inverse_gamma(prec_chol**2, 0.5 * nu * dim, 0.5 * dim * psi))
    return total


def default_prior_arrays(X_centered_cov, n_components: int, covariance_type: str):
    """Fraley & Raftery (2007) defaults: ``kappa0 = 0.01``, ``nu0 = D + 2``,
    ``Psi0 = cov(X) / K^(2/D)`` (its diagonal for diag, its mean variance for
    spherical), ``alpha = 1`` (no shrinkage of the weights), ``mu0`` = the data
    mean (the origin of the centred coordinates). Returned as a flat dict
    keyed like the estimators' ``prior`` argument."""
    dim = X_centered_cov.shape[0]
    scale = X_centered_cov / n_components ** (2.0 / dim)
    if covariance_type == "diag":
        scale = jnp.diag(scale)
    elif covariance_type == "spherical":
        scale = jnp.mean(jnp.diag(scale))
    return dict(
        weight_concentration=1.0,
        mean=jnp.zeros(dim),
        mean_precision=0.01,
        degrees_of_freedom=dim + 2.0,
        scale=scale,
    )


__all__ = [
    "MixturePrior", "NormalInverseWishart", "default_prior_arrays", "log_niw", "posterior_scatter", "log_dirichlet",
    "log_prior", "map_covariances", "map_means", "map_weights",
]
