"""The categorical distribution as an HMM emission family (discrete symbols).

A state ``k`` emits symbol ``x in {0, ..., M-1}`` with probability
``B_kx`` (Rabiner 1989, section II-A, "discrete symbol" observations; seed
004, lectures 2-3). With state posteriors ``gamma_t(k)`` from the
forward-backward smoother, the expected complete-data log-likelihood of the
emissions is ``sum_k sum_m n_km log B_km`` with the sufficient statistics

    n_km = sum_t gamma_t(k) [x_t = m]            (expected emission counts),

a sum over rows, so statistics of sequences, buckets and partitions add.
Maximising it under ``sum_m B_km = 1`` (one Lagrange multiplier per row,
Rabiner 1989 eq. 40c) gives ``B_km = n_km / sum_m n_km``. With a
Dirichlet(``alpha_k``) prior on each row the posterior mode is

    B_km = max(n_km + alpha_km - 1, 0) / sum_m max(n_km + alpha_km - 1, 0),

hmmlearn's rule (``CategoricalHMM._do_mstep``); ``alpha = 1`` is maximum
likelihood and the prior's log-density adds ``sum (alpha - 1) log B`` to the
objective. The Dirichlet helpers here also serve the mixture weights of
:mod:`lateo.families.gaussian_mixture`.

Observations are one symbol per row, stored as a float column (N, 1) like
every HMM input of lateo; padding rows (symbol 0 with zero weight) are
harmless.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp


class CategoricalParams(NamedTuple):
    """``emissionprob`` (K, M): row ``k`` is the symbol distribution of state ``k``."""

    emissionprob: jax.Array


class CategoricalStats(NamedTuple):
    """``counts`` (K,) ``sum_t gamma_t(k)``; ``obs`` (K, M) ``sum_t gamma_t(k) [x_t = m]``."""

    counts: jax.Array
    obs: jax.Array


class CategoricalHyper(NamedTuple):
    """Dirichlet concentrations ``emissionprob_prior`` (K, M) (1 = maximum likelihood)."""

    emissionprob_prior: jax.Array


def dirichlet_map(counts, alpha):
    """Posterior mode of Dirichlet-multinomial rows: ``max(n + alpha - 1, 0)`` normalised.

    Normalised along the last axis. A row whose numerator vanishes (no
    counts and ``alpha <= 1``) becomes uniform, so no NaN can appear.
    """
    num = jnp.maximum(counts + alpha - 1.0, 0.0)
    total = jnp.sum(num, axis=-1, keepdims=True)
    uniform = jnp.full_like(num, 1.0 / num.shape[-1])
    return jnp.where(total > 0, num / jnp.where(total > 0, total, 1.0), uniform)


def log_dirichlet_kernel(probs, alpha):
    """``sum (alpha - 1) log p``: the Dirichlet log-density up to its constant.

    Entries with ``alpha = 1`` contribute nothing (also where ``p = 0``), so
    the flat prior gives exactly 0.
    """
    safe = jnp.where(alpha != 1.0, jnp.log(jnp.where(probs > 0, probs, 1.0)), 0.0)
    return jnp.sum((alpha - 1.0) * safe)


def symbols(X):
    """Integer symbols (N,) from the float column ``X`` (N, 1)."""
    return jnp.round(X[:, 0]).astype(jnp.int32)


@dataclass(frozen=True)
class CategoricalFamily:
    """Categorical emissions over ``n_features`` symbols (an HMM emission family).

    Parameters are :class:`CategoricalParams`; hmmlearn's letter ``"e"``
    frees ``emissionprob``. ``log_prob`` is a gather of ``log B`` (``log 0 =
    -inf`` for impossible symbols), ``stats`` a segment sum of the
    posteriors (never an N x M one-hot array).
    """

    n_features: int
    letters = (("emissionprob", "e"),)

    def log_prob(self, params: CategoricalParams, X):
        """``log B_k,x_t`` for all rows and states: (N, K)."""
        return jnp.log(params.emissionprob).T[symbols(X)]

    def stats(self, X, resp) -> CategoricalStats:
        """Expected counts ``n_km = sum_t resp_tk [x_t = m]`` (one segment sum)."""
        obs = jax.ops.segment_sum(resp, symbols(X), num_segments=self.n_features).T
        return CategoricalStats(resp.sum(axis=0), obs)

    def m_step(self, stats: CategoricalStats, hyper: CategoricalHyper, previous=None, letters="e") -> CategoricalParams:
        del previous, letters  # one parameter: nothing else to hold fixed
        return CategoricalParams(dirichlet_map(stats.obs, hyper.emissionprob_prior))

    def log_prior(self, params: CategoricalParams, hyper: CategoricalHyper):
        return log_dirichlet_kernel(params.emissionprob, hyper.emissionprob_prior)

    def counts(self, stats: CategoricalStats):
        return stats.counts

    def sample(self, key, params: CategoricalParams, states):
        """One symbol per entry of ``states`` (N,), as a float column (N, 1)."""
        log_b = jnp.log(params.emissionprob)[states]
        draws = jax.random.categorical(key, log_b, axis=-1)
        return draws.astype(params.emissionprob.dtype)[:, None]


__all__ = ["CategoricalFamily", "CategoricalHyper", "CategoricalParams", "CategoricalStats",
           "dirichlet_map", "log_dirichlet_kernel"]
