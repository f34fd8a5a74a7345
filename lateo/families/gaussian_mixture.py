"""Gaussian-mixture emissions (hmmlearn's GMMHMM) on the Gaussian family.

State ``k`` emits ``x`` from a mixture of ``M`` Gaussians,
``b_k(x) = sum_m w_km N(x | mu_km, Sigma_km)`` (Rabiner 1989, section
IV-A, eqs. 49-54; seed 004, lectures 2-3). Baum-Welch treats the pair
(state, mixture component) as the latent variable: the joint posterior is

    r_t(k, m) = gamma_t(k) w_km N(x_t | mu_km, Sigma_km) / b_k(x_t),

and the complete-data log-likelihood is that of ``K*M`` Gaussian
components weighted by ``r``. So this module reuses
:mod:`lateo.families.gaussian` on the ``K*M`` pairs -- features ``T(x)``,
natural parameters (the E-step is one matrix product), weighted
statistics, the M-step and the covariance repair -- and adds only the
mixture bookkeeping. The M-step (Rabiner 1989, eqs. 52-54; seed 004,
lecture 2, "Optimizing Q_3, GMM case") is

    w_km = n_km / n_k,   mu_km = s1_km / n_km,
    Sigma_km = sum_t r_t(k, m) (x_t - mu_km)(x_t - mu_km)^T / n_km

with ``n_km = sum_t r_t(k, m)``, ``n_k = sum_m n_km`` and the *new* means
``mu_km`` in the scatter. Covariance types
follow hmmlearn's GMMHMM: ``full`` (K, M, D, D), ``diag`` (K, M, D),
``spherical`` (K, M), and ``tied`` (K, D, D): one covariance per *state*,
shared by its ``M`` components (pooled scatter over ``m``, divided by
``n_k``). A tied state's pairs are evaluated as ``full`` components.

Priors (MAP-EM; hmmlearn's ``_do_mstep`` semantics): Dirichlet
``weights_prior`` on each row of ``w`` (``max(n_km + alpha - 1, 0)``
normalised; hmmlearn does not clip at 0, which only matters for ``alpha <
1``), and per pair a Normal prior
``mu_km ~ N(mu0_km, Sigma_km / kappa_km)`` with an inverse-Wishart or
inverse-gamma prior on the covariance, held as
:class:`lateo.families.conjugate.NormalInverseWishart` arrays with leading
(K, M) axes and solved by :func:`lateo.families.conjugate.map_means` /
:func:`~lateo.families.conjugate.map_covariances` pair by pair (``diag``
feature by feature, so each variance has its own prior). ``prior=None``
is maximum likelihood (the default).

hmmlearn 0.3.3 centres the covariance statistics on the *previous* means
(``BaseGMMHMM._accumulate_sufficient_statistics``), which makes its update a
conditional-maximisation step: ``Sigma_hmmlearn = Sigma_EM + (mu_new -
mu_old)(mu_new - mu_old)^T`` (for ML). lateo's M-step is the exact joint
maximiser. A component that receives no responsibility gets weight 0, the
mean of the (centred) data and a ``reg_covar`` covariance: finite, and
never used again (hmmlearn produces NaN there); a state that no data visit
keeps its parameters (:mod:`lateo.models._hmm_em`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp

from . import conjugate, gaussian
from .categorical import dirichlet_map, log_dirichlet_kernel
from .conjugate import NormalInverseWishart
from .gaussian import GaussianParams, GaussianStats

COVARIANCE_TYPES = gaussian.COVARIANCE_TYPES


class GaussianMixtureParams(NamedTuple):
    """``weights`` (K, M), ``means`` (K, M, D), ``covariances`` and their
    ``precisions_cholesky`` (full (K, M, D, D), diag (K, M, D), spherical
    (K, M), tied (K, D, D))."""

    weights: jax.Array
    means: jax.Array
    covariances: jax.Array
    precisions_cholesky: jax.Array


class GaussianMixtureHyper(NamedTuple):
    """``weights_prior`` (K, M) Dirichlet concentrations, ``reg_covar`` added to
    the covariance diagonals, and an optional per-pair
    :class:`~lateo.families.conjugate.NormalInverseWishart` ``prior``
    (``mean`` (K, M, D), ``mean_precision`` (K, M), ``degrees_of_freedom``
    and ``scale`` shaped as the covariances, without the ``D`` axes: full
    (K, M) / (K, M, D, D), diag (K, M, D) / (K, M, D), spherical (K, M) /
    (K, M), tied (K,) / (K, D, D))."""

    weights_prior: jax.Array
    reg_covar: jax.Array
    prior: Any = None


def component_type(covariance_type: str) -> str:
    """Covariance type of the (state, mixture) pairs: a tied state's pairs are full."""
    return "full" if covariance_type == "tied" else covariance_type


