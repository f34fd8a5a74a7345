"""Variational Bayesian Gaussian mixture: CAVI as pure functions, and its loop model.

The model (Bishop 2006, section 10.2; Blei & Jordan 2006 for the Dirichlet
process; seed 004, "Bayesian learning + variational inference")::

    pi ~ Dirichlet(alpha0 1_K)              or  v_k ~ Beta(1, alpha0),
                                                pi_k = v_k prod_{j<k} (1 - v_j)
    Lambda_k ~ Wishart(W0, nu0),   mu_k | Lambda_k ~ N(m0, (beta0 Lambda_k)^-1)
    z_i ~ Categorical(pi),         x_i | z_i = k ~ N(mu_k, Lambda_k^-1)

with the mean-field family ``q(Z) q(pi) prod_k q(mu_k, Lambda_k)``. Coordinate
ascent (CAVI) alternates two closed-form updates:

* ``q(Z)`` (the E-step, Bishop eq. 10.46-10.49): ``r_ik ∝ rho_ik`` with
  ``log rho_ik = E[log pi_k] + 1/2 E[log|Lambda_k|] - D/2 log(2 pi)
  - 1/2 (D / beta_k + nu_k (x_i - m_k)^T W_k (x_i - m_k))``. This is the
  log-density of ``N(x | m_k, (nu_k W_k)^-1)`` plus a per-component
  constant, so in exponential-family form it is one matrix product
  ``T(X) eta^T + c`` on features ``T(x) = (x, vech(x x^T))``
  (:mod:`lateo.families.gaussian`, DESIGN.md section 5).
* ``q(pi) q(mu, Lambda)`` (Bishop eq. 10.58, 10.60-10.63; Blei & Jordan
  2006, section 5) from the statistics ``N_k, s1_k, s2_k`` of ``r``:
  ``alpha_k = alpha0 + N_k`` (Dirichlet) or ``(1 + N_k, alpha0 + sum_{j>k}
  N_j)`` (stick-breaking), ``beta_k = beta0 + N_k``, ``m_k = (beta0 m0 + N_k
  xbar_k) / beta_k``, ``nu_k = nu0 + N_k``, ``W_k^-1 = W0^-1 + N_k S_k +
  beta0 N_k / beta_k (xbar_k - m0)(xbar_k - m0)^T``.

Conventions are scikit-learn's (``sklearn.mixture.BayesianGaussianMixture``,
so that the two can be compared to rounding): ``covariances = W_k^-1 /
nu_k`` (the mean of ``q(Lambda_k)`` inverted), ``S_k`` carries
``reg_covar`` on its diagonal, ``N_k`` carries ``10 eps``, and the
``tied``/``diag``/``spherical`` updates are scikit-learn's restricted
Wishart updates (``tied``: one ``nu = nu0 + N / K``; ``diag``/``spherical``:
the Wishart expectations with a diagonal / scalar scale).

The objective is the *full* evidence lower bound. At the optimal
``q(theta)`` for ``r`` (the state after each update) it collapses to
(Bishop eq. 10.70-10.77 after cancellation)::

    ELBO = -sum_ik r_ik log r_ik + log C(alpha0) - log C(alpha)
           - N D / 2 log(2 pi) + K D / 2 log beta0 - D / 2 sum_k log beta_k
           + K log B(W0, nu0) - sum_k log B(W_k, nu_k)

(``C``: Dirichlet normaliser, or the stick-breaking ``prod 1 / B(a_k, b_k)``;
``B``: Wishart normaliser, Bishop eq. B.79). scikit-learn's ``lower_bound_``
keeps only the terms that change during a fit; :func:`dropped_constants`
returns the rest.

Exactness. For ``full`` covariances and ``reg_covar = 0`` this is the ELBO
of the model above, term by term (tested against a direct evaluation of
Bishop eq. 10.70-10.77); a positive ``reg_covar`` adds ``N_k reg_covar I``
to ``W_k^-1``, which moves ``q(Lambda)`` off the exact optimum by
``O(reg_covar)`` (the formula is then evaluated at that ``q``). For
``tied``, ``diag`` and ``spherical`` it is scikit-learn's objective for its
restricted updates plus the same constants (the Wishart normalisers of the
restricted scales; ``tied`` counts its one Wishart ``K`` times, as
scikit-learn does), not the bound of a separately derived model. All arrays are in *centred* coordinates (the estimator
subtracts the data mean from the data and from ``m0``); the ELBO is
invariant under that translation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.scipy.special import betaln, digamma, gammaln

from ..core.blocks import Blocks, block_sum
from ..families import gaussian
from ..families.gaussian import GaussianParams, GaussianStats

PRIOR_TYPES = ("dirichlet_process", "dirichlet_distribution")


class BayesPrior(NamedTuple):
    """Prior hyper-parameters (scikit-learn's names, centred coordinates).

    ``weight_concentration`` alpha0 (scalar), ``mean_precision`` beta0
    (scalar), ``mean`` m0 (D,), ``degrees_of_freedom`` nu0 (scalar) and
    ``covariance`` ``W0^-1``: (D, D) full/tied, (D,) diag, scalar spherical.
    """

    weight_concentration: jax.Array
    mean_precision: jax.Array
    mean: jax.Array
    degrees_of_freedom: jax.Array
    covariance: jax.Array


class CaviHyper(NamedTuple):
    """Run-time hyper-parameters: ``reg_covar``, the prior, and ``stick_breaking``
    (a boolean array: the Dirichlet-process prior if true, else Dirichlet). The
    weight prior is data, not a static argument, so both share one compiled loop."""

    reg_covar: jax.Array
    prior: BayesPrior
    stick_breaking: jax.Array


class VariationalParams(NamedTuple):
    """The factors ``q(pi) q(mu, Lambda)`` in scikit-learn's parametrisation.

    ``weight_concentration`` (2, K): the sticks' Beta parameters ``(a, b)``,
    or for the Dirichlet prior ``alpha`` in row 0; ``mean_precision`` beta (K,); ``means`` m (K, D);
    ``degrees_of_freedom`` nu (K,), or () for tied; ``covariances``
    ``W^-1 / nu`` and ``precisions_cholesky`` (scikit-learn's shapes);
    ``counts`` the effective counts ``N_k`` that produced them.
    """

    weight_concentration: jax.Array
    mean_precision: jax.Array
    means: jax.Array
    degrees_of_freedom: jax.Array
    covariances: jax.Array
    precisions_cholesky: jax.Array
    counts: jax.Array


# ---------------------------------------------------------------- q(theta)
def update_weights(counts, alpha0, stick_breaking):
    """``q(pi)``: sticks ``(1 + N_k, alpha0 + sum_{j>k} N_j)``, or Dirichlet ``alpha0 + N_k`` (row 0)."""
    tail = jnp.cumsum(counts[::-1])[::-1]  # sum_{j>=k} N_j
    first = jnp.where(stick_breaking, 1.0 + counts, alpha0 + counts)
    return jnp.stack([first, alpha0 + tail - counts])


def _wishart_scales(counts, xbar, scatter, beta, prior: BayesPrior, covariance_type: str):
    """``W_k^-1``: ``W0^-1 + N_k S_k + beta0 N_k / beta_k (xbar_k - m0)(xbar_k - m0)^T``
    (Bishop eq. 10.62), in scikit-learn's tied/diag/spherical restrictions."""
    beta0, diff = prior.mean_precision, xbar - prior.mean
    shrink = counts * beta0 / beta
    if covariance_type == "full":
        outer = diff[:, :, None] * diff[:, None, :]
        return prior.covariance + counts[:, None, None] * scatter + shrink[:, None, None] * outer
    if covariance_type == "tied":
        k = counts.shape[0]
        return prior.covariance + scatter * jnp.sum(counts) / k + (diff.T * shrink) @ diff / k
    if covariance_type == "diag":
        return prior.covariance + counts[:, None] * scatter + shrink[:, None] * diff**2
    return prior.covariance + counts * scatter + shrink * jnp.mean(diff**2, axis=1)


def m_step(stats: GaussianStats, hyper: CaviHyper, covariance_type: str) -> VariationalParams:
    """The CAVI update of ``q(pi) q(mu, Lambda)`` from the statistics of ``q(Z)``.

    ``S_k`` (with ``reg_covar``) comes from
    :func:`lateo.families.gaussian.covariances_from_stats`, the same
    function as the maximum-likelihood M-step.
    """
    prior = hyper.prior
    counts = stats.counts + 10 * jnp.finfo(stats.counts.dtype).eps
    xbar = gaussian.ml_means(stats)
    scatter = gaussian.covariances_from_stats(stats, xbar, covariance_type, hyper.reg_covar)
    beta = prior.mean_precision + counts
    means = (prior.mean_precision * prior.mean + counts[:, None] * xbar) / beta[:, None]
    if covariance_type == "tied":
        nu = prior.degrees_of_freedom + jnp.sum(counts) / counts.shape[0]
    else:
        nu = prior.degrees_of_freedom + counts
    scale_inv = _wishart_scales(counts, xbar, scatter, beta, prior, covariance_type)
    nu_b = nu if covariance_type in ("tied", "spherical") else nu[:, None, None] if covariance_type == "full" else nu[:, None]
    cov = scale_inv / nu_b
    return VariationalParams(
        update_weights(counts, prior.weight_concentration, hyper.stick_breaking), beta, means, nu, cov,
        gaussian.precisions_cholesky(cov, covariance_type), counts,
    )


# -------------------------------------------------------------------- q(Z)
def expected_log_weights(weight_concentration, stick_breaking):
    """``E[log pi_k]``: for sticks ``E[log v_k] + sum_{j<k} E[log(1 - v_j)]`` (Blei &
    Jordan 2006, eq. 22), for the Dirichlet ``psi(alpha_k) - psi(sum alpha)``."""
    a, b = weight_concentration
    psi_ab = digamma(a + b)
    log_rest = digamma(b) - psi_ab
    sticks = digamma(a) - psi_ab + jnp.concatenate([jnp.zeros(1, a.dtype), jnp.cumsum(log_rest)[:-1]])
    return jnp.where(stick_breaking, sticks, digamma(a) - digamma(jnp.sum(a)))


def expected_log_det(params: VariationalParams, covariance_type: str, dim: int):
    """``E[log|Lambda_k|] = sum_i psi((nu_k - i) / 2) + D log 2 + log|W_k|`` (Bishop eq. 10.65)."""
    nu = params.degrees_of_freedom
    psi = jnp.sum(digamma(0.5 * (nu[..., None] - jnp.arange(dim, dtype=nu.dtype))), axis=-1)
    log_det_w = 2 * gaussian.log_det_cholesky(params.precisions_cholesky, covariance_type, dim) - dim * jnp.log(nu)
    return psi + dim * math.log(2.0) + log_det_w


def log_rho_parameters(params: VariationalParams, covariance_type: str, stick_breaking):
    """``(eta, c)`` with ``log rho_ik = T(x_i) eta_k^T + c_k`` (Bishop eq. 10.46).

    ``eta`` and the Gaussian part of ``c`` are those of ``N(x | m_k, (nu_k
    W_k)^-1)``; the rest of ``c`` is ``E[log pi_k] + 1/2 (E[log|Lambda_k|] -
    log|nu_k W_k| - D / beta_k)``.
    """
    eta, const = gaussian.natural_parameters(GaussianParams(params.means, params.precisions_cholesky), covariance_type)
    return eta, const + extra_log_constants(params, covariance_type, stick_breaking)


def extra_log_constants(params: VariationalParams, covariance_type: str, stick_breaking):
    """The per-component constants that turn ``log N(x | m_k, (nu_k W_k)^-1)`` into ``log rho_ik``."""
    dim = params.means.shape[-1]
    log_det_nu_w = 2 * gaussian.log_det_cholesky(params.precisions_cholesky, covariance_type, dim)
    gauss = 0.5 * (expected_log_det(params, covariance_type, dim) - log_det_nu_w - dim / params.mean_precision)
    return expected_log_weights(params.weight_concentration, stick_breaking) + gauss


def _block_e_step(fb, wb, eta, const, dim: int, covariance_type: str, features_given: bool):
    """Statistics of ``q(Z)`` and ``sum r log r`` on one block (features or rows)."""
    feats = fb if features_given else gaussian.features(fb, covariance_type)
    logp = feats @ eta.T + const
    top = jnp.max(logp, axis=1, keepdims=True)
    e = jnp.exp(logp - top)
    total = jnp.sum(e, axis=1, keepdims=True)
    resp = e / total * wb[:, None]
    log_resp = logp - top - jnp.log(total)
    return gaussian.weighted_stats(feats, resp, dim), jnp.sum(resp * log_resp)


def e_step(params: VariationalParams, data: Blocks, covariance_type: str, stick_breaking, features_given: bool):
    """The update of ``q(Z)``, returned as its statistics ``(N_k, s1_k, s2_k)`` and ``sum_ik r_ik log r_ik``."""
    eta, const = log_rho_parameters(params, covariance_type, stick_breaking)
    fn = partial(_block_e_step, dim=params.means.shape[-1], covariance_type=covariance_type,
                 features_given=features_given)
    return block_sum(fn, data, eta, const)


# -------------------------------------------------------------------- ELBO
def wishart_log_norm(nu, half_log_det_w, dim: int):
    """``log B(W, nu) + D (D - 1) / 4 log(pi)`` (Bishop eq. B.79 without its pi term, as
    scikit-learn's ``_log_wishart_norm``), from ``1/2 log|W|``."""
    gammas = jnp.sum(gammaln(0.5 * (nu[..., None] - jnp.arange(dim, dtype=nu.dtype))), axis=-1)
    return -(nu * half_log_det_w + nu * dim * 0.5 * math.log(2.0) + gammas)


def sklearn_lower_bound(params: VariationalParams, sum_r_log_r, covariance_type: str, stick_breaking):
    """scikit-learn's ``_compute_lower_bound``: the ELBO without its constant terms."""
    n_components, dim = params.means.shape
    nu = params.degrees_of_freedom
    half_log_det_w = gaussian.log_det_cholesky(params.precisions_cholesky, covariance_type, dim) - 0.5 * dim * jnp.log(nu)
    log_wishart = jnp.sum(jnp.broadcast_to(wishart_log_norm(nu, half_log_det_w, dim), (n_components,)))
    alpha = params.weight_concentration[0]
    log_norm_weight = jnp.where(stick_breaking, -jnp.sum(betaln(*params.weight_concentration)),
                                gammaln(jnp.sum(alpha)) - jnp.sum(gammaln(alpha)))
    return -sum_r_log_r - log_wishart - log_norm_weight - 0.5 * dim * jnp.sum(jnp.log(params.mean_precision))


def _half_log_det_prior_w(prior: BayesPrior, covariance_type: str, dim: int):
    """``1/2 log|W0|`` from the prior covariance ``W0^-1``."""
    if gaussian.uses_vech(covariance_type):
        return -0.5 * jnp.linalg.slogdet(prior.covariance)[1]
    if covariance_type == "diag":
        return -0.5 * jnp.sum(jnp.log(prior.covariance))
    return -0.5 * dim * jnp.log(prior.covariance)


def dropped_constants(prior: BayesPrior, n_samples, n_components: int, dim: int, covariance_type: str, stick_breaking):
    """``ELBO - scikit-learn's lower bound``: the terms that do not change during a fit.

    ``log C(alpha0)`` of the weight prior (Dirichlet: ``log Gamma(K alpha0) -
    K log Gamma(alpha0)``; stick-breaking: ``-K log B(1, alpha0) = K log
    alpha0``), the likelihood's ``-N D / 2 log(2 pi)``, the mean prior's
    ``K D / 2 log beta0``, and ``K log B(W0, nu0) + K D (D - 1) / 4 log(pi)``
    (the prior's Wishart normaliser, plus the ``log(pi)`` term scikit-learn
    strips from each posterior one). The same formula serves the tied, diag
    and spherical restrictions (``|W0|`` of the diagonal / scalar scale).
    """
    alpha0, beta0, nu0 = prior.weight_concentration, prior.mean_precision, prior.degrees_of_freedom
    weights = jnp.where(stick_breaking, n_components * jnp.log(alpha0),
                        gammaln(n_components * alpha0) - n_components * gammaln(alpha0))
    gauss = -0.5 * n_samples * dim * math.log(2 * math.pi) + 0.5 * n_components * dim * jnp.log(beta0)
    wishart = n_components * wishart_log_norm(nu0, _half_log_det_prior_w(prior, covariance_type, dim), dim)
    return weights + gauss + wishart


def elbo(params: VariationalParams, sum_r_log_r, hyper: CaviHyper, n_samples, covariance_type: str):
    """The full evidence lower bound at ``(q(Z), q(theta))`` with ``q(theta)`` updated from ``q(Z)``."""
    n_components, dim = params.means.shape
    const = dropped_constants(hyper.prior, n_samples, n_components, dim, covariance_type, hyper.stick_breaking)
    return sklearn_lower_bound(params, sum_r_log_r, covariance_type, hyper.stick_breaking) + const


@dataclass(frozen=True)
class BayesianMixtureCAVI:
    """CAVI for the Bayesian Gaussian mixture as a model of the statistics loop.

    ``expected_stats`` is the ``q(Z)`` update; its objective is the ELBO at
    that ``q(Z)`` and the ``q(theta)`` it implies (scikit-learn's order:
    E-step, M-step, bound), so the history matches scikit-learn's
    ``lower_bounds_`` plus :func:`dropped_constants`. ``features_given``
    says whether the data blocks already hold ``T(X)`` (computed once).
    """

    covariance_type: str
    features_given: bool = True

    def expected_stats(self, key, params, data: Blocks, hyper: CaviHyper):
        del key  # CAVI is deterministic
        stats, sum_r_log_r = e_step(params, data, self.covariance_type, hyper.stick_breaking, self.features_given)
        new = self.m_step(stats, hyper)
        return stats, elbo(new, sum_r_log_r, hyper, data.n_samples, self.covariance_type)

    def m_step(self, stats, hyper: CaviHyper, previous=None):
        del previous
        return m_step(stats, hyper, self.covariance_type)


@partial(jax.jit, static_argnames=("covariance_type",))
def fit_summary(params: VariationalParams, hyper: CaviHyper, n_samples, covariance_type: str):
    """What an estimator keeps besides ``q(theta)``: the constants of ``log rho``
    (:func:`extra_log_constants`) and the ELBO's :func:`dropped_constants`."""
    n_components, dim = params.means.shape
    sb = hyper.stick_breaking
    return (extra_log_constants(params, covariance_type, sb),
            dropped_constants(hyper.prior, n_samples, n_components, dim, covariance_type, sb))


@partial(jax.jit, static_argnames=("covariance_type",))
def feature_blocks(blocks: Blocks, covariance_type: str) -> Blocks:
    """Blocks of ``T(X)`` instead of ``X``, computed once for the whole fit."""
    return blocks._replace(X=gaussian.features(blocks.X, covariance_type))


def _block_resp_stats(fb, wb, rb, dim: int, covariance_type: str, features_given: bool):
    feats = fb if features_given else gaussian.features(fb, covariance_type)
    return gaussian.weighted_stats(feats, rb * wb[:, None], dim)


@partial(jax.jit, static_argnames=("dim", "covariance_type", "features_given"))
def stats_from_resp(data: Blocks, resp_blocked, dim: int, covariance_type: str, features_given: bool) -> GaussianStats:
    """Statistics of user-given responsibilities (padded to the blocks' layout)."""
    fn = partial(_block_resp_stats, dim=dim, covariance_type=covariance_type, features_given=features_given)
    return block_sum(fn, data, rows=(resp_blocked,))
