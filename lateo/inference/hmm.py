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

The single-sequence recursions are exact in log space: each step is a
logsumexp over the K^2 terms ``log alpha_t-1(i) + log A_ij``, so nothing
can underflow (T = 10^6 steps stay finite). The batched E-step engine,
:func:`batch_smoother`, runs the scaled probability-space recursions
(Rabiner 1989), which need no transcendental function per step, and falls
back to the exact log-space ones for a batch in which a normaliser
underflowed. The pairwise marginals are summed without a (T, K, K) array.

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

#: Loop unrolling of the sequential recursions (fewer loop-control steps on CPUs).
_UNROLL = 4
#: Steps whose pairwise marginals are formed at once by the log-space smoothers.
_XI_BATCH = 1024


class Posterior(NamedTuple):
    """Smoothed posteriors of one sequence.

    Attributes
    ----------
    log_likelihood : scalar, ``log p(x)``.
    gamma : (T, K) ``p(z_t | x)`` (zero rows past ``length``).
    xi_sum : (K, K) ``sum_t p(z_t-1 = i, z_t = j | x)``.
    """

    log_likelihood: jax.Array
    gamma: jax.Array
    xi_sum: jax.Array


def _length(log_obs, length):
    return log_obs.shape[0] if length is None else length


def _log_vecmat(log_v, log_matrix):
    """``log(exp(log_v) @ exp(log_matrix))``, exactly (a logsumexp over K^2 terms)."""
    return logsumexp(log_v[:, None] + log_matrix, axis=0)


def _log_matvec(log_matrix, log_v):
    """``log(exp(log_matrix) @ exp(log_v))``, exactly."""
    return logsumexp(log_matrix + log_v[None, :], axis=1)


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
    log_trans = jnp.log(trans)
    first, c0 = _normalise(log_start + log_obs[0])

    def step(carry, inputs):
        log_alpha, total = carry
        obs_t, t = inputs
        new, c = _normalise(_log_vecmat(log_alpha, log_trans) + obs_t)
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
    log_trans = jnp.log(trans)

    def step(log_beta_next, inputs):
        obs_next, t = inputs
        new = _log_matvec(log_trans, obs_next + log_beta_next)
        new = new - jnp.where(jnp.isfinite(jnp.max(new)), jnp.max(new), 0.0)
        log_beta = jnp.where(t < length - 1, new, jnp.zeros_like(new))
        return log_beta, log_beta

    last = jnp.zeros(n_states, log_obs.dtype)
    steps = jnp.arange(log_obs.shape[0] - 1)
    _, rest = jax.lax.scan(step, last, (log_obs[1:], steps), reverse=True)
    return jnp.concatenate([rest, last[None]], axis=0)


def _marginals(trans, log_obs, log_alpha, log_beta, length):
    """``gamma`` (T, K) and ``sum_t xi_t`` (K, K) from log filtered and backward messages.

    Exact: each ``xi_t`` is normalised in log space over its K^2 entries,
    ``_XI_BATCH`` steps at a time (vectorised within a block, so the depth
    is ``T / _XI_BATCH``; memory ``_XI_BATCH K^2``).
    """
    steps = jnp.arange(log_obs.shape[0])
    log_g = log_alpha + log_beta
    gamma = jnp.exp(log_g - logsumexp(log_g, axis=1, keepdims=True))
    gamma = jnp.where((steps < length)[:, None], gamma, 0.0)
    log_trans = jnp.log(trans)

    def block_sum(total, inputs):
        la, lv, ok = inputs  # one block of steps
        log_xi = la[:, :, None] + log_trans + lv[:, None, :]
        xi = jnp.exp(log_xi - logsumexp(log_xi, axis=(1, 2), keepdims=True))
        return total + jnp.sum(jnp.where(ok[:, None, None], xi, 0.0), axis=0), None

    n_pairs = log_obs.shape[0] - 1
    size = min(_XI_BATCH, max(n_pairs, 1))
    pad = -n_pairs % size

    def blocks(a, fill):
        a = jnp.concatenate([a, jnp.full((pad,) + a.shape[1:], fill, a.dtype)])
        return a.reshape((-1, size) + a.shape[1:])

    inputs = (blocks(log_alpha[:-1], 0.0), blocks(log_obs[1:] + log_beta[1:], 0.0), blocks(steps[1:] < length, False))
    xi_sum, _ = jax.lax.scan(block_sum, jnp.zeros_like(trans), inputs)
    return gamma, xi_sum