def _flat(a, n_pairs):
    return a.reshape((n_pairs,) + a.shape[2:])


def pair_components(params: GaussianMixtureParams, covariance_type: str) -> GaussianParams:
    """The ``K*M`` pairs as Gaussian components (tied covariances repeated per pair)."""
    n_states, n_mix, dim = params.means.shape
    prec = params.precisions_cholesky
    if covariance_type == "tied":
        prec = jnp.broadcast_to(prec[:, None], (n_states, n_mix, dim, dim))
    return GaussianParams(_flat(params.means, n_states * n_mix), _flat(prec, n_states * n_mix))


def pair_log_prob(params: GaussianMixtureParams, feats, covariance_type: str):
    """``log w_km + log N(x_t | mu_km, Sigma_km)`` (N, K, M) from features ``T(X)``."""
    eta, const = gaussian.natural_parameters(pair_components(params, covariance_type), component_type(covariance_type))
    return (feats @ eta.T + const).reshape((feats.shape[0],) + params.weights.shape) + jnp.log(params.weights)


def _ml_means_covariances(stats: GaussianStats, covariance_type: str, reg_covar, n_mix: int, means=None):
    """Maximum likelihood on the flat pairs (tied: pooled per state), about ``means`` if given."""
    means = gaussian.ml_means(stats) if means is None else means
    if covariance_type != "tied":
        return means, gaussian.covariances_from_stats(stats, means, covariance_type, reg_covar)
    per_state = jax.tree.map(lambda a: a.reshape((-1, n_mix) + a.shape[1:]), (stats, means))
    covs = jax.vmap(lambda s, m: gaussian.covariances_from_stats(s, m, "tied", reg_covar))(*per_state)
    return means, covs


def _map_component(counts, sum_x, sum_xx, prior: NormalInverseWishart, covariance_type: str, reg_covar):
    """Posterior-mode mean and covariance of one component (arrays without the K axis)."""
    stats = GaussianStats(counts[None], sum_x[None], sum_xx[None])
    means = conjugate.map_means(stats, prior)
    return means[0], conjugate.map_covariances(stats, means, prior, covariance_type, reg_covar)[0]


def _map_mean_scatter(counts, sum_x, sum_xx, prior: NormalInverseWishart):
    """Posterior-mode mean of one full component and its scatter ``S + kappa (mu - mu0)(mu - mu0)^T``."""
    stats = GaussianStats(counts[None], sum_x[None], sum_xx[None])
    means = conjugate.map_means(stats, prior)
    return means[0], conjugate.posterior_scatter(stats, means, prior, "full")[0]


def _map_diag(counts, stats: GaussianStats, prior: NormalInverseWishart, reg_covar, n_pairs: int):
    """Diagonal covariances as ``D`` one-dimensional problems per pair (a prior per variance)."""
    flat = NormalInverseWishart(_flat(prior.mean, n_pairs)[..., None], _flat(prior.mean_precision, n_pairs),
                                _flat(prior.degrees_of_freedom, n_pairs), _flat(prior.scale, n_pairs)[..., None])
    one = partial(_map_component, covariance_type="diag", reg_covar=reg_covar)
    per_feature = jax.vmap(one, in_axes=(None, 0, 0, NormalInverseWishart(0, None, 0, 0)))
    means, covs = jax.vmap(per_feature)(counts, stats.sum_x[..., None], stats.sum_xx[..., None], flat)
    return means[..., 0], covs[..., 0]


def _map_tied(counts, stats: GaussianStats, prior: NormalInverseWishart, reg_covar, n_mix: int):
    """hmmlearn's tied-within-state mode ``(Psi_k + sum_m B_km) / (nu_k + n_k + M + D + 1)``
    (conjugate's tied formula with ``M`` components per state)."""
    n_pairs, dim = stats.sum_x.shape
    flat = NormalInverseWishart(_flat(prior.mean, n_pairs), _flat(prior.mean_precision, n_pairs), 0.0, 0.0)
    means, scatter = jax.vmap(_map_mean_scatter, in_axes=(0, 0, 0, NormalInverseWishart(0, 0, None, None)))(
        counts, stats.sum_x, stats.sum_xx, flat)
    scatter = scatter.reshape(-1, n_mix, dim, dim).sum(axis=1)
    denom = prior.degrees_of_freedom + counts.reshape(-1, n_mix).sum(axis=1) + n_mix + dim + 1
    return means, (prior.scale + scatter) / denom[:, None, None] + reg_covar * jnp.eye(dim, dtype=counts.dtype)


