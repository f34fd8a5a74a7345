"""The one statistics loop: ``S_hat -> S <- S + gamma (S_hat - S) -> theta``.

Every EM-like algorithm in lateo is this loop (DESIGN.md section 1; seed 000
for MCMC-SAEM, seed 001 for stochastic EM, seed 004 for exact EM)::

    S_hat_k, f_k = model.expected_stats(key_k, theta_k, data, hyper)
    S_{k+1}      = S_k + gamma_k (S_hat_k - S_k)
    theta_{k+1}  = model.m_step(S_{k+1}, hyper, theta_k)

``f_k`` is the objective at ``theta_k`` (the mean per-sample log-likelihood,
plus the log-prior over n for MAP), so the history is that of the parameters
*entering* each iteration, as in scikit-learn. Exact EM is ``gamma_k = 1``.

A *model* is any hashable object (a frozen dataclass) with the two methods
above (``m_step`` also receives the current parameters, for frozen
parameters and states that no data visit); it may also define ``has_converged(old_params, new_params, change,
tol)`` (the default stops when ``|f_k - f_{k-1}| < tol``). ``data`` and
``hyper`` are pytrees of arrays, so new data or hyper-parameters of the same
shapes reuse the compiled program.

A model with ``carries_latent = True`` keeps a latent state between
iterations (MCMC-SAEM's chains: each E-step starts from the previous draw);
its E-step is ``expected_stats(key, params, data, hyper, latent) -> (S_hat,
f, latent)``. A model may also define ``trace(params, latent) -> 1-D array``,
recorded at every iteration (parameter traces for convergence plots and
R-hat across chains), and ``step_size(k, hyper)``, which replaces the static
schedule by one whose parameters are run-time arrays (so a new burn-in
length does not recompile).

Functions are ``init``/``step``/``final`` (BlackJAX's shape). ``run`` drives
them: iterations run inside one jitted ``lax.while_loop`` per chunk, and a
progress bar updates between chunks. The jitted chunk takes the model and the
schedule as static arguments, so a fit compiles once per (model, schedule,
shapes) and restarts (``n_init``) or refits reuse it.
"""

from __future__ import annotations

import time
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from . import rng
from .progress import FitProgress
from .schedules import Constant
from .stats import stats_interpolate, stats_zeros_like

#: Iterations one jitted chunk may run (the history buffer's length).
MAX_CHUNK = 128
_TARGET_CHUNK_SECONDS = 0.25


class LoopState(NamedTuple):
    """State of the statistics loop.

    Attributes
    ----------
    params : pytree
        ``theta_k``, the current parameters.
    stats : pytree
        ``S_k``, the current sufficient statistics (sums and counts).
    iteration : int array
        ``k``, iterations completed.
    objective : float array
        Objective evaluated by the last E-step (``-inf`` before the first).
    converged : bool array
        Whether the convergence test has passed.
    key : PRNG key
        Key for the next stochastic E-step.
    latent : pytree or None
        State carried between E-steps by models with ``carries_latent``.
    """

    params: Any
    stats: Any
    iteration: jax.Array
    objective: jax.Array
    converged: jax.Array
    key: jax.Array
    latent: Any = None


class LoopResult(NamedTuple):
    """What ``run`` returns: the final state plus the host-side history."""

    state: LoopState
    history: np.ndarray
    converged: bool
    n_iter: int
    trace: np.ndarray | None = None


def default_has_converged(old_params, new_params, change, tol):
    """Stop when the objective moved by less than ``tol`` (scikit-learn's test)."""
    del old_params, new_params
    return jnp.abs(change) < tol


def _expected_stats(model, key, params, data, hyper, latent):
    """The model's E-step as ``(S_hat, objective, latent)``, latent passed through if not carried."""
    if getattr(model, "carries_latent", False):
        return model.expected_stats(key, params, data, hyper, latent)
    s_hat, objective = model.expected_stats(key, params, data, hyper)
    return s_hat, objective, latent


def _strong(tree):
    """Arrays with strong dtypes: a weakly typed start would recompile the loop after its first chunk."""
    return jax.tree_util.tree_map(lambda x: jnp.asarray(x, dtype=jnp.asarray(x).dtype), tree)


# Traced once per model and shapes: ``jax.eval_shape`` of a fresh partial re-traced the whole
# E-step at every fit (0.8 s for an SAEM step, more than its 1,000 iterations).
_expected_stats_shapes = jax.jit(_expected_stats, static_argnums=0).eval_shape


