"""Exact inference in hidden Markov models, in log space, as pure jitted functions.

A sequence of length ``T`` (possibly padded to ``T_max``; steps ``t >=
length`` are ignored) with initial log-probabilities ``log_start`` (K,),
transition matrix ``trans`` (K, K) (rows sum to 1; structural zeros
allowed) and emission log-likelihoods ``log_obs`` (T_max, K) (seed 004,
lectures 1-3 and 5; Rabiner 1989):

* forward filter ``alpha_t(j) = p(z_t = j | x_0..t)`` and ``log p(x)``;
* backward pass ``beta_t(i) ∝ p(x_t+1..T-1 | z_t = i)``;
* smoother ``gamma_t = p(z_t | x)`` and the summed pairwise marginals
  ``sum_t xi_t(i, j) = sum_t p(z_t-1 = i, z_t = j | x)``;
* Viterbi: the most probable path and its log-probability;
* forward-filtering backward-sampling of state paths, and sampling of
  state sequences from the prior.

Everything is kept in log space. Each recursion step multiplies by the
transition matrix after shifting by the running maximum,
``log(exp(v) A) = m + log(exp(v - m) A)``, so no normaliser can underflow
(T = 10^6 steps stay finite); only contributions below ``1e-308`` of the
current maximum are dropped. The pairwise marginals are summed without a
(T, K, K) array: ``sum_t xi_t = A * (U^T diag(1/s) V)`` with
``U_t = alpha_t-1``, ``V_t = b_t * beta_t`` and ``s_t = U_t^T A V_t``.

The ``parallel_*`` functions compute the same quantities with associative
scans (Särkkä & García-Fernández 2021, "Temporal parallelization of
Bayesian smoothers"; Hassan et al. 2021 for Viterbi) in ``O(log T)``
depth, for long sequences on accelerators; they equal the sequential
versions to rounding.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp


class Posterior(NamedTuple):
    """Smoothed posteriors of one sequence.

    Attributes
    ----------
    log_likelihood : scalar, ``log p(x)``.
    gamma : (T, K) ``p(z_t | x)`` (zero rows past ``length``).
    xi_sum : (K, K) ``sum_t p(z_t-1 = i, z_t = j | x)``.
    log_filtered : (T, K) normalised ``log p(z_t | x_0..t)``.
    """

    log_likelihood: jax.Array
    gamma: jax.Array
    xi_sum: jax.Array
    log_filtered: jax.Array


def _length(log_obs, length):
    return log_obs.shape[0] if length is None else length


def _log_vecmat(log_v, matrix):
    """``log(exp(log_v) @ matrix)`` with a max shift (no underflow of the sum)."""
    m = jnp.max(log_v)
    m = jnp.where(jnp.isfinite(m), m, 0.0)
    return m + jnp.log(jnp.exp(log_v - m) @ matrix)


def _log_matvec(matrix, log_v):
    """``log(matrix @ exp(log_v))`` with a max shift."""
    m = jnp.max(log_v)
    m = jnp.where(jnp.isfinite(m), m, 0.0)
    return m + jnp.log(matrix @ jnp.exp(log_v - m))


def _normalise(log_v):
    """``(log_v - logsumexp(log_v), logsumexp(log_v))``; an all ``-inf`` vector stays as is."""
    c = logsumexp(log_v)
    return log_v - jnp.where(jnp.isfinite(c), c, 0.0), c


def hmm_filter(log_start, trans, log_obs, length=None):
    """Forward filter: ``(log p(x), log p(z_t | x_0..t))``, shapes () and (T, K).

    ``log p(x) = sum_t log sum_j p(z_t = j | x_<t) b_t(j)`` (the normalisers).
    Rows past ``length`` repeat the last filtered distribution.
    """
    length = _length(log_obs, length)
    first, c0 = _normalise(log_start + log_obs[0])

    def step(carry, inputs):
        log_alpha, total = carry
        obs_t, t = inputs
        new, c = _normalise(_log_vecmat(log_alpha, trans) + obs_t)
        valid = t < length
        log_alpha = jnp.where(valid, new, log_alpha)
        return (log_alpha, total + jnp.where(valid, c, 0.0)), log_alpha

    steps = jnp.arange(1, log_obs.shape[0])
    (_, total), rest = jax.lax.scan(step, (first, c0), (log_obs[1:], steps))
    return total, jnp.concatenate([first[None], rest], axis=0)


def hmm_backward(trans, log_obs, length=None):
    """Backward pass: ``log beta_t`` up to a constant per step, shape (T, K).

    ``beta_t(i) = sum_j A_ij b_t+1(j) beta_t+1(j)``, ``beta_length-1 = 1``;
    each step is shifted to max 0. Rows at and past ``length - 1`` are 0.
    """
    length = _length(log_obs, length)
    n_states = log_obs.shape[1]

    def step(log_beta_next, inputs):
        obs_next, t = inputs
        new = _log_matvec(trans, obs_next + log_beta_next)
        new = new - jnp.max(new)
        log_beta = jnp.where(t < length - 1, new, jnp.zeros_like(new))
        return log_beta, log_beta

    last = jnp.zeros(n_states, log_obs.dtype)
    steps = jnp.arange(log_obs.shape[0] - 1)
    _, rest = jax.lax.scan(step, last, (log_obs[1:], steps), reverse=True)
    return jnp.concatenate([rest, last[None]], axis=0)


def _marginals(trans, log_obs, log_alpha, log_beta, length):
    """``gamma`` (T, K) and ``sum_t xi_t`` (K, K) from filtered and backward messages."""
    steps = jnp.arange(log_obs.shape[0])
    log_g = log_alpha + log_beta
    gamma = jnp.exp(log_g - logsumexp(log_g, axis=1, keepdims=True))
    gamma = jnp.where((steps < length)[:, None], gamma, 0.0)
    u = jnp.exp(log_alpha[:-1] - jnp.max(log_alpha[:-1], axis=1, keepdims=True))
    log_v = log_obs[1:] + log_beta[1:]
    v = jnp.exp(log_v - jnp.max(log_v, axis=1, keepdims=True))
    s = jnp.sum((u @ trans) * v, axis=1)
    valid = steps[1:] < length
    weight = jnp.where(valid & (s > 0), 1.0 / jnp.where(s > 0, s, 1.0), 0.0)
    xi_sum = trans * ((u * weight[:, None]).T @ v)
    return gamma, xi_sum


def hmm_smoother(log_start, trans, log_obs, length=None) -> Posterior:
    """Forward-backward: log-likelihood, ``gamma``, summed ``xi`` and the filter."""
    length = _length(log_obs, length)
    log_lik, log_alpha = hmm_filter(log_start, trans, log_obs, length)
    log_beta = hmm_backward(trans, log_obs, length)
    gamma, xi_sum = _marginals(trans, log_obs, log_alpha, log_beta, length)
    return Posterior(log_lik, gamma, xi_sum, log_alpha)


def hmm_viterbi(log_start, trans, log_obs, length=None):
    """Most probable state path and its joint log-probability ``log p(x, z*)``.

    Returns ``(log_prob, path)`` with ``path`` (T,) int; entries past
    ``length`` repeat the last state.
    """
    length = _length(log_obs, length)
    n_states = log_obs.shape[1]
    log_trans = jnp.log(trans)
    delta0 = log_start + log_obs[0]
    identity = jnp.arange(n_states)

    def forward(carry, inputs):
        delta, offset = carry
        obs_t, t = inputs
        scores = delta[:, None] + log_trans
        best = jnp.argmax(scores, axis=0)
        new = jnp.max(scores, axis=0) + obs_t
        shift = jnp.max(new)
        valid = t < length
        delta = jnp.where(valid, new - shift, delta)
        return (delta, offset + jnp.where(valid, shift, 0.0)), jnp.where(valid, best, identity)

    shift0 = jnp.max(delta0)
    steps = jnp.arange(1, log_obs.shape[0])
    (delta, offset), pointers = jax.lax.scan(forward, (delta0 - shift0, shift0), (log_obs[1:], steps))
    last = jnp.argmax(delta)

    def backtrack(state, ptr):
        prev = ptr[state]
        return prev, prev

    _, earlier = jax.lax.scan(backtrack, last, pointers, reverse=True)
    path = jnp.concatenate([earlier, last[None]])
    return delta[last] + offset, path


def hmm_posterior_sample(key, log_start, trans, log_obs, length=None):
    """One state path from ``p(z | x)`` by forward filtering, backward sampling."""
    length = _length(log_obs, length)
    _, log_alpha = hmm_filter(log_start, trans, log_obs, length)
    log_trans = jnp.log(trans)
    n_steps = log_obs.shape[0]
    keys = jax.random.split(key, n_steps)

    def step(next_state, inputs):
        t, k, log_a = inputs
        cond = jax.random.categorical(k, log_a + log_trans[:, next_state])
        free = jax.random.categorical(k, log_a)
        state = jnp.where(t >= length - 1, free, cond)
        return state, state

    _, path = jax.lax.scan(step, jnp.asarray(0), (jnp.arange(n_steps), keys, log_alpha), reverse=True)
    return path


def hmm_sample_states(key, log_start, trans, n_steps: int):
    """A state sequence of ``n_steps`` from the Markov chain (prior)."""
    k0, k_rest = jax.random.split(key)
    first = jax.random.categorical(k0, log_start)
    log_trans = jnp.log(trans)

    def step(state, k):
        new = jax.random.categorical(k, log_trans[state])
        return new, new

    _, rest = jax.lax.scan(step, first, jax.random.split(k_rest, n_steps - 1))
    return jnp.concatenate([first[None], rest])


# ---------------------------------------------------------------- parallel in time


def _log_matmul(a, b):
    """Log-semiring product ``log(exp(a) @ exp(b))`` of (..., K, K) stacks, max-shifted."""
    ma = jnp.max(a, axis=-1, keepdims=True)
    ma = jnp.where(jnp.isfinite(ma), ma, 0.0)
    mb = jnp.max(b, axis=-2, keepdims=True)
    mb = jnp.where(jnp.isfinite(mb), mb, 0.0)
    return jnp.log(jnp.exp(a - ma) @ jnp.exp(b - mb)) + ma + mb


def _maxplus_matmul(a, b):
    """Max-plus product ``max_k a[i, k] + b[k, j]`` of (..., K, K) stacks, O(n K^2) memory."""

    def body(k, acc):
        return jnp.maximum(acc, a[..., :, k, None] + b[..., None, k, :])

    init = jnp.full(jnp.broadcast_shapes(a.shape, b.shape), -jnp.inf, a.dtype)
    return jax.lax.fori_loop(0, a.shape[-1], body, init)


def _reversed(product):
    """``associative_scan(..., reverse=True)`` calls ``fn(later, earlier)``; suffix
    products ``E_t E_t+1 ...`` need ``earlier @ later``."""
    return lambda later, earlier: product(earlier, later)


def _log_identity(n_states, dtype):
    eye = jnp.eye(n_states, dtype=bool)
    return jnp.where(eye, 0.0, -jnp.inf).astype(dtype)


def _forward_elements(log_start, log_trans, log_obs, length):
    """``E_0[i, j] = log pi_j + log b_0(j)``, ``E_t[i, j] = log A_ij + log b_t(j)``;
    identity elements past ``length``."""
    n_steps, n_states = log_obs.shape
    first = jnp.broadcast_to(log_start + log_obs[0], (n_states, n_states))
    rest = log_trans[None] + log_obs[1:, None, :]
    elems = jnp.concatenate([first[None], rest], axis=0)
    valid = (jnp.arange(n_steps) < length)[:, None, None]
    return jnp.where(valid, elems, _log_identity(n_states, log_obs.dtype))


def _backward_elements(log_trans, log_obs, length):
    """``F_t[i, j] = log A_ij + log b_t+1(j)`` for ``t < length - 1``; identity after."""
    n_steps, n_states = log_obs.shape
    elems = log_trans[None] + log_obs[1:, None, :]
    valid = (jnp.arange(n_steps - 1) < length - 1)[:, None, None]
    return jnp.where(valid, elems, _log_identity(n_states, log_obs.dtype))


def parallel_filter(log_start, trans, log_obs, length=None):
    """:func:`hmm_filter` by an associative scan over log-semiring matrices."""
    length = _length(log_obs, length)
    elems = _forward_elements(log_start, jnp.log(trans), log_obs, length)
    prefix = jax.lax.associative_scan(_log_matmul, elems)
    log_joint = prefix[:, 0, :]  # log p(x_0..t, z_t): every row of E_0 is the same
    norms = logsumexp(log_joint, axis=1, keepdims=True)
    return norms[jnp.minimum(length, log_obs.shape[0]) - 1, 0], log_joint - norms


def parallel_backward(trans, log_obs, length=None):
    """:func:`hmm_backward` by a reverse associative scan (shifted to max 0 per step)."""
    length = _length(log_obs, length)
    elems = _backward_elements(jnp.log(trans), log_obs, length)
    suffix = jax.lax.associative_scan(_reversed(_log_matmul), elems, reverse=True)
    log_beta = logsumexp(suffix, axis=2)
    log_beta = log_beta - jnp.max(log_beta, axis=1, keepdims=True)
    steps = jnp.arange(log_obs.shape[0] - 1)
    log_beta = jnp.where((steps < length - 1)[:, None], log_beta, 0.0)
    return jnp.concatenate([log_beta, jnp.zeros((1, log_obs.shape[1]), log_obs.dtype)], axis=0)


def parallel_smoother(log_start, trans, log_obs, length=None) -> Posterior:
    """:func:`hmm_smoother` with both passes parallel in time."""
    length = _length(log_obs, length)
    log_lik, log_alpha = parallel_filter(log_start, trans, log_obs, length)
    log_beta = parallel_backward(trans, log_obs, length)
    gamma, xi_sum = _marginals(trans, log_obs, log_alpha, log_beta, length)
    return Posterior(log_lik, gamma, xi_sum, log_alpha)


def parallel_viterbi(log_start, trans, log_obs, length=None):
    """:func:`hmm_viterbi` by max-plus associative scans.

    Forward prefixes give ``delta_t(j)`` (best path ending in ``j``),
    reverse suffixes give the best continuation from ``j``; the MAP path is
    ``argmax_j`` of their sum at each step (exact when the MAP path is
    unique).
    """
    length = _length(log_obs, length)
    log_trans = jnp.log(trans)
    prefix = jax.lax.associative_scan(_maxplus_matmul, _forward_elements(log_start, log_trans, log_obs, length))
    delta = prefix[:, 0, :]
    suffix = jax.lax.associative_scan(_reversed(_maxplus_matmul), _backward_elements(log_trans, log_obs, length),
                                      reverse=True)
    ahead = jnp.concatenate([jnp.max(suffix, axis=2), jnp.zeros((1, log_obs.shape[1]), log_obs.dtype)], axis=0)
    path = jnp.argmax(delta + ahead, axis=1)
    last = jnp.minimum(length, log_obs.shape[0]) - 1
    path = jnp.where(jnp.arange(log_obs.shape[0]) < length, path, path[last])
    return jnp.max(delta[last]), path