def hmm_smoother(log_start, trans, log_obs, length=None) -> Posterior:
    """Forward-backward in log space: log-likelihood, ``gamma`` and summed ``xi``."""
    length = _length(log_obs, length)
    log_lik, log_alpha = hmm_filter(log_start, trans, log_obs, length)
    log_beta = hmm_backward(trans, log_obs, length)
    gamma, xi_sum = _marginals(trans, log_obs, log_alpha, log_beta, length)
    return Posterior(log_lik, gamma, xi_sum)


class BatchPosterior(NamedTuple):
    """Smoothed posteriors of a batch of padded sequences.

    ``log_likelihood`` (S,), ``gamma`` (S, T, K) (zero past each length),
    ``xi_sum`` (K, K) summed over time *and* sequences.
    """

    log_likelihood: jax.Array
    gamma: jax.Array
    xi_sum: jax.Array


def batch_smoother_scaled(log_start, trans, log_obs, lengths) -> BatchPosterior:
    """Forward-backward of a batch (S, T, K) by the scaled recursions (Rabiner 1989).

    The fast path. Emissions are exponentiated once, shifted per step by
    their maximum (``b_t = exp(log_obs_t - max_k log_obs_t)``), and the
    messages are carried as probabilities normalised at every step, time
    major with the sequences side by side, so the recursions need no
    logarithm or exponential. It underflows only if, at some step, every
    state with predicted mass has an emission below ``1e-308`` of the best
    one; that sequence's log-likelihood is then not finite, and
    :func:`batch_smoother` recomputes the batch in log space.
    """
    n_steps = log_obs.shape[1]
    shift = jnp.max(log_obs, axis=2, keepdims=True)
    shift = jnp.where(jnp.isfinite(shift), shift, 0.0)
    b = jnp.swapaxes(jnp.exp(log_obs - shift), 0, 1)  # (T, S, K)
    steps = jnp.arange(n_steps)
    valid = (steps[:, None] < lengths[None, :])[..., None]  # (T, S, 1)
    a0 = jnp.exp(log_start) * b[0]
    c0 = jnp.sum(a0, axis=1, keepdims=True)

    def forward(alpha, inputs):
        b_t, ok = inputs
        a = (alpha @ trans) * b_t
        c = jnp.sum(a, axis=1, keepdims=True)
        alpha = jnp.where(ok, a / c, alpha)
        return alpha, (alpha, jnp.where(ok, c, 1.0))

    _, (alphas, norms) = jax.lax.scan(forward, a0 / c0, (b[1:], valid[1:]), unroll=_UNROLL)
    alphas = jnp.concatenate([(a0 / c0)[None], alphas], axis=0)
    norms = jnp.concatenate([c0[None], norms], axis=0)
    log_lik = jnp.sum(jnp.where(valid, jnp.log(norms) + jnp.swapaxes(shift, 0, 1), 0.0), axis=(0, 2))

    def backward(carry, inputs):
        beta_next, xi = carry
        alpha, b_next, ok_next = inputs
        v = b_next * beta_next
        pair = (alpha @ trans) * v
        total = jnp.sum(pair, axis=1, keepdims=True)
        weight = jnp.where(ok_next & (total > 0), 1.0 / jnp.where(total > 0, total, 1.0), 0.0)
        xi = xi + (alpha * weight).T @ v
        new = v @ trans.T
        beta = jnp.where(ok_next, new / jnp.max(new, axis=1, keepdims=True), jnp.ones_like(new))
        g = alpha * beta
        return (beta, xi), g / jnp.sum(g, axis=1, keepdims=True)

    n_states = trans.shape[0]
    init = (jnp.ones_like(a0), jnp.zeros((n_states, n_states), trans.dtype))
    (_, xi), gammas = jax.lax.scan(backward, init, (alphas[:-1], b[1:], valid[1:]), reverse=True, unroll=_UNROLL)
    gamma = jnp.concatenate([gammas, alphas[-1:]], axis=0)  # beta = 1 at the last step
    gamma = jnp.where(valid & (lengths[None, :, None] > 0), gamma, 0.0)
    return BatchPosterior(jnp.where(lengths > 0, log_lik, 0.0), jnp.swapaxes(gamma, 0, 1), trans * xi)


