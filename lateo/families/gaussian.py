"""The multivariate Gaussian as an exponential family: statistics, M-step, log-density.

For responsibilities ``r_ik`` (mixture components, or HMM state posteriors)
the sufficient statistics of component ``k`` are the sums (seed 004, lecture
1; Bishop 2006, section 9.2)::

    n_k = sum_i r_ik,   s1_k = sum_i r_ik x_i,   s2_k = sum_i r_ik T2(x_i)

with ``T2(x) = vech(x x^T)`` (the upper triangle, for ``full``/``tied``) or
``x * x`` (for ``diag``/``spherical``). In natural-parameter form the
log-density is one inner product with ``T(x) = (x, T2(x))``::

    log N(x | mu, Sigma) = <x, P mu> + <T2(x), eta2(P)> + c,
    c = -1/2 mu^T P mu + log|L| - D/2 log(2 pi),   P = Sigma^-1 = L L^T,

so the E-step of all components is one matrix product ``T(X) eta^T + c`` and
the statistics are another, ``r^T T(X)`` (DESIGN.md section 5). ``L`` is the
Cholesky factor of the precision (scikit-learn's ``precisions_cholesky_``),
obtained by a Cholesky factorisation of each covariance. The expanded
quadratic form loses digits when the data are far from the origin, so callers
centre the data first (the estimators subtract the data mean).

Covariance shapes follow scikit-learn: ``full`` (K, D, D), ``tied`` (D, D),
``diag`` (K, D), ``spherical`` (K,). ``precisions_cholesky`` has the same
shapes (for ``diag``/``spherical`` it is ``1/sigma``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.linalg import solve_triangular

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")


class GaussianStats(NamedTuple):
    """Sums of a weighted Gaussian sample (per component ``k``).

    ``counts`` (K,) = sum r_ik; ``sum_x`` (K, D) = sum r_ik x_i;
    ``sum_xx`` (K, P) = sum r_ik T2(x_i), P = D(D+1)/2 (full, tied) or D.
    """

    counts: jax.Array
    sum_x: jax.Array
    sum_xx: jax.Array


class GaussianParams(NamedTuple):
    """Component means (K, D) and precision Cholesky factors (shape by type)."""

    means: jax.Array
    precisions_cholesky: jax.Array


def uses_vech(covariance_type: str) -> bool:
    """Whether ``T2(x)`` is the full ``vech(x x^T)`` (full, tied) or ``x*x``."""
    return covariance_type in ("full", "tied")


def second_moment_features(X, covariance_type: str):
    """``T2(X)``: ``vech(x x^T)`` rows (upper triangle, row-major) or ``X * X``."""
    if not uses_vech(covariance_type):
        return X * X
    rows, cols = np.triu_indices(X.shape[-1])
    return X[..., rows] * X[..., cols]


def features(X, covariance_type: str):
    """``T(X) = [X, T2(X)]``, shape (N, D + P): the data's sufficient features."""
    return jnp.concatenate([X, second_moment_features(X, covariance_type)], axis=-1)


def unvech(v, dim: int):
    """Symmetric (…, D, D) matrices from their row-major upper triangles (…, P)."""
    rows, cols = np.triu_indices(dim)
    out = jnp.zeros(v.shape[:-1] + (dim, dim), v.dtype)
    out = out.at[..., rows, cols].set(v)
    return out.at[..., cols, rows].set(v)


def vech_coefficients(M, covariance_type: str):
    """Coefficients ``c`` with ``<T2(x), c> = x^T M x`` for symmetric ``M``.

    Off-diagonal entries count twice in the quadratic form. For diag and
    spherical ``M`` is given by its diagonal (…, D).
    """
    if not uses_vech(covariance_type):
        return M
    dim = M.shape[-1]
    rows, cols = np.triu_indices(dim)
    return M[..., rows, cols] * jnp.where(rows == cols, 1.0, 2.0).astype(M.dtype)


def weighted_stats(feats, resp, n_features: int) -> GaussianStats:
    """Statistics from features ``T(X)`` (N, D+P) and weights ``resp`` (N, K).

    One matrix product ``resp^T T(X)``; padding rows must carry zero weight.
    """
    moments = resp.T @ feats
    return GaussianStats(resp.sum(axis=0), moments[:, :n_features], moments[:, n_features:])