def init(model, params, data, hyper, key, latent=None) -> LoopState:
    """Initial loop state at ``params``, with zero statistics of the right shape."""
    params, latent = _strong(params), _strong(latent)
    shapes = _expected_stats_shapes(model, key, params, data, hyper, latent)[0]
    dtype = jax.tree.leaves(shapes)[0].dtype
    return LoopState(
        params=params,
        stats=stats_zeros_like(shapes),
        iteration=jnp.asarray(0, jnp.int32),
        objective=jnp.asarray(-jnp.inf, dtype),
        converged=jnp.asarray(False),
        key=key,
        latent=latent,
    )


def step(model, schedule, state: LoopState, data, hyper, tol):
    """One iteration: E-step, statistics update, M-step, convergence test.

    Returns ``(new_state, objective)`` where ``objective`` was evaluated at
    the parameters entering the step.
    """
    key, sub = rng.split(state.key)
    s_hat, objective, latent = _expected_stats(model, sub, state.params, data, hyper, state.latent)
    k = state.iteration + 1
    if hasattr(model, "step_size"):  # a schedule with run-time parameters (SAEM's burn-in length)
        stats = stats_interpolate(state.stats, s_hat, model.step_size(k, hyper).astype(objective.dtype))
    elif getattr(schedule, "exact", False):
        stats = s_hat  # gamma = 1 exactly, without rounding S + (S_hat - S)
    else:
        stats = stats_interpolate(state.stats, s_hat, schedule(k).astype(objective.dtype))
    params = model.m_step(stats, hyper, state.params)
    change = objective - state.objective
    test = getattr(model, "has_converged", default_has_converged)
    converged = test(state.params, params, change, tol)
    new = LoopState(params, stats, k, objective, converged, key, latent)
    return new, objective


def final(state: LoopState):
    """The parameters a fit returns."""
    return state.params


@partial(jax.jit, static_argnames=("model", "schedule"))
def run_chunk(model, schedule, state: LoopState, data, hyper, tol, n_steps):
    """Up to ``n_steps`` (<= MAX_CHUNK) iterations in one compiled while-loop.

    Stops early once converged. Returns the state, a buffer of the objectives
    (NaN past the last step) and the number of steps run.
    """
    history = jnp.full(MAX_CHUNK, jnp.nan, dtype=state.objective.dtype)
    trace_fn = getattr(model, "trace", None)
    width = 0 if trace_fn is None else jax.eval_shape(trace_fn, state.params, state.latent).shape[0]
    traces = jnp.full((MAX_CHUNK, width), jnp.nan, dtype=state.objective.dtype)

    def cond(carry):
        i, st, _, _ = carry
        return (i < n_steps) & jnp.logical_not(st.converged)

    def body(carry):
        i, st, hist, tr = carry
        st, objective = step(model, schedule, st, data, hyper, tol)
        if trace_fn is not None:
            tr = tr.at[i].set(trace_fn(st.params, st.latent).astype(tr.dtype))
        return i + 1, st, hist.at[i].set(objective), tr

    n_done, state, history, traces = jax.lax.while_loop(
        cond, body, (jnp.asarray(0, jnp.int32), state, history, traces)
    )
    return state, history, n_done, traces


def run(
    model,
    state: LoopState,
    data,
    hyper,
    *,
    max_iter: int,
    tol: float,
    schedule=Constant(),
    progress="auto",
    description: str = "EM",
) -> LoopResult:
    """Iterate until convergence or ``max_iter``, chunk by chunk.

    Chunks grow (doubling from 4 up to ``MAX_CHUNK`` iterations) while each
    takes under a quarter of a second, so slow fits report progress often
    and fast ones pay little dispatch overhead; the chunk length is a
    run-time argument, so it never triggers a recompilation.
    """
    history: list[np.ndarray] = []
    traces: list[np.ndarray] = []
    chunk = 4
    done = int(state.iteration)
    target = done + int(max_iter)
    tol_arr = jnp.asarray(tol, state.objective.dtype)
    with FitProgress(max_iter, description, progress) as bar:
        while done < target and not bool(state.converged):
            n_steps = min(chunk, target - done)
            t0 = time.perf_counter()
            state, hist, n_done, trace = run_chunk(
                model, schedule, state, data, hyper, tol_arr, jnp.asarray(n_steps, jnp.int32)
            )
            n_done = int(n_done)
            history.append(np.asarray(hist[:n_done]))
            traces.append(np.asarray(trace[:n_done]))
            done += n_done
            bar.update(done - (target - max_iter), float(state.objective))
            if time.perf_counter() - t0 < _TARGET_CHUNK_SECONDS:
                chunk = min(2 * chunk, MAX_CHUNK)
    hist = np.concatenate(history) if history else np.zeros(0)
    trace = np.concatenate(traces) if traces and traces[0].shape[1] else None
    return LoopResult(state, hist, bool(state.converged), int(state.iteration), trace)
