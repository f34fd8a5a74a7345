"""Independent Poisson counts as an HMM emission family.

State ``k`` emits a vector of ``D`` counts, independent given the state,
``x_d ~ Poisson(lambda_kd)``::

    log p(x | k) = sum_d x_d log lambda_kd - sum_d lambda_kd - sum_d log x_d!

an exponential family with natural parameter ``log lambda`` and sufficient
statistic ``x``, so the E-step is one matrix product ``X (log lambda)^T``
(DESIGN.md section 1). With state posteriors ``gamma_t(k)`` the statistics
are ``n_k = sum_t gamma_t(k)`` and ``s_k = sum_t gamma_t(k) x_t`` (seed
004, lectures 2-3: the Baum-Welch M-step of any exponential-family
emission matches expected and observed statistics), and maximum likelihood
is ``lambda_k = s_k / n_k``.

hmmlearn's ``lambdas_prior`` (``a``) and ``lambdas_weight`` (``b``) give

    lambda_kd = (a_kd + s_kd) / (b_kd + n_k),

the mean of the Gamma(``a + s``, ``b + n``) posterior of a Gamma(``a``,
``b``) prior (shape, rate); equivalently the posterior *mode* under a
Gamma(``a + 1``, ``b``) prior, which is the prior whose log-density
``sum a log lambda - b lambda`` (up to constants) ``log_prior`` returns, so
the MAP-EM objective never decreases. ``a = b = 0`` is maximum likelihood.
(hmmlearn 0.3.3 divides by ``b + sum_k n_k`` and multiplies by it, which
agrees with this only when ``a = b = 0``; lateo uses the per-state
posterior, the standard conjugate update.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.scipy.special import gammaln


class PoissonParams(NamedTuple):
    """``lambdas`` (K, D): the rate of each count in each state."""

    lambdas: jax.Array


class PoissonStats(NamedTuple):
    """``counts`` (K,) ``sum_t gamma_t(k)``; ``sum_x`` (K, D) ``sum_t gamma_t(k) x_t``."""

    counts: jax.Array
    sum_x: jax.Array


class PoissonHyper(NamedTuple):
    """Gamma prior: ``lambdas_prior`` ``a`` and ``lambdas_weight`` ``b`` (K, D); 0, 0 = ML."""

    lambdas_prior: jax.Array
    lambdas_weight: jax.Array


def log_prob(X, lambdas):
    """``log p(x_t | k)`` (N, K) for counts ``X`` (N, D) and rates (K, D).

    ``X (log lambda)^T - sum lambda - sum log x!``; a zero rate gives
    ``log p = 0`` for a zero count and ``-inf`` for a positive one
    (``0 log 0 = 0``).
    """
    positive = lambdas > 0
    log_lam = jnp.where(positive, jnp.log(jnp.where(positive, lambdas, 1.0)), 0.0)
    out = X @ log_lam.T - jnp.sum(lambdas, axis=-1) - jnp.sum(gammaln(X + 1.0), axis=-1, keepdims=True)
    impossible = (X > 0).astype(X.dtype) @ (~positive).astype(X.dtype).T
    return jnp.where(impossible > 0, -jnp.inf, out)


@dataclass(frozen=True)
class PoissonFamily:
    """Poisson emissions (an HMM emission family); hmmlearn's letter ``"l"`` frees ``lambdas``."""

    letters = (("lambdas", "l"),)

    def log_prob(self, params: PoissonParams, X):
        return log_prob(X, params.lambdas)

    def stats(self, X, resp) -> PoissonStats:
        return PoissonStats(resp.sum(axis=0), resp.T @ X)

    def m_step(self, stats: PoissonStats, hyper: PoissonHyper, previous=None, letters="l") -> PoissonParams:
        """``(a + s_k) / (b + n_k)`` (0 where the denominator is 0: an unvisited state, kept by the caller)."""
        del previous, letters
        num = hyper.lambdas_prior + stats.sum_x
        den = hyper.lambdas_weight + stats.counts[:, None]
        return PoissonParams(jnp.where(den > 0, num / jnp.where(den > 0, den, 1.0), 0.0))

    def log_prior(self, params: PoissonParams, hyper: PoissonHyper):
        """``sum a log lambda - b lambda`` (terms with ``a = 0`` omitted, so zero rates are allowed)."""
        a, b, lam = hyper.lambdas_prior, hyper.lambdas_weight, params.lambdas
        log_lam = jnp.where(a != 0, jnp.log(jnp.where(lam > 0, lam, 1.0)), 0.0)
        return jnp.sum(a * log_lam - b * lam)

    def counts(self, stats: PoissonStats):
        return stats.counts

    def sample(self, key, params: PoissonParams, states):
        """Counts (N, D) for the states (N,), as floats."""
        lam = params.lambdas[states]
        return jax.random.poisson(key, lam, lam.shape).astype(lam.dtype)


__all__ = ["PoissonFamily", "PoissonHyper", "PoissonParams", "PoissonStats", "log_prob"]