def _precision_matrices(prec_chol, covariance_type: str, n_components: int, dim: int):
    """Precisions in the shape the natural parameters need: (K, D, D) or (K, D)."""
    if covariance_type == "full":
        return prec_chol @ jnp.swapaxes(prec_chol, -1, -2)
    if covariance_type == "tied":
        return jnp.broadcast_to(prec_chol @ prec_chol.T, (n_components, dim, dim))
    if covariance_type == "diag":
        return prec_chol**2
    return jnp.broadcast_to((prec_chol**2)[:, None], (n_components, dim))


def log_det_cholesky(prec_chol, covariance_type: str, dim: int):
    """``log|L|`` per component: half the log-determinant of the precision."""
    if covariance_type == "full":
        return jnp.sum(jnp.log(jnp.diagonal(prec_chol, axis1=-2, axis2=-1)), axis=-1)
    if covariance_type == "tied":
        return jnp.sum(jnp.log(jnp.diag(prec_chol)))
    if covariance_type == "diag":
        return jnp.sum(jnp.log(prec_chol), axis=-1)
    return dim * jnp.log(prec_chol)


def natural_parameters(params: GaussianParams, covariance_type: str):
    """``(eta, c)`` with ``log N(x) = T(x) eta^T + c``; eta (K, D+P), c (K,)."""
    means, prec_chol = params
    n_components, dim = means.shape
    prec = _precision_matrices(prec_chol, covariance_type, n_components, dim)
    if uses_vech(covariance_type):
        eta1 = jnp.einsum("kde,ke->kd", prec, means)
    else:
        eta1 = prec * means
    eta2 = vech_coefficients(-0.5 * prec, covariance_type)
    log_det = jnp.broadcast_to(log_det_cholesky(prec_chol, covariance_type, dim), (n_components,))
    const = -0.5 * jnp.sum(eta1 * means, axis=-1) + log_det - 0.5 * dim * math.log(2 * math.pi)
    return jnp.concatenate([eta1, eta2], axis=-1), const


def log_prob(X, params: GaussianParams, covariance_type: str):
    """``log N(x_i | mu_k, Sigma_k)`` for all rows and components: (N, K)."""
    eta, const = natural_parameters(params, covariance_type)
    return features(X, covariance_type) @ eta.T + const


def scatter_about(stats: GaussianStats, means, counts, covariance_type: str):
    """``sum_i r_ik (x_i - m_k)(x_i - m_k)^T = s2 - s1 m^T - m s1^T + n m m^T`` from the sums,
    about any ``means`` ``m`` (K, D): (K, D, D), or its diagonal (K, D) for diag/spherical.

    About the weighted mean ``m = s1 / n`` this is ``s2 - n m m^T``; other
    centres serve frozen means.
    """
    if uses_vech(covariance_type):
        cross = stats.sum_x[:, :, None] * means[:, None, :]
        outer = means[:, :, None] * means[:, None, :]
        return unvech(stats.sum_xx, means.shape[-1]) - cross - jnp.swapaxes(cross, 1, 2) + counts[:, None, None] * outer
    return stats.sum_xx - 2 * stats.sum_x * means + counts[:, None] * means**2


def covariances_from_stats(stats: GaussianStats, means, covariance_type: str, reg_covar):
    """Maximum-likelihood covariances about ``means``, plus ``reg_covar``.

    ``Sigma_k = scatter_k / n_k`` (scikit-learn's
    ``_estimate_gaussian_covariances_*``; ``tied`` pools the scatter over
    components and divides by n; ``spherical`` averages the diagonal).
    ``counts`` are regularised by ``10 eps`` as in scikit-learn so that an
    empty component yields ``reg_covar`` rather than 0/0.
    """
    counts = stats.counts + 10 * jnp.finfo(stats.counts.dtype).eps
    scatter = scatter_about(stats, means, counts, covariance_type)
    if uses_vech(covariance_type):
        eye = jnp.eye(means.shape[-1], dtype=means.dtype)
        if covariance_type == "full":
            return scatter / counts[:, None, None] + reg_covar * eye
        return jnp.sum(scatter, axis=0) / jnp.sum(counts) + reg_covar * eye
    var = scatter / counts[:, None] + reg_covar
    return var if covariance_type == "diag" else jnp.mean(var, axis=-1)