def _batch_of(smoother, log_start, trans, log_obs, lengths) -> BatchPosterior:
    """A single-sequence ``smoother`` vmapped over a batch; sequences of length 0 ignored."""
    post = jax.vmap(smoother, in_axes=(None, None, 0, 0))(log_start, trans, log_obs, lengths)
    keep = lengths > 0
    return BatchPosterior(jnp.where(keep, post.log_likelihood, 0.0),
                          jnp.where(keep[:, None, None], post.gamma, 0.0),
                          jnp.sum(jnp.where(keep[:, None, None], post.xi_sum, 0.0), axis=0))


def batch_smoother(log_start, trans, log_obs, lengths, parallel: bool = False) -> BatchPosterior:
    """Smoothers of a batch of padded sequences (S, T, K), sequences of length 0 ignored.

    Sequential (``parallel=False``): the scaled fast path, and the log-space
    recursions for the whole batch if any normaliser underflowed (a
    ``lax.cond``: the slow path costs nothing when it is not taken).
    ``parallel=True``: :func:`parallel_smoother` on every sequence, depth
    ``O(log T)`` (see :func:`use_parallel_in_time`).
    """
    if parallel:
        return _batch_of(parallel_smoother, log_start, trans, log_obs, lengths)
    fast = batch_smoother_scaled(log_start, trans, log_obs, lengths)
    underflow = jnp.any(~jnp.isfinite(fast.log_likelihood))
    return jax.lax.cond(underflow, lambda: _batch_of(hmm_smoother, log_start, trans, log_obs, lengths),
                        lambda: fast)


#: The ``implementation`` options of the HMM estimators.
IMPLEMENTATIONS = ("auto", "log", "scaling", "parallel")
#: Shortest sequence bucket that ``implementation="auto"`` runs in parallel in time on an accelerator.
PARALLEL_MIN_STEPS = 2048


def use_parallel_in_time(implementation: str, n_steps: int, backend: str | None = None) -> bool:
    """Whether the E-step and the decoder of ``n_steps``-step sequences use the associative scans.

    The sequential recursions take ``T`` dependent steps of ``O(K^2)`` work:
    on a CPU that is the fastest way (the scans do ``O(K^3)`` work per step
    and ``log T`` passes over memory), but on a GPU or TPU each step is a
    kernel launch that leaves the device idle. ``"auto"`` (the estimators'
    default) therefore runs the parallel-in-time versions (Särkkä &
    García-Fernández 2021) for buckets of at least ``PARALLEL_MIN_STEPS``
    steps when JAX's default backend is not the CPU; ``"parallel"`` always
    does; ``"log"`` and ``"scaling"`` (hmmlearn's names) never do.

    Parameters
    ----------
    implementation : {"auto", "log", "scaling", "parallel"}
    n_steps : int
        Padded length of the sequences of a bucket.
    backend : str, optional
        Platform name ("cpu", "gpu", "tpu"); default ``jax.default_backend()``.
    """
    if implementation == "parallel":
        return True
    if implementation != "auto":
        return False
    backend = jax.default_backend() if backend is None else backend
    return backend != "cpu" and n_steps >= PARALLEL_MIN_STEPS


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
    """Log-semiring product ``logsumexp_k a[i, k] + b[k, j]`` of (..., K, K) stacks.

    Exact (no term can underflow against a larger one it does not meet): a
    streaming logsumexp over ``k`` with O(n K^2) memory.
    """

    def body(k, carry):
        top, total = carry
        x = a[..., :, k, None] + b[..., None, k, :]
        new_top = jnp.maximum(top, x)
        safe = jnp.where(jnp.isfinite(new_top), new_top, 0.0)
        total = total * jnp.exp(top - safe) + jnp.exp(x - safe)
        return new_top, total

    shape = jnp.broadcast_shapes(a.shape, b.shape)
    init = (jnp.full(shape, -jnp.inf, a.dtype), jnp.zeros(shape, a.dtype))
    top, total = jax.lax.fori_loop(0, a.shape[-1], body, init)
    return jnp.where(jnp.isfinite(top), top + jnp.log(total), -jnp.inf)


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
    return Posterior(log_lik, gamma, xi_sum)


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
