"""Baum-Welch (EM for hidden Markov models) on the statistics loop.

The complete-data log-likelihood of an HMM is in the exponential family
(seed 004, lectures 2-3): its sufficient statistics are the expected
initial-state counts ``sum_seq gamma_0``, the expected transition counts
``sum_seq sum_t xi_t`` and the emission family's statistics weighted by
the state posteriors ``gamma_t``. The E-step is the forward-backward
smoother of :mod:`lateo.inference.hmm`, vmapped over the sequences of each
length bucket; the M-step normalises the counts (Lagrange multipliers,
seed 004) and calls the emission family's closed-form M-step.

An *emission family* is a hashable object with ``log_prob(params, X) -> (N,
K)``, ``stats(X, resp)`` (sums, additive over rows), ``m_step(stats,
hyper, previous, letters)`` (``previous`` parameters and the letters being
updated, so that frozen means centre the covariances), ``log_prior(params, hyper)``, ``counts(stats) -> (K,)``,
``sample(key, params, states)`` and ``letters`` (parameter field -> the
hmmlearn letter that frees it). A family whose statistics depend on the
current parameters (Gaussian-mixture emissions) also defines
``stats_given(params, X, resp)``, used in place of ``stats``.

MAP-EM: Dirichlet priors ``alpha`` on the start and transition
probabilities give ``max(n + alpha - 1, 0)`` normalised (hmmlearn's
rule); ``alpha = 1`` is maximum likelihood and keeps structural zeros at
zero. Frozen parameters (letters absent from ``params``) keep their
values. A state that no data visit (expected count below 1e-10) keeps its
previous emission parameters, and a transition row with no counts keeps
its previous value, so no NaN can appear.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from ..core.sequences import SequenceBatch
from ..inference import hmm as inference

_VISITED = 1e-10


class HMMParams(NamedTuple):
    """``startprob`` (K,), ``transmat`` (K, K) and the emission parameters."""

    startprob: jax.Array
    transmat: jax.Array
    emission: Any


class HMMStats(NamedTuple):
    """Expected counts ``start`` (K,), ``trans`` (K, K) and emission statistics."""

    start: jax.Array
    trans: jax.Array
    emission: Any


class HMMHyper(NamedTuple):
    """Dirichlet concentrations ``startprob_prior`` (K,), ``transmat_prior`` (K, K),
    and the emission family's hyper-parameters."""

    startprob_prior: jax.Array
    transmat_prior: jax.Array
    emission: Any


def emission_log_prob(family, params: HMMParams, batch: SequenceBatch):
    """Emission log-likelihoods of a bucket, (S, T, K)."""
    n_seq, n_steps, dim = batch.X.shape
    flat = batch.X.reshape(n_seq * n_steps, dim)
    return family.log_prob(params.emission, flat).reshape(n_seq, n_steps, -1)


def smooth_batch(family, params: HMMParams, batch: SequenceBatch, implementation: str = "auto"):
    """Forward-backward on every sequence of a bucket: scaled with a log-space fallback, or
    parallel in time (:func:`lateo.inference.hmm.use_parallel_in_time`)."""
    log_obs = emission_log_prob(family, params, batch)
    parallel = inference.use_parallel_in_time(implementation, batch.X.shape[1])
    return inference.batch_smoother(jnp.log(params.startprob), params.transmat, log_obs, batch.lengths, parallel)


def emission_stats(family, emission, X, gamma):
    """The family's statistics of rows ``X`` weighted by the state posteriors.

    ``family.stats(X, gamma)``, or ``family.stats_given(emission, X, gamma)``
    for a family whose statistics also depend on the current parameters
    (mixture emissions: the within-state responsibilities).
    """
    given = getattr(family, "stats_given", None)
    return family.stats(X, gamma) if given is None else given(emission, X, gamma)


def batch_stats(family, params: HMMParams, batch: SequenceBatch, implementation: str = "auto"):
    """Statistics and total log-likelihood of one bucket."""
    post = smooth_batch(family, params, batch, implementation)
    n_seq, n_steps, dim = batch.X.shape
    gamma = post.gamma.reshape(n_seq * n_steps, -1)
    emission = emission_stats(family, params.emission, batch.X.reshape(n_seq * n_steps, dim), gamma)
    stats = HMMStats(jnp.sum(post.gamma[:, 0], axis=0), post.xi_sum, emission)
    return stats, jnp.sum(post.log_likelihood)


def _dirichlet_map(counts, alpha, previous):
    """``max(counts + alpha - 1, 0)`` normalised per row; empty rows keep ``previous``."""
    num = jnp.maximum(counts + alpha - 1.0, 0.0)
    total = jnp.sum(num, axis=-1, keepdims=True)
    return jnp.where(total > 0, num / jnp.where(total > 0, total, 1.0), previous)


