"""Online (stochastic) EM on the statistics loop, and exact EM over a stream.

Online EM (Cappé & Moulines 2009, "On-line expectation-maximization
algorithm for latent data models", JRSS-B 71(3); seed 001's stochastic EM)
replaces exact EM's full E-step by the expected statistics of a minibatch
``B_k``, scaled to the data size ``N``, and averages them with a
Robbins-Monro step size::

    S_hat_k  = (N / |B_k|) sum_{i in B_k} E[s(x_i, z_i) | x_i; theta_{k-1}]
    S_k      = S_{k-1} + gamma_k (S_hat_k - S_{k-1})
    theta_k  = m_step(S_k)

``gamma_k = (k + k0)^-alpha`` with ``1/2 < alpha <= 1`` (so that ``sum
gamma_k = inf`` and ``sum gamma_k^2 < inf``; :class:`lateo.core.schedules.
PowerDecay`), by default after 20 steps with ``gamma_k = 1``
(:data:`DEFAULT_STEP_SIZE`). ``S_0`` is not a statistic of any data, so the first update
always takes ``gamma_1 = 1``. With ``gamma_k = 1`` and one minibatch equal to
the whole data this is exact EM. This is :func:`lateo.core.loop.step` on a
model whose data are ``(minibatch, N / |B|)`` (:class:`Scaled`); nothing
here re-implements the loop.

``N`` only matters under priors (a maximum-likelihood M-step depends on
ratios of statistics): it is the number of rows (or sequences) of an array,
and for a stream the number seen so far in its first pass.

Data too large for memory come as a *stream* of chunks (:class:`ChunkStream`):
a callable returning a fresh iterator of arrays (re-iterable: several
passes), or an iterator (one pass). Chunks are cut into minibatches of
``batch_size`` rows whatever their own size; only one chunk (plus fewer than
``batch_size`` leftover rows) is held at a time. Exact EM over a re-iterable
stream sums the chunk statistics at fixed parameters before each M-step
(:func:`exact_stream_step`), which is the same EM as on the concatenated data.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ..core import loop
from ..core.progress import FitProgress
from ..core.blocks import DEFAULT_BLOCK_BYTES, Blocks
from ..core.schedules import BurnInThenDecay
from ..core.stats import stats_add, stats_scale

ALGORITHMS = ("batch", "online")
#: Default step size: gamma_k = 1 for 20 steps (EM on successive minibatches, which
#: travels fast while far from the optimum), then (k - 20)^-0.6 (Robbins-Monro
#: averaging; Cappé & Moulines 2009 use alpha in [0.6, 0.9]). The burn-in is
#: seed 000's SAEM schedule; on the benchmark of ``benchmarks/bench_online_em.py``
#: it reaches the exact-EM optimum in one pass where k^-0.6 alone needs several.
DEFAULT_STEP_SIZE = BurnInThenDecay(burn_in=20, alpha=0.6)


@dataclass(frozen=True)
class Scaled:
    """A loop model whose data are ``(minibatch, scale)``: statistics times ``scale = N / |B|``.

    The convergence test always fails: online EM stops on epochs (the
    driver's test), not on the noisy objective of one minibatch.
    """

    model: Any

    def expected_stats(self, key, params, data, hyper):
        batch, scale = data
        s_hat, objective = self.model.expected_stats(key, params, batch, hyper)
        return stats_scale(s_hat, scale.astype(objective.dtype)), objective

    def m_step(self, stats, hyper, previous):
        return self.model.m_step(stats, hyper, previous)

    def has_converged(self, old_params, new_params, change, tol):
        del old_params, new_params, tol
        return jnp.zeros(jnp.shape(change), bool)


@dataclass(frozen=True)
class FirstStepExact:
    """``gamma_1 = 1`` (replace the empty ``S_0``), then the wrapped schedule."""

    schedule: Any
    exact = False

    def __call__(self, k):
        return jnp.where(jnp.asarray(k) <= 1, 1.0, self.schedule(k))


def check_schedule(step_size):
    """The step-size schedule: ``None`` -> :data:`DEFAULT_STEP_SIZE`; a schedule of :mod:`lateo.core.schedules`."""
    if step_size is None:
        step_size = DEFAULT_STEP_SIZE
    if not callable(step_size) or not hasattr(step_size, "exact"):
        raise ValueError(
            "step_size must be None or a schedule from lateo.core.schedules, e.g. PowerDecay(alpha=0.6, "
            f"offset=10) or Constant() for gamma = 1; got {step_size!r}."
        )
    return step_size if step_size.exact else FirstStepExact(step_size)


def check_options(algorithm, batch_size):
    """Validate ``algorithm`` ("batch"/"online") and ``batch_size`` (int >= 1)."""
    if not isinstance(algorithm, str) or algorithm not in ALGORITHMS:
        raise ValueError(f"algorithm must be one of {list(ALGORITHMS)}, got {algorithm!r}.")
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}.")
    return algorithm, int(batch_size)


# ------------------------------------------------------------------ streams


class ChunkStream:
    """Chunks of data that need not fit in memory.

    Parameters
    ----------
    source : callable or iterable
        A callable returning a fresh iterator of chunks (re-iterable: exact EM
        and several online passes), or an iterator/generator (one pass).
    """

    def __init__(self, source):
        if isinstance(source, ChunkStream):
            source = source.source
        self.source = source
        self.reiterable = callable(source) or (isinstance(source, Iterable) and not isinstance(source, Iterator))
        self._used = False

    def __iter__(self):
        if callable(self.source):
            return iter(self.source())
        if not self.reiterable:
            if self._used:
                raise ValueError("this stream is a one-shot iterator that has already been consumed; pass a "
                                 "callable returning a fresh iterator to make several passes.")
            self._used = True
            head, self._head = getattr(self, "_head", []), []
            return _replay(head, self.source)
        return iter(self.source)

    def first(self):
        """The first chunk (kept for the next pass of a one-shot iterator)."""
        if self.reiterable:
            it = iter(self)
        else:
            if self._used:
                raise ValueError("this stream is a one-shot iterator that has already been consumed.")
            if getattr(self, "_head", None):
                return self._head[0]
            it = self.source
        try:
            chunk = next(it)
        except StopIteration:
            raise ValueError("the stream of chunks is empty; it must yield at least one 2-D array of rows.") from None
        if not self.reiterable:
            self._head = [chunk]
        return chunk


def _replay(head: list, source):
    """``head``'s chunks (popped, so none is held once yielded), then the rest of ``source``."""
    while head:
        yield head.pop(0)
    yield from source


def as_stream(X):
    """A :class:`ChunkStream` for a stream of chunks, ``None`` for in-memory data.

    In-memory data: numpy arrays, lists/tuples, DataFrames and anything else
    with a ``shape``. Streams: ``ChunkStream``, callables, iterators and
    generators.
    """
    if isinstance(X, ChunkStream):
        return X
    if isinstance(X, (np.ndarray, list, tuple)) or hasattr(X, "shape") or hasattr(X, "columns"):
        return None
    if callable(X) or isinstance(X, Iterator):
        return ChunkStream(X)
    return None


def rebatch(chunks, batch_size: int, check_chunk):
    """Yield ``(rows, is_last)``: row arrays of whole minibatches (a multiple of
    ``batch_size`` rows), then a final shorter remainder.

    ``check_chunk(chunk, index)`` validates each chunk and returns it as a
    2-D float array. Only one chunk and fewer than ``batch_size`` leftover
    rows are held at a time.
    """
    leftover = None
    count = 0
    for index, chunk in enumerate(chunks):
        rows = check_chunk(chunk, index)
        count += 1
        if leftover is not None and len(leftover):
            rows = np.concatenate([leftover, rows])
        n_full = (rows.shape[0] // batch_size) * batch_size
        if n_full:
            yield rows[:n_full]
        leftover = rows[n_full:]
    if count == 0:
        raise ValueError("the stream of chunks is empty; it must yield at least one 2-D array of rows.")
    if leftover is not None and len(leftover):
        yield leftover


# ------------------------------------------------------------------ minibatch layout


def minibatch_layout(batch_size: int, floats_per_row: int, block_bytes: int = DEFAULT_BLOCK_BYTES):
    """``(n_blocks, block_size)`` of one minibatch: blocks within the memory budget."""
    cap = max(block_bytes // (8 * max(floats_per_row, 1)), 64)
    block_size = int(min(batch_size, cap))
    return -(-batch_size // block_size), block_size


def stack_minibatches(rows, batch_size: int, layout, *, shift=None, dtype=np.float64, group: int = 1):
    """Rows cut into minibatches of ``batch_size`` as a :class:`Blocks` with a leading minibatch axis.

    Returns ``(blocks, counts)``: ``blocks.X`` is (n_mb, n_blocks, block_size,
    D), zero-padded (weight 0), with ``n_mb`` rounded up to a multiple of
    ``group`` (empty minibatches have count 0); ``counts`` the real rows per
    minibatch. NaN in ``rows`` are kept (models with missing values mask them).
    """
    n, d = rows.shape
    n_blocks, block_size = layout
    n_mb = max(-(-n // batch_size), 1)
    n_mb = -(-n_mb // group) * group
    width = n_blocks * block_size
    padded = np.zeros((n_mb, width, d), dtype=dtype)
    weight = np.zeros((n_mb, width), dtype=dtype)
    counts = np.zeros(n_mb, dtype=np.int64)
    for j in range(n_mb):
        part = rows[j * batch_size:(j + 1) * batch_size]
        if shift is None:
            padded[j, : len(part)] = part
        else:
            np.subtract(part, shift, out=padded[j, : len(part)], casting="unsafe")
        weight[j, : len(part)] = 1.0
        counts[j] = len(part)
    blocks = Blocks(
        X=jnp.asarray(padded.reshape(n_mb, n_blocks, block_size, d)),
        weight=jnp.asarray(weight.reshape(n_mb, n_blocks, block_size)),
        n_samples=jnp.asarray(counts.astype(dtype)),
    )
    return blocks, counts


# ------------------------------------------------------------------ steps


def example_blocks(layout, n_features: int, dtype) -> Blocks:
    """Zero :class:`Blocks` shaped like one minibatch (to size the loop state)."""
    n_blocks, block_size = layout
    return Blocks(jnp.zeros((n_blocks, block_size, n_features), dtype), jnp.zeros((n_blocks, block_size), dtype),
                  jnp.asarray(1.0, dtype))


def init_state(model, params, batch, hyper, key) -> loop.LoopState:
    """Loop state at ``params`` with zero statistics shaped like one minibatch's."""
    scale = jnp.asarray(1.0, jax.tree.leaves(params)[0].dtype)
    return loop.init(Scaled(model), params, (batch, scale), hyper, key)


@partial(jax.jit, static_argnames=("model", "schedule"))
def online_step(model, schedule, state, batch, scale, hyper):
    """One online-EM step on one minibatch; returns ``(state, objective)``."""
    return loop.step(Scaled(model), schedule, state, (batch, scale), hyper, 0.0)


@partial(jax.jit, static_argnames=("model", "schedule"))
def online_scan(model, schedule, state, batches, scales, active, hyper):
    """Online-EM steps over stacked minibatches (leading axis) in one ``lax.scan``.

    A minibatch with ``active`` False (padding of the last group) is skipped
    (``lax.cond``) and leaves the state unchanged, so groups have one shape
    and compile once. Returns
    ``(state, objectives)``, one objective per minibatch (at the parameters
    entering its step; NaN for padding).
    """

    def body(st, xs):
        batch, scale, on = xs

        def skip(st, batch, scale):
            return st, jnp.full((), jnp.nan, st.objective.dtype)

        def run(st, batch, scale):
            return loop.step(Scaled(model), schedule, st, (batch, scale), hyper, 0.0)

        return jax.lax.cond(on, run, skip, st, batch, scale)

    return jax.lax.scan(body, state, (batches, scales, active))


@partial(jax.jit, static_argnames=("model",))
def chunk_stats(model, params, batch, hyper):
    """Exact expected statistics and objective of one chunk at fixed ``params``."""
    return model.expected_stats(None, params, batch, hyper)


@partial(jax.jit, static_argnames=("model",))
def _m_step(model, stats, hyper, previous):
    return model.m_step(stats, hyper, previous)


def exact_stream_step(model, params, batches, hyper):
    """One exact EM iteration over a stream: ``theta = m_step(sum_chunks S_hat(chunk; theta))``.

    ``batches`` yields ``(data, weight)``: the model's data for one chunk and
    the weight of its objective in the total (its row count for a per-row
    mean objective, 1 for a total). Returns ``(new_params, stats,
    objective)`` with the objective at ``params`` aggregated the same way.
    """
    total, objective, weight_sum = None, 0.0, 0.0
    for data, weight in batches:
        stats, obj = chunk_stats(model, params, data, hyper)
        total = stats if total is None else stats_add(total, stats)
        objective += float(obj) * weight
        weight_sum += weight
    if total is None:
        raise ValueError("the stream of chunks is empty; it must yield at least one 2-D array of rows.")
    return _m_step(model, total, hyper, params), total, objective / weight_sum


def _epoch_chunks(source, rng):
    """The chunks of one pass: a stream's, or an in-memory array (shuffled if ``rng``)."""
    if isinstance(source, ChunkStream):
        return iter(source)
    return iter([source if rng is None else source[rng.permutation(source.shape[0])]])


def _scan_rows(model, schedule, state, rows, hyper, n_total, batch_size, layout, group, shift, dtype):
    """Online-EM steps over the minibatches of ``rows``, ``group`` minibatches per compiled call."""
    blocks, counts = stack_minibatches(rows, batch_size, layout, shift=shift, dtype=dtype, group=group)
    scales = np.where(counts > 0, n_total / np.maximum(counts, 1), 0.0).astype(dtype)
    objectives = []
    for g in range(0, counts.shape[0], group):
        part = jax.tree.map(lambda a: a[g:g + group], blocks)
        state, obj = online_scan(model, schedule, state, part, jnp.asarray(scales[g:g + group]),
                                 jnp.asarray(counts[g:g + group] > 0), hyper)
        objectives.append(np.asarray(obj))
    objectives = np.concatenate(objectives)
    return state, objectives[counts > 0], counts[counts > 0]


def run_rows(model, state, source, hyper, *, batch_size, layout, shift, dtype, schedule, max_epochs, tol,
             check_chunk, rng=None, n_total=None, progress="auto", description="online EM"):
    """Online EM over row data: an in-memory array (reshuffled each pass) or a :class:`ChunkStream`.

    Runs up to ``max_epochs`` passes (one for a one-shot stream) and stops
    when the pass-mean objective changes by less than ``tol``. The model's
    objective must be a per-row mean. Returns ``(state, history, converged,
    n_total)``: ``history`` holds one row-weighted mean objective per pass.
    """
    history, seen, group, converged = [], 0, None, False
    with FitProgress(max_epochs, description, progress) as bar:
        for epoch in range(max_epochs):
            objectives, counts = [], []
            for rows in rebatch(_epoch_chunks(source, rng), batch_size, check_chunk):
                if group is None:  # minibatches per compiled call, fixed for the fit
                    group = min(64, -(-rows.shape[0] // batch_size))
                if epoch == 0:
                    seen += rows.shape[0]
                size = float(n_total if n_total is not None else seen)
                state, obj, cnt = _scan_rows(model, schedule, state, rows, hyper, size, batch_size, layout,
                                             group, shift, dtype)
                objectives.append(obj)
                counts.append(cnt)
            history.append(epoch_objective(np.concatenate(objectives), np.concatenate(counts), "mean"))
            bar.update(epoch + 1, history[-1])
            if epoch == 0 and n_total is None:
                n_total = seen
            if len(history) > 1 and abs(history[-1] - history[-2]) < tol:
                converged = True
                break
            if isinstance(source, ChunkStream) and not source.reiterable:
                break
    return state, np.asarray(history), converged, int(n_total)


def run_rows_exact(model, params, stream, hyper, *, make_data, check_chunk, max_iter, tol, progress="auto",
                   description="EM"):
    """Exact EM over a re-iterable stream: every iteration sums the chunk statistics.

    ``check_chunk(chunk, index)`` validates a chunk into a 2-D float array and
    ``make_data(rows)`` turns it into the model's data; the model's
    objective is a per-row mean. Returns ``(params, stats, history,
    converged)``, the history at the parameters entering each iteration
    (scikit-learn's convention, as :func:`lateo.core.loop.run`).
    """
    if not stream.reiterable:
        raise ValueError("exact (batch) EM makes one pass over the data per iteration, so a stream must be "
                         "re-iterable: pass a callable returning a fresh iterator of chunks, or use "
                         "algorithm='online' for a single pass over an iterator.")
    history, converged, stats = [], False, None
    with FitProgress(max_iter, description, progress) as bar:
        for it in range(max_iter):
            rows_iter = (check_chunk(chunk, index) for index, chunk in enumerate(stream))
            batches = ((make_data(rows), rows.shape[0]) for rows in rows_iter)
            params, stats, objective = exact_stream_step(model, params, batches, hyper)
            history.append(objective)
            bar.update(it + 1, objective)
            if len(history) > 1 and abs(history[-1] - history[-2]) < tol:
                converged = True
                break
    return params, stats, np.asarray(history), converged


def epoch_objective(objectives, counts, kind: str) -> float:
    """Aggregate minibatch objectives: the row-weighted mean ("mean") or their sum ("sum")."""
    objectives, counts = np.asarray(objectives, np.float64), np.asarray(counts, np.float64)
    if kind == "sum":
        return float(objectives.sum())
    return float((objectives * counts).sum() / counts.sum())


__all__ = [
    "ALGORITHMS", "ChunkStream", "DEFAULT_STEP_SIZE", "FirstStepExact", "Scaled", "as_stream", "check_options",
    "check_schedule", "chunk_stats", "epoch_objective", "exact_stream_step", "init_state", "minibatch_layout",
    "online_scan", "online_step", "rebatch", "stack_minibatches",
]