def ml_means(stats: GaussianStats):
    """``mu_k = s1_k / (n_k + 10 eps)`` (scikit-learn's guard for empty components)."""
    counts = stats.counts + 10 * jnp.finfo(stats.counts.dtype).eps
    return stats.sum_x / counts[:, None]


def repair_covariances(covariances, covariance_type: str, reg_floor=0.0, noise=0.0):
    """Replace covariances that are not numerically positive definite, so no NaN escapes.

    A covariance is collapsed when its smallest eigenvalue is at most
    ``noise`` (the rounding level of the sums it was computed from, see
    :func:`rounding_noise`) or ``10 eps`` times its largest. It is then
    replaced by its diagonal clipped at 0 plus a floor (``reg_floor``,
    ``noise`` and machine epsilon, whichever is largest); well-conditioned
    covariances pass unchanged. ``noise`` is a scalar or one value per
    component.
    """
    eps = jnp.finfo(covariances.dtype).eps
    noise = jnp.asarray(noise, covariances.dtype)
    if not uses_vech(covariance_type):
        noise = noise[..., None] if covariance_type == "diag" and noise.ndim else noise
        floor = jnp.maximum(jnp.maximum(reg_floor, eps), noise)
        return jnp.where(covariances > noise, covariances, jnp.maximum(covariances, 0.0) + floor)
    # eigenvalues, not a trial Cholesky: a failed factorisation's NaNs are not a
    # dependable signal inside compiled code
    eig = jnp.linalg.eigvalsh(covariances)
    limit = jnp.maximum(10 * eps * jnp.maximum(eig[..., -1], 0.0), noise)
    bad = ((eig[..., 0] <= limit) | ~jnp.isfinite(eig[..., -1]))[..., None, None]
    floor = jnp.maximum(jnp.maximum(reg_floor, eps), noise)[..., None]
    diag = jnp.maximum(jnp.diagonal(covariances, axis1=-2, axis2=-1), 0.0) + floor
    fallback = diag[..., :, None] * jnp.eye(covariances.shape[-1], dtype=covariances.dtype)
    return jnp.where(bad, fallback, covariances)


def rounding_noise(stats: GaussianStats, covariance_type: str):
    """The rounding level of covariances computed from these sums.

    A covariance is a difference of second moments of size ``s2 / n``;
    whatever is below ``16 D eps max_d(s2_dd / n)`` is cancellation noise
    (a component collapsed on one point, or on duplicates). Per component,
    or one value for ``tied``.
    """
    eps = jnp.finfo(stats.sum_xx.dtype).eps
    dim = stats.sum_x.shape[-1]
    second = stats.sum_xx[:, np.cumsum(np.r_[0, np.arange(dim, 1, -1)])] if uses_vech(covariance_type) else stats.sum_xx
    counts = stats.counts + 10 * eps
    if covariance_type == "tied":
        return 16 * dim * eps * jnp.max(jnp.sum(second, axis=0) / jnp.sum(counts))
    return 16 * dim * eps * jnp.max(second / counts[:, None], axis=-1)


def precisions_cholesky(covariances, covariance_type: str):
    """Precision Cholesky factors of positive-definite covariances, as scikit-learn computes them.

    ``full``/``tied``: ``L = (chol(Sigma)^-1)^T`` (upper triangular), so that
    ``P = L L^T``; ``diag``/``spherical``: ``1/sqrt(Sigma)``. Pass the
    output of :func:`repair_covariances` when positive definiteness is not
    guaranteed.
    """
    if uses_vech(covariance_type):
        chol = jnp.linalg.cholesky(covariances)
        eye = jnp.broadcast_to(jnp.eye(covariances.shape[-1], dtype=covariances.dtype), chol.shape)
        return jnp.swapaxes(solve_triangular(chol, eye, lower=True), -1, -2)
    return 1.0 / jnp.sqrt(covariances)


def covariances_from_precisions_cholesky(prec_chol, covariance_type: str):
    """Inverse map: ``Sigma = (L L^T)^-1 = L^-T L^-1`` or ``1 / L^2``."""
    if uses_vech(covariance_type):
        inv_l = jnp.linalg.inv(prec_chol)  # L may be upper (from covariances) or lower (user precisions)
        return jnp.swapaxes(inv_l, -1, -2) @ inv_l
    return 1.0 / prec_chol**2


