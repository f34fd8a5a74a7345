"""Distributed exact EM on a Dask cluster: statistics computed where the data live.

Exact EM's statistics are sums over rows (or sequences), so over the
partitions ``P_1, ..., P_m`` of the data (DESIGN.md section 1, the
"distributed EM" row; seed 004)::

    S_hat(theta_k) = sum_{j=1}^m E[S(P_j, Z_j) | P_j; theta_k]      (on the workers)
    theta_{k+1}    = m_step(S_hat(theta_k))                         (on the client)

Every iteration sends ``theta_k`` to the workers, runs the model's own
jitted E-step (:func:`lateo.algorithms.online_em.chunk_stats`, the function
the single-process and streamed fits run: no second copy of the maths) on
each partition, adds the partition statistics in a tree reduction
(``split_every`` at a time, on the workers) and brings only the total back.
This is :func:`lateo.algorithms.online_em.run_rows_exact` with the chunks on
workers. The data are persisted on the workers once (unless the Dask config
key ``lateo.distributed.persist`` is False: then each iteration recomputes
the partitions from their graph, e.g. data generated lazily and larger than
the cluster's memory). Only statistics and parameters travel. A lost worker
costs a recomputation of its partitions (Dask's lineage), not the result.

The objective is combined as the single-process one: with ``f_j`` the
model's objective on partition ``j`` (the per-row mean log-likelihood for
row models, weight ``n_j``; the total for sequence models, weight 1) and
``log p(theta)`` the model's log-prior (``model.log_prior``, 0 if absent),
``f = (sum_j w_j f_j - (m - 1) log p(theta)) / W`` (``W = sum_j n_j`` for
row models, 1 otherwise), since each partition's ``f_j`` includes the prior.

Inputs: a 2-D Dask array or a Dask DataFrame of numeric columns (row
models), a Dask bag whose items are sequences, or a list of
``dask.delayed`` objects each yielding one sequence (HMMs). Initial
parameters come from a sample computed to the client (see
:func:`sample_rows` and :func:`sample_sequences`; Dask config keys
``lateo.distributed.sample-rows``, default 100,000 rows, and
``lateo.distributed.sample-sequences``, default 1,000 sequences): when the
data are no larger, the sample is the whole data in order and the
initialisation equals the single-process fit's.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ..core.blocks import choose_block_size, make_blocks
from ..core.progress import FitProgress
from ..core.sequences import bucket_sequences, split_sequences
from ..exceptions import ConvergenceWarning
from .online_em import _m_step, chunk_stats

SAMPLE_ROWS = 100_000
SAMPLE_SEQUENCES = 1_000
SPLIT_EVERY = 8


# ------------------------------------------------------------------ inputs


def is_dask_input(X) -> bool:
    """Whether ``X`` is a Dask collection or a non-empty list of ``dask.delayed`` objects (no dask import otherwise)."""
    if isinstance(X, (list, tuple)) and X:
        return type(X[0]).__module__.startswith("dask")
    if not type(X).__module__.startswith("dask"):
        return False
    import dask

    return dask.is_dask_collection(X)


def _config(key: str, default):
    import dask

    return dask.config.get(f"lateo.distributed.{key}", default)


def get_client(client=None):
    """The Client to use: ``client``, else the active default one; raises if none or closed."""
    import distributed

    if client is None:
        try:
            client = distributed.default_client()
        except ValueError:
            raise ValueError("X is a Dask collection, but no dask.distributed Client is active. Start one "
                             "(`from dask.distributed import Client; client = Client()` or Client('tcp://scheduler:8786')) "
                             "or pass client= to fit.") from None
    if not isinstance(client, distributed.Client):
        raise TypeError(f"client must be a dask.distributed.Client, got {type(client).__name__}.")
    status = getattr(client, "status", "running")
    if status != "running":
        raise ValueError(f"the dask.distributed Client is not running (status {status!r}): it was closed. "
                         "Create a new Client (or reconnect to the scheduler) and fit again.")
    return client


@dataclass
class Partitioned:
    """Data split into partitions on a cluster: ``parts`` are ``dask.delayed`` objects, one per partition."""

    parts: list
    collection: Any
    client: Any
    n_rows: int | None = None
    n_features: int | None = None


def _maybe_persist(collection, client):
    return client.persist(collection) if _config("persist", True) else collection


def row_partitions(X, client, *, name: str = "X") -> Partitioned:
    """Validate a 2-D Dask array or a Dask DataFrame and split it into row partitions.

    Raises ``ValueError`` for unknown chunk sizes, non-numeric dtypes and
    arrays that are not 2-D. Column chunks are merged (a partition holds
    whole rows).
    """
    import dask.array as da

    if hasattr(X, "dtypes") and hasattr(X, "columns"):  # Dask DataFrame
        bad = [f"{c!r} ({t})" for c, t in X.dtypes.items() if getattr(t, "kind", "O") not in "biuf"]
        if bad:
            raise ValueError(f"{name} is a Dask DataFrame with non-numeric columns {', '.join(bad)}; every column "
                             "must be numeric. Drop or encode them first, e.g. X[numeric_columns].")
        X = _maybe_persist(X, client).to_dask_array(lengths=True)  # lengths from the persisted partitions
    if not isinstance(X, da.Array):
        raise TypeError(f"{name} must be a 2-D Dask array or a Dask DataFrame for a row model, "
                        f"got {type(X).__name__}.")
    if X.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n_samples, n_features), got a Dask array of shape {X.shape}.")
    if X.dtype.kind not in "biuf":
        raise ValueError(f"{name} must hold numbers, got a Dask array of dtype {X.dtype}; cast it, e.g. "
                         "X.astype('float64'), after removing non-numeric data.")
    if any(np.isnan(c) for c in X.chunks[0]) or any(np.isnan(c) for c in X.chunks[1]):
        raise ValueError(f"{name} is a Dask array with unknown chunk sizes (from boolean indexing or a "
                         "DataFrame's .values); call X.compute_chunk_sizes() first, or build it with "
                         "df.to_dask_array(lengths=True).")
    if len(X.chunks[1]) > 1:
        X = X.rechunk({1: -1})
    X = _maybe_persist(X, client)
    return Partitioned(list(X.to_delayed().ravel()), X, client, int(X.shape[0]), int(X.shape[1]))


def _as_list(item):
    return [item]


def sequence_partitions(X, client, *, name: str = "X") -> Partitioned:
    """A Dask bag of sequences, or a list of delayed sequences (one bag partition each), as partitions."""
    import dask
    import dask.bag as db

    if isinstance(X, (list, tuple)):
        if not all(isinstance(d, dask.delayed(0).__class__) for d in X):
            raise TypeError(f"{name}: a list given to a distributed HMM fit must hold only dask.delayed objects, "
                            "each yielding one sequence (2-D array).")
        X = db.from_delayed([dask.delayed(_as_list)(d) for d in X])
    if not isinstance(X, db.Bag):
        raise TypeError(f"{name} must be a Dask bag of sequences (2-D arrays) or a list of dask.delayed "
                        f"sequences for a distributed HMM fit, got {type(X).__name__}; a Dask array of concatenated "
                        "rows is not accepted (its chunks need not end at sequence boundaries): use "
                        "dask.bag.from_sequence(list_of_sequences, npartitions=...).")
    X = _maybe_persist(X, client)
    return Partitioned(list(X.to_delayed()), X, client)


# ------------------------------------------------------------------ partition data


@dataclass(frozen=True)
class RowData:
    """Turns a partition of rows into the model's :class:`~lateo.core.blocks.Blocks` (on a worker).

    ``weight`` of a partition is its row count (row models' objective is a
    per-row mean). NaN are accepted only if ``allow_nan``; inf never.
    """

    shift: Any
    dtype: Any
    floats_per_row: int
    allow_nan: bool = False
    mean_objective = True

    def __call__(self, part, index: int):
        rows = np.asarray(part)
        if rows.shape[0] == 0:
            return None, 0
        finite = ~np.isinf(rows) if self.allow_nan else np.isfinite(rows)
        if not finite.all():
            what = "infinite" if self.allow_nan else "NaN or infinite"
            raise ValueError(f"partition {index} of X contains {what} values; remove or impute them.")
        size = choose_block_size(rows.shape[0], self.floats_per_row)
        return make_blocks(rows, size, shift=self.shift, dtype=self.dtype), rows.shape[0]


@dataclass(frozen=True)
class SequenceData:
    """Turns a partition (a list of sequences) into length buckets (on a worker); weight 1 (a total objective)."""

    shift: Any
    dtype: Any
    check: Any
    mean_objective = False

    def __call__(self, part, index: int):
        part = list(part)
        if not part:
            return None, 0
        seqs = self.check(split_sequences(part, None, name=f"partition {index} of X"))
        if self.shift is not None:
            seqs = [s - self.shift for s in seqs]
        return bucket_sequences(seqs, self.dtype).batches, 1


# ------------------------------------------------------------------ map-reduce


class _Opaque:
    """Carries a value through ``dask.delayed`` untouched (no traversal of NamedTuples)."""

    def __init__(self, value):
        self.value = value


def _partition_stats(model, make_data, hyper, params, part, index):
    """``(S_j, w_j f_j, w_j, 1)`` of one partition as numpy (``None`` for an empty partition)."""
    data, weight = make_data(part, index)
    if data is None:
        return None
    stats, objective = chunk_stats(model, params.value, data, hyper.value)
    return jax.device_get(stats), float(objective) * weight, float(weight), 1


def _add(*items):
    """Sum of partial results (``None`` = empty)."""
    items = [it for it in items if it is not None]
    if not items:
        return None
    stats = jax.tree.map(lambda *leaves: sum(leaves[1:], leaves[0]), *[it[0] for it in items])
    return stats, sum(it[1] for it in items), sum(it[2] for it in items), sum(it[3] for it in items)


def tree_sum(items, split_every: int = SPLIT_EVERY):
    """Tree reduction of delayed partial results, ``split_every`` per node."""
    import dask

    items = list(items)
    while len(items) > 1:
        items = [dask.delayed(_add)(*items[i:i + split_every]) for i in range(0, len(items), split_every)]
    return items[0]


def _delayed_partition_stats(model, params, data: Partitioned, hyper, make_data):
    import dask

    fn = dask.delayed(_partition_stats, pure=False)
    p, h = _Opaque(jax.device_get(params)), _Opaque(jax.device_get(hyper))
    return [fn(model, make_data, h, p, part, j) for j, part in enumerate(data.parts)]


def partition_stats(model, params, data: Partitioned, hyper, make_data):
    """Per-partition ``(statistics, weighted objective, weight, 1)`` at ``params``, computed on the workers."""
    client = get_client(data.client)
    return client.gather(client.compute(_delayed_partition_stats(model, params, data, hyper, make_data)))


def expected_stats(model, params, data: Partitioned, hyper, make_data):
    """Summed statistics and the objective at ``params`` (combined as the module docstring says)."""
    client = get_client(data.client)
    total = client.compute(tree_sum(_delayed_partition_stats(model, params, data, hyper, make_data))).result()
    if total is None:
        raise ValueError("X has no rows: every partition is empty.")
    stats, weighted, weight, n_parts = total
    log_prior = float(model.log_prior(params, hyper)) if hasattr(model, "log_prior") else 0.0
    objective = weighted - (n_parts - 1) * log_prior
    return stats, objective / (weight if make_data.mean_objective else 1.0)


def run_em(model, params, data: Partitioned, hyper, *, make_data, max_iter: int, tol: float, progress="auto",
           description="EM", callback=None):
    """Exact EM with the E-step on the workers; returns ``(params, stats, history, converged)``.

    The history holds the objective at the parameters entering each
    iteration and the convergence test is the model's ``has_converged``
    (default ``|f_k - f_{k-1}| < tol``), as in :func:`lateo.core.loop.run`.
    ``callback(iteration, params, objective)``, if given, runs on the client
    after every iteration.
    """
    test = getattr(model, "has_converged", None)
    history, converged, stats, previous = [], False, None, -np.inf
    with FitProgress(max_iter, description, progress) as bar:
        for it in range(max_iter):
            stats, objective = expected_stats(model, params, data, hyper, make_data)
            old, params = params, _m_step(model, jax.tree.map(jnp.asarray, stats), hyper, params)
            history.append(objective)
            bar.update(it + 1, objective)
            if callback is not None:
                callback(it + 1, params, objective)
            change = objective - previous
            previous = objective
            done = bool(test(old, params, change, tol)) if test is not None else abs(change) < tol
            if done:
                converged = True
                break
    return params, stats, np.asarray(history), converged


# ------------------------------------------------------------------ samples


def _seed(key) -> int:
    return int(jax.random.randint(jax.random.fold_in(key, 0x5A3), (), 0, 2**31 - 1))


def sample_rows(data: Partitioned, key, size: int | None = None) -> np.ndarray:
    """Rows drawn uniformly without replacement, in data order, computed to the client.

    All rows, in order, when ``n_rows <= size`` (then an initialisation from
    the sample equals the single-process one).
    """
    size = int(_config("sample-rows", SAMPLE_ROWS) if size is None else size)
    client, X = data.client, data.collection
    if data.n_rows <= size:
        return np.asarray(client.compute(X).result())
    idx = np.sort(np.random.default_rng(_seed(key)).choice(data.n_rows, size=size, replace=False))
    return np.asarray(client.compute(X[idx]).result())


def _pick(part, wanted):
    return [item for i, item in enumerate(part) if i in wanted]


def sample_sequences(data: Partitioned, key, size: int | None = None) -> list:
    """Sequences drawn uniformly without replacement, in data order (all of them when there are at most ``size``)."""
    import dask

    size = int(_config("sample-sequences", SAMPLE_SEQUENCES) if size is None else size)
    client = data.client
    counts = client.gather(client.compute([dask.delayed(len)(p) for p in data.parts]))
    total = int(sum(counts))
    if total == 0:
        raise ValueError("X holds no sequence; pass at least one sequence of length >= 1.")
    chosen = np.arange(total) if total <= size else np.sort(
        np.random.default_rng(_seed(key)).choice(total, size=size, replace=False))
    starts = np.concatenate([[0], np.cumsum(counts)])
    picks = [dask.delayed(_pick)(p, set((chosen[(chosen >= a) & (chosen < b)] - a).tolist()))
             for p, a, b in zip(data.parts, starts[:-1], starts[1:])]
    data.n_rows = total
    return [s for part in client.gather(client.compute(picks)) for s in part]


# ------------------------------------------------------------------ estimator glue


def fit_rows(est, X, *, client=None, n_init: int = 1, names=None):
    """Fit a row estimator (GaussianMixture, PPCA) on a Dask array/DataFrame by distributed exact EM.

    Uses the estimator's hooks of :class:`lateo.models._online.OnlineRowsMixin`
    (``_online_check_chunk``, ``_online_init``, ``_online_model``,
    ``_online_store``) with the client-side sample of :func:`sample_rows`;
    keys are split as in the single-process batch fits. Restarts
    (``n_init``) keep the highest final objective.
    """
    from .._config import resolve_dtype
    from .._validation import check_random_key

    client = get_client(client)
    data = row_partitions(X, client)
    dtype = resolve_dtype(est.dtype)
    key = check_random_key(est.random_state)
    sample = est._online_check_chunk(sample_rows(data, key), None)
    model, floats = est._online_model()
    allow_nan = bool(est.__sklearn_tags__().input_tags.allow_nan)
    best = None
    for _ in range(n_init):
        key, init_key, _loop_key = jax.random.split(key, 3)
        params0, shift, hyper = est._online_init(sample, init_key, dtype)
        make_data = RowData(np.asarray(shift, np.float64), dtype, floats, allow_nan)
        out = run_em(model, params0, data, hyper, make_data=make_data, max_iter=est._max_iter(), tol=est.tol,
                     progress=est.progress, description=type(est).__name__)
        final = out[2][-1] if len(out[2]) else -np.inf
        if best is None or final > best[0]:
            best = (final, out, shift)
    _, (params, _, history, converged), shift = best
    _warn_unconverged(converged, est._max_iter())
    est._online_store(params, shift, history, converged, len(history), names)
    est.__dict__.pop("_online_", None)
    return est


def fit_sequences(est, X, *, client=None):
    """Fit an HMM estimator (Baum-Welch) on a Dask bag / delayed list of sequences.

    Initial parameters, the centring shift and the hyper-parameters come
    from the sample of :func:`sample_sequences` through the estimator's
    hooks (``_initial_transitions``, ``_initial_emission``, ``_hyper``); the
    keys are split as in the single-process ``fit``.
    """
    from .._config import resolve_dtype
    from .._validation import check_random_key
    from ..models._hmm_em import HiddenMarkovEM, HMMParams

    client = get_client(client)
    data = sequence_partitions(X, client)
    dtype = resolve_dtype(est.dtype)
    key, init_key, _loop_key = jax.random.split(check_random_key(est.random_state), 3)
    seqs = est._check_sequences(split_sequences(sample_sequences(data, key), None))
    shift = est._shift(seqs)
    X_all = np.concatenate(seqs)
    start, trans = est._initial_transitions(dtype)
    params0 = HMMParams(start, trans, est._initial_emission(init_key, X_all, shift, dtype))
    hyper = est._hyper(X_all, dtype)
    model = HiddenMarkovEM(est._family(), est.params)
    make_data = SequenceData(shift, dtype, est._check_sequences)
    params, _, history, converged = run_em(model, params0, data, hyper, make_data=make_data, max_iter=est.n_iter,
                                           tol=est.tol, progress=est.progress, description=type(est).__name__)
    est._store_fit(params, shift, converged, len(history), history, seqs[0].shape[1])
    return est


def _warn_unconverged(converged: bool, max_iter: int) -> None:
    if not converged and max_iter > 0:
        warnings.warn("distributed EM did not converge; increase max_iter or tol.", ConvergenceWarning, stacklevel=3)


__all__ = [
    "Partitioned", "RowData", "SequenceData", "expected_stats", "fit_rows", "fit_sequences", "get_client",
    "is_dask_input", "partition_stats", "row_partitions", "run_em", "sample_rows", "sample_sequences",
    "sequence_partitions", "tree_sum",
]