def _map_means_covariances(stats: GaussianStats, prior: NormalInverseWishart, covariance_type: str, reg_covar,
                           n_mix: int):
    """MAP on the flat pairs (:mod:`lateo.families.conjugate`, pair by pair)."""
    n_pairs = stats.sum_x.shape[0]
    counts = stats.counts + 10 * jnp.finfo(stats.counts.dtype).eps  # scikit-learn's guard: no 0/0
    if covariance_type == "diag":
        return _map_diag(counts, stats, prior, reg_covar, n_pairs)
    if covariance_type == "tied":
        return _map_tied(counts, stats, prior, reg_covar, n_mix)
    flat = jax.tree.map(lambda a: _flat(a, n_pairs), prior)
    one = partial(_map_component, covariance_type=covariance_type, reg_covar=reg_covar)
    return jax.vmap(one)(counts, stats.sum_x, stats.sum_xx, flat)


def m_step(stats: GaussianStats, hyper: GaussianMixtureHyper, covariance_type: str, n_mix: int, frozen_means=None):
    """Weights, means and covariances from the pair statistics (ML, or MAP with ``hyper.prior``).

    ``frozen_means`` (K, M, D): maximum-likelihood covariances about them
    (under a prior the posterior-mode means are used for the covariances).
    """
    n_pairs, dim = stats.sum_x.shape
    n_states = n_pairs // n_mix
    weights = dirichlet_map(stats.counts.reshape(n_states, n_mix), hyper.weights_prior)
    if hyper.prior is None:
        flat = None if frozen_means is None else frozen_means.reshape(n_pairs, dim)
        means, covs = _ml_means_covariances(stats, covariance_type, hyper.reg_covar, n_mix, flat)
    else:
        means, covs = _map_means_covariances(stats, hyper.prior, covariance_type, hyper.reg_covar, n_mix)
    ctype = component_type(covariance_type)
    covs = gaussian.repair_covariances(covs, ctype, hyper.reg_covar)
    prec = gaussian.precisions_cholesky(covs, ctype)
    if covariance_type != "tied":  # (K*M, ...) -> (K, M, ...); tied is already (K, D, D)
        covs, prec = (a.reshape((n_states, n_mix) + a.shape[1:]) for a in (covs, prec))
    return GaussianMixtureParams(weights, means.reshape(n_states, n_mix, dim), covs, prec)


def log_prior_kernel(params: GaussianMixtureParams, prior: NormalInverseWishart, covariance_type: str):
    """``log p(mu, Sigma)`` up to constants, the prior whose mode the M-step returns.

    Per pair ``-kappa/2 (mu - mu0)^T P (mu - mu0)`` plus, per covariance,
    ``c/2 log|P| - 1/2 tr(Psi P)`` with ``P = Sigma^-1`` and ``c`` the
    offset of the MAP denominators of :mod:`lateo.families.conjugate`
    (full ``nu + D + 2``, diag ``nu + 3`` per variance, spherical ``D(nu +
    1) + 2`` with ``tr(Psi P) = D psi p``, tied ``nu + M + D + 1``). It is
    finite, and 0 at the maximum-likelihood values (``Psi = 0``, ``kappa =
    0``, ``c = 0``), even where the prior is improper.
    """
    n_states, n_mix, dim = params.means.shape
    delta = params.means - prior.mean
    chol, kappa = params.precisions_cholesky, prior.mean_precision
    if covariance_type in ("diag", "spherical"):
        p = chol**2
        if covariance_type == "diag":
            c, psi, sq, kappa = prior.degrees_of_freedom + 3.0, prior.scale, delta**2, kappa[..., None]
        else:
            c, psi, sq = dim * (prior.degrees_of_freedom + 1.0) + 2.0, dim * prior.scale, jnp.sum(delta**2, -1)
        return jnp.sum(0.5 * c * jnp.log(p) - 0.5 * (psi + kappa * sq) * p)
    prec = chol @ jnp.swapaxes(chol, -1, -2)
    log_det = gaussian.log_det_cholesky(chol, "full", dim)  # log|L| = 1/2 log|P|
    extra = n_mix - 1.0 if covariance_type == "tied" else 0.0
    cov_term = jnp.sum((prior.degrees_of_freedom + dim + 2.0 + extra) * log_det - 0.5 * jnp.sum(prior.scale * prec, (-2, -1)))
    if covariance_type == "tied":
        chol = jnp.broadcast_to(chol[:, None], (n_states, n_mix, dim, dim))
    quad = jnp.sum(jnp.einsum("kmd,kmde->kme", delta, chol) ** 2, axis=-1)
    return cov_term - 0.5 * jnp.sum(kappa * quad)