def _log_dirichlet_rows(probs, alpha):
    """``sum_rows log Dir(p | alpha)`` up to its normalising constant (terms with alpha = 1 vanish)."""
    safe = jnp.where(alpha != 1.0, jnp.log(jnp.where(probs > 0, probs, 1.0)), 0.0)
    return jnp.sum((alpha - 1.0) * safe)


def _keep_unvisited(new, old, visited):
    """Per state: the new emission parameter if the state was visited, else the old one."""

    def pick(n, o):
        if n.ndim == 0 or n.shape[0] != visited.shape[0]:
            return n  # shared across states (e.g. a tied covariance)
        mask = visited.reshape((-1,) + (1,) * (n.ndim - 1))
        return jnp.where(mask, n, o)

    return jax.tree.map(pick, new, old)


def _freeze(family, new, old, letters: str):
    """Keep the fields whose hmmlearn letter is not in ``letters``."""
    fields = {name: (getattr(new, name) if letter in letters else getattr(old, name)) for name, letter in family.letters}
    return type(new)(**fields)


@dataclass(frozen=True)
class HiddenMarkovEM:
    """An HMM with a given emission family, as a model of the statistics loop.

    ``params`` are hmmlearn's letters of the parameters to update
    ("s" start, "t" transitions, plus the family's letters); ``implementation``
    picks the sequential or parallel-in-time smoother per bucket
    (:func:`lateo.inference.hmm.use_parallel_in_time`).
    """

    family: Any
    params: str
    implementation: str = "auto"

    def expected_stats(self, key, params: HMMParams, data, hyper: HMMHyper):
        del key  # exact E-step
        parts = [batch_stats(self.family, params, batch, self.implementation) for batch in data]
        stats = jax.tree.map(lambda *leaves: sum(leaves), *[p[0] for p in parts])
        log_lik = sum(p[1] for p in parts)
        return stats, log_lik + self.log_prior(params, hyper)

    def log_prior(self, params: HMMParams, hyper: HMMHyper):
        """``log p(theta)`` up to constants (0 under flat Dirichlets and no emission prior)."""
        total = _log_dirichlet_rows(params.startprob, hyper.startprob_prior)
        total += _log_dirichlet_rows(params.transmat, hyper.transmat_prior)
        return total + self.family.log_prior(params.emission, hyper.emission)

    def m_step(self, stats: HMMStats, hyper: HMMHyper, previous: HMMParams) -> HMMParams:
        start = previous.startprob
        if "s" in self.params:
            start = _dirichlet_map(stats.start, hyper.startprob_prior, previous.startprob)
        trans = previous.transmat
        if "t" in self.params:
            trans = _dirichlet_map(stats.trans, hyper.transmat_prior, previous.transmat)
        emission = self.family.m_step(stats.emission, hyper.emission, previous.emission, self.params)
        visited = self.family.counts(stats.emission) > _VISITED
        emission = _keep_unvisited(emission, previous.emission, visited)
        emission = _freeze(self.family, emission, previous.emission, self.params)
        return HMMParams(start, trans, emission)

    def has_converged(self, old_params, new_params, change, tol):
        """hmmlearn's monitor: the log-likelihood gained less than ``tol`` (a loss counts too)."""
        del old_params, new_params
        return change < tol


# ---------------------------------------------------------------- scoring


@partial(jax.jit, static_argnames=("family", "implementation"))
def posterior_batch(family, params: HMMParams, batch: SequenceBatch, implementation: str = "auto"):
    """Per-sequence ``log p(x)`` (S,) and posteriors ``gamma`` (S, T, K) of one bucket."""
    post = smooth_batch(family, params, batch, implementation)
    return post.log_likelihood, post.gamma


@partial(jax.jit, static_argnames=("family", "implementation"))
def viterbi_batch(family, params: HMMParams, batch: SequenceBatch, implementation: str = "auto"):
    """Per-sequence Viterbi log-probability (S,) and paths (S, T) of one bucket."""
    log_obs = emission_log_prob(family, params, batch)
    parallel = inference.use_parallel_in_time(implementation, batch.X.shape[1])
    decoder = inference.parallel_viterbi if parallel else inference.hmm_viterbi
    viterbi = jax.vmap(decoder, in_axes=(None, None, 0, 0))
    return viterbi(jnp.log(params.startprob), params.transmat, log_obs, batch.lengths)


@partial(jax.jit, static_argnames=("family", "n_samples"))
def sample_hmm(family, params: HMMParams, key, n_samples: int):
    """``(X, states)``: one sequence of ``n_samples`` steps from the model."""
    k_states, k_obs = jax.random.split(key)
    states = inference.hmm_sample_states(k_states, jnp.log(params.startprob), params.transmat, n_samples)
    return family.sample(k_obs, params.emission, states), states
