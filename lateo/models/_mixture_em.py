"""Gaussian-mixture EM as pure functions on row blocks, and its loop model.

The mixture ``p(x) = sum_k w_k N(x | mu_k, Sigma_k)`` in exponential-family
form (seed 004, lecture 1; Bishop 2006, section 9.2.2): the E-step computes
responsibilities ``r_ik = w_k N(x_i | k) / p(x_i)`` block by block and sums
the statistics ``n_k, s1_k, s2_k`` of :mod:`lateo.families.gaussian`; the
M-step is closed form (maximum likelihood, or MAP with the conjugate prior
of :mod:`lateo.families.conjugate`). The objective is the mean per-sample
log-likelihood (plus ``log p(theta) / n`` under a prior), which EM never
decreases (seed 002: EM increases the likelihood at every step).

All arrays are in *centred* coordinates: the estimator subtracts a shift
(the data mean) from the data, the means and the prior mean, which keeps the
expanded quadratic form of the natural-parameter E-step accurate.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp

from ..core.blocks import Blocks, block_rows, block_sum
from ..families import conjugate, gaussian
from ..families.gaussian import GaussianParams, GaussianStats


class MixtureParams(NamedTuple):
    """Mixture parameters: weights (K,), means (K, D), covariances and their
    precision Cholesky factors (scikit-learn's shapes per covariance type)."""

    weights: jax.Array
    means: jax.Array
    covariances: jax.Array
    precisions_cholesky: jax.Array


class MixtureHyper(NamedTuple):
    """Run-time hyper-parameters: ``reg_covar`` and an optional conjugate prior."""

    reg_covar: jax.Array
    prior: Optional[conjugate.MixturePrior] = None


def weighted_log_prob(X, params: MixtureParams, covariance_type: str):
    """``log w_k + log N(x_i | mu_k, Sigma_k)``, shape (N, K)."""
    gparams = GaussianParams(params.means, params.precisions_cholesky)
    eta, const = gaussian.natural_parameters(gparams, covariance_type)
    feats = gaussian.features(X, covariance_type)
    return feats @ eta.T + (const + jnp.log(params.weights))


def _block_e_step(xb, wb, eta, const, covariance_type: str):
    """Statistics and log-likelihood sum of one block of rows."""
    feats = gaussian.features(xb, covariance_type)
    logp = feats @ eta.T + const
    norm = logsumexp(logp, axis=1)
    resp = jnp.exp(logp - norm[:, None]) * wb[:, None]
    stats = gaussian.weighted_stats(feats, resp, xb.shape[-1])
    return stats, jnp.sum(jnp.where(wb > 0, norm, 0.0))


def e_step(params: MixtureParams, blocks: Blocks, covariance_type: str):
    """Expected statistics ``(n_k, s1_k, s2_k)`` and the total log-likelihood."""
    gparams = GaussianParams(params.means, params.precisions_cholesky)
    eta, const = gaussian.natural_parameters(gparams, covariance_type)
    const = const + jnp.log(params.weights)
    fn = partial(_block_e_step, covariance_type=covariance_type)
    return block_sum(fn, blocks, eta, const)


def m_step(stats: GaussianStats, hyper: MixtureHyper, covariance_type: str) -> MixtureParams:
    """Closed-form M-step: maximum likelihood, or the conjugate posterior mode."""
    if hyper.prior is None:
        counts = stats.counts + 10 * jnp.finfo(stats.counts.dtype).eps
        weights = counts / jnp.sum(counts)
        components = gaussian.m_step(stats, covariance_type, hyper.reg_covar)
    else:
        weights = conjugate.map_weights(stats.counts, hyper.prior.weight_concentration)
        components = gaussian.m_step(stats, covariance_type, hyper.reg_covar, hyper.prior.components)
    return MixtureParams(weights, *components)


def objective(params: MixtureParams, log_lik, n_samples, hyper: MixtureHyper, covariance_type: str):
    """Mean per-sample log-likelihood, plus ``log p(theta) / n`` under a prior."""
    total = log_lik
    if hyper.prior is not None:
        total = total + conjugate.log_prior(
            params.weights, params.means, params.precisions_cholesky, hyper.prior, covariance_type
        )
    return total / n_samples


@dataclass(frozen=True)
class GaussianMixtureEM:
    """The Gaussian mixture as a model of the statistics loop (hashable, static)."""

    covariance_type: str

    def expected_stats(self, key, params, data: Blocks, hyper: MixtureHyper):
        del key  # the exact E-step is deterministic
        stats, log_lik = e_step(params, data, self.covariance_type)
        return stats, objective(params, log_lik, data.n_samples, hyper, self.covariance_type)

    def log_prior(self, params, hyper: MixtureHyper):
        """``log p(theta)`` of the conjugate prior (0 for maximum likelihood)."""
        if hyper.prior is None:
            return jnp.zeros((), params.weights.dtype)
        return conjugate.log_prior(params.weights, params.means, params.precisions_cholesky, hyper.prior,
                                   self.covariance_type)

    def m_step(self, stats, hyper: MixtureHyper, previous=None):
        del previous  # the mixture's M-step needs only the statistics
        return m_step(stats, hyper, self.covariance_type)


def _block_score(xb, params, covariance_type):
    logp = weighted_log_prob(xb, params, covariance_type)
    norm = logsumexp(logp, axis=1)
    return norm, logp - norm[:, None]


@partial(jax.jit, static_argnames=("covariance_type",))
def score_rows(params: MixtureParams, blocks: Blocks, covariance_type: str):
    """Per-row ``log p(x_i)`` and log-responsibilities (padded rows included)."""
    return block_rows(partial(_block_score, covariance_type=covariance_type), blocks, params)


def _block_labels(xb, params, covariance_type):
    return jnp.argmax(weighted_log_prob(xb, params, covariance_type), axis=1)


@partial(jax.jit, static_argnames=("covariance_type",))
def label_rows(params: MixtureParams, blocks: Blocks, covariance_type: str):
    """Most probable component per row, without materialising (N, K) arrays."""
    return block_rows(partial(_block_labels, covariance_type=covariance_type), blocks, params)


def _block_label_stats(xb, wb, labels, n_components, covariance_type):
    resp = jax.nn.one_hot(labels, n_components, dtype=xb.dtype) * wb[:, None]
    return gaussian.weighted_stats(gaussian.features(xb, covariance_type), resp, xb.shape[-1])


def _block_random_stats(xb, wb, block_key, n_components, covariance_type):
    resp = jax.random.uniform(block_key, (xb.shape[0], n_components), dtype=xb.dtype)
    resp = resp / jnp.sum(resp, axis=1, keepdims=True) * wb[:, None]
    return gaussian.weighted_stats(gaussian.features(xb, covariance_type), resp, xb.shape[-1])


@partial(jax.jit, static_argnames=("n_components", "covariance_type"))
def stats_from_labels(blocks: Blocks, labels_blocked, n_components: int, covariance_type: str):
    """Statistics of hard assignments (one-hot responsibilities)."""
    fn = partial(_block_label_stats, n_components=n_components, covariance_type=covariance_type)
    return block_sum(fn, blocks, rows=(labels_blocked,))


@partial(jax.jit, static_argnames=("n_components", "covariance_type"))
def stats_from_random_resp(key, blocks: Blocks, n_components: int, covariance_type: str):
    """Statistics of uniform random responsibilities, normalised per row
    (scikit-learn's ``init_params="random"``), generated block by block."""
    keys = jax.random.split(key, blocks.X.shape[0])
    fn = partial(_block_random_stats, n_components=n_components, covariance_type=covariance_type)
    return block_sum(fn, blocks, rows=(keys,))


def stats_from_points(points, covariance_type: str) -> GaussianStats:
    """Statistics of responsibilities that are one-hot at K chosen rows."""
    feats = gaussian.features(points, covariance_type)
    dim = points.shape[-1]
    return GaussianStats(jnp.ones(points.shape[0], points.dtype), feats[:, :dim], feats[:, dim:])