@dataclass(frozen=True)
class GaussianMixtureFamily:
    """Gaussian-mixture emissions with ``n_mix`` components per state (an HMM emission family).

    hmmlearn's letters: ``"w"`` weights, ``"m"`` means, ``"c"``
    covariances. Its statistics depend on the current parameters (the
    within-state responsibilities), so the family defines
    ``stats_given(params, X, resp)``; ``stats(X, resp)`` takes pair
    responsibilities (N, K*M). Data are expected centred (the estimator
    subtracts the data mean), as for :class:`lateo.families.gaussian.GaussianFamily`.
    """

    n_mix: int = 1
    covariance_type: str = "diag"
    letters = (("weights", "w"), ("means", "m"), ("covariances", "c"), ("precisions_cholesky", "c"))

    def features(self, X):
        return gaussian.features(X, component_type(self.covariance_type))

    def log_prob(self, params: GaussianMixtureParams, X):
        """``log b_k(x_t) = logsumexp_m (log w_km + log N(x_t | mu_km, Sigma_km))``: (N, K)."""
        return logsumexp(pair_log_prob(params, self.features(X), self.covariance_type), axis=-1)

    def stats_given(self, params: GaussianMixtureParams, X, resp) -> GaussianStats:
        """Pair statistics with ``r_t(k, m) = resp_tk p(m | x_t, k)``."""
        feats = self.features(X)
        joint = pair_log_prob(params, feats, self.covariance_type)
        norm = logsumexp(joint, axis=-1, keepdims=True)
        within = jnp.where(jnp.isfinite(norm), jnp.exp(joint - jnp.where(jnp.isfinite(norm), norm, 0.0)), 0.0)
        pair_resp = (resp[:, :, None] * within).reshape(X.shape[0], -1)
        return gaussian.weighted_stats(feats, pair_resp, X.shape[-1])

    def stats(self, X, resp) -> GaussianStats:
        """Pair statistics from pair responsibilities ``resp`` (N, K*M)."""
        return gaussian.weighted_stats(self.features(X), resp, X.shape[-1])

    def m_step(self, stats: GaussianStats, hyper: GaussianMixtureHyper, previous=None,
               letters="mcw") -> GaussianMixtureParams:
        """New weights, means and covariances; with "m" frozen (not in ``letters``) and no
        prior, the covariances are re-estimated about the previous means (the exact M-step)."""
        frozen = None if previous is None or "m" in letters else previous.means
        return m_step(stats, hyper, self.covariance_type, self.n_mix, frozen)

    def log_prior(self, params: GaussianMixtureParams, hyper: GaussianMixtureHyper):
        total = log_dirichlet_kernel(params.weights, hyper.weights_prior)
        if hyper.prior is None:
            return total
        return total + log_prior_kernel(params, hyper.prior, self.covariance_type)

    def counts(self, stats: GaussianStats):
        """Expected state occupancies ``n_k = sum_m n_km``: (K,)."""
        return stats.counts.reshape(-1, self.n_mix).sum(axis=-1)

    def sample(self, key, params: GaussianMixtureParams, states):
        """One observation per entry of ``states`` (N,): a component, then its Gaussian."""
        n_states, n_mix, dim = params.means.shape
        k_mix, k_obs = jax.random.split(key)
        mix = jax.random.categorical(k_mix, jnp.log(params.weights)[states], axis=-1)
        covs = params.covariances
        if self.covariance_type == "tied":
            covs = jnp.broadcast_to(covs[:, None], (n_states, n_mix, dim, dim))
        ctype = component_type(self.covariance_type)
        comps = gaussian.GaussianComponents(_flat(params.means, n_states * n_mix),
                                            _flat(covs, n_states * n_mix), None)
        return gaussian.GaussianFamily(ctype).sample(k_obs, comps, states * n_mix + mix)


__all__ = ["COVARIANCE_TYPES", "GaussianMixtureFamily", "GaussianMixtureHyper", "GaussianMixtureParams",
           "component_type", "log_prior_kernel", "m_step", "pair_components", "pair_log_prob"]