class GaussianComponents(NamedTuple):
    """Fitted Gaussian components: means, covariances and precision Cholesky factors."""

    means: jax.Array
    covariances: jax.Array
    precisions_cholesky: jax.Array


def m_step(stats: GaussianStats, covariance_type: str, reg_covar, prior=None, means=None) -> GaussianComponents:
    """Closed-form M-step of K Gaussian components from their statistics.

    Maximum likelihood, or with a Normal-inverse-Wishart ``prior`` (see
    :mod:`lateo.families.conjugate`) its posterior mode; given ``means``
    (frozen), the covariances maximise about them. ``reg_covar`` is added
    to the diagonals, and covariances that are still not positive definite
    are repaired (:func:`repair_covariances`).
    """
    if prior is None:
        means = ml_means(stats) if means is None else means
        cov = covariances_from_stats(stats, means, covariance_type, reg_covar)
    else:
        from . import conjugate  # conjugate builds on this module

        means = conjugate.map_means(stats, prior) if means is None else means
        cov = conjugate.map_covariances(stats, means, prior, covariance_type, reg_covar)
    cov = repair_covariances(cov, covariance_type, reg_covar, rounding_noise(stats, covariance_type))
    return GaussianComponents(means, cov, precisions_cholesky(cov, covariance_type))


def n_covariance_parameters(covariance_type: str, n_components: int, dim: int) -> int:
    """Free covariance parameters (for BIC/AIC), as scikit-learn counts them."""
    return {
        "full": n_components * dim * (dim + 1) // 2,
        "tied": dim * (dim + 1) // 2,
        "diag": n_components * dim,
        "spherical": n_components,
    }[covariance_type]


class GaussianHyper(NamedTuple):
    """Run-time hyper-parameters of Gaussian emissions: ``reg_covar`` and an
    optional Normal-inverse-Wishart prior."""

    reg_covar: jax.Array
    prior: Any = None


@dataclass(frozen=True)
class GaussianFamily:
    """Gaussian emissions, one component per hidden state (an HMM emission family).

    Parameters are :class:`GaussianComponents`; the statistics are
    :class:`GaussianStats` weighted by the state posteriors. hmmlearn's
    letters: ``"m"`` (means), ``"c"`` (covariances).
    """

    covariance_type: str = "diag"
    letters = (("means", "m"), ("covariances", "c"), ("precisions_cholesky", "c"))

    def log_prob(self, params: GaussianComponents, X):
        return log_prob(X, GaussianParams(params.means, params.precisions_cholesky), self.covariance_type)

    def stats(self, X, resp) -> GaussianStats:
        return weighted_stats(features(X, self.covariance_type), resp, X.shape[-1])

    def m_step(self, stats: GaussianStats, hyper: GaussianHyper, previous=None, letters="mc") -> GaussianComponents:
        """New components; with "m" frozen (not in ``letters``) the covariances are
        re-estimated about the previous means, which is the exact M-step."""
        frozen = None if previous is None or "m" in letters else previous.means
        return m_step(stats, self.covariance_type, hyper.reg_covar, hyper.prior, means=frozen)

    def log_prior(self, params: GaussianComponents, hyper: GaussianHyper):
        if hyper.prior is None:
            return jnp.zeros((), params.means.dtype)
        from .conjugate import log_niw

        return log_niw(params.means, params.precisions_cholesky, hyper.prior, self.covariance_type)

    def counts(self, stats: GaussianStats):
        return stats.counts

    def sample(self, key, params: GaussianComponents, states):
        """One observation per entry of ``states`` (N,), shape (N, D)."""
        n_states, dim = params.means.shape
        chol = jnp.linalg.cholesky(full_covariances(params.covariances, self.covariance_type, n_states, dim))
        eps = jax.random.normal(key, (states.shape[0], dim), params.means.dtype)
        return params.means[states] + jnp.einsum("nij,nj->ni", chol[states], eps)


def full_covariances(covariances, covariance_type: str, n_components: int, dim: int):
    """(K, D, D) covariance matrices from any covariance type (hmmlearn's ``covars_`` layout)."""
    if covariance_type == "full":
        return covariances
    if covariance_type == "tied":
        return jnp.broadcast_to(covariances, (n_components, dim, dim))
    if covariance_type == "diag":
        return covariances[..., :, None] * jnp.eye(dim, dtype=covariances.dtype)
    return covariances[:, None, None] * jnp.eye(dim, dtype=covariances.dtype)
