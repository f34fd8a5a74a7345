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

Statistics that are not sums merge through the model's ``combine_stats``
hook in the same tree reduction: k-means (:func:`fit_kmeans`, Lloyd's
algorithm as hard-assignment EM) adds counts, sums and inertia but merges
the farthest points, which refill empty clusters, as a top-K.
"""

from __future__ import annotations

import functools
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


def _sum_stats(stats):
    """Leaf-wise sum of a list of statistics pytrees, left to right."""
    return jax.tree.map(lambda *leaves: sum(leaves[1:], leaves[0]), *stats)


def combine_stats(model, stats):
    """Combine the statistics of several partitions (a list, in data order) into those of their union.

    Uses the model's ``combine_stats(stats)`` hook when it has one (for
    statistics that are not all sums, e.g. Lloyd's farthest points, merged
    as a top-K: :meth:`lateo.models._kmeans_lloyd.Lloyd.combine_stats`),
    else adds them leaf by leaf.
    """
    hook = getattr(model, "combine_stats", None)
    return (hook if hook is not None else _sum_stats)(list(stats))


def _add(*items, combine=None):
    """Combined partial results (``None`` = empty); statistics through ``combine`` (default: a sum)."""
    items = [it for it in items if it is not None]
    if not items:
        return None
    stats = (combine if combine is not None else _sum_stats)([it[0] for it in items])
    return stats, sum(it[1] for it in items), sum(it[2] for it in items), sum(it[3] for it in items)


def tree_sum(items, split_every: int = SPLIT_EVERY, combine=None):
    """Tree reduction of delayed partial results, ``split_every`` per node, in data order.

    Parameters
    ----------
    items : list of dask.delayed
        Partial results ``(statistics, weighted objective, weight, count)``
        (or ``None``), one per partition, in data order.
    split_every : int, default=8
        Partial results merged per node of the tree.
    combine : callable, optional
        ``combine(list_of_statistics) -> statistics``, applied to the
        statistics of the partial results of a node, in data order (a
        model's ``combine_stats`` hook). Default: leaf-wise addition.

    Returns
    -------
    dask.delayed
        The combined result (``None`` if every partition is empty).
    """
    import dask

    return tree_reduce(items, dask.delayed(functools.partial(_add, combine=combine)), split_every)


def tree_reduce(items, node, split_every: int = SPLIT_EVERY):
    """``items`` reduced in a tree, in data order: ``node(*group)`` merges ``split_every`` of them
    (``node`` builds a lazy merge: a ``dask.delayed`` function, or ``partial(client.submit, fn)``
    for futures). Returns the root."""
    items = list(items)
    while len(items) > 1:
        items = [node(*items[i:i + split_every]) for i in range(0, len(items), split_every)]
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
    """Summed statistics and the objective at ``params`` (combined as the module docstring says).

    Statistics that are not sums are merged by the model's ``combine_stats``
    hook (see :func:`combine_stats`).
    """
    client = get_client(data.client)
    parts = _delayed_partition_stats(model, params, data, hyper, make_data)
    total = client.compute(tree_sum(parts, combine=getattr(model, "combine_stats", None))).result()
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
    model = HiddenMarkovEM(est._family(), est.params, est.implementation)
    make_data = SequenceData(shift, dtype, est._check_sequences)
    params, _, history, converged = run_em(model, params0, data, hyper, make_data=make_data, max_iter=est.n_iter,
                                           tol=est.tol, progress=est.progress, description=type(est).__name__)
    est._store_fit(params, shift, converged, len(history), history, seqs[0].shape[1])
    return est


def _partition_labels(make_data, centers, part, index):
    """Nearest-center labels (int32) and inertia of one partition's rows (on a worker)."""
    from ..models._kmeans_lloyd import labels_inertia

    data, n = make_data(part, index)
    if data is None:
        return np.zeros(0, np.int32), 0.0
    labels, inertia = labels_inertia(data, centers.value)
    return np.asarray(labels[:n]).astype(np.int32), float(inertia)


def kmeans_labels(centers, data: Partitioned, make_data):
    """Labels of every row (gathered to the client, in data order) and the total inertia at ``centers``."""
    import dask

    client = get_client(data.client)
    fn = dask.delayed(_partition_labels, pure=False)
    c = _Opaque(jax.device_get(centers))
    out = client.gather(client.compute([fn(make_data, c, part, j) for j, part in enumerate(data.parts)]))
    return np.concatenate([labels for labels, _ in out]), float(sum(inertia for _, inertia in out))


def fit_kmeans(est, X, *, client=None, names=None):
    """Fit :class:`~lateo.models.kmeans.KMeans` on a Dask array/DataFrame by distributed Lloyd iterations.

    Lloyd's algorithm is hard-assignment EM (:class:`lateo.models._kmeans_lloyd.Lloyd`),
    so it runs in :func:`run_em`: each iteration assigns the rows of every
    partition on the workers and combines the partition statistics in the
    tree reduction (counts, sums and inertia added, the farthest points
    merged as a top-K by the model's ``combine_stats`` hook). The
    centring shift (the sample's mean), the seeding (k-means++ or random
    rows, ``n_init`` runs with the keys of the single-process fit) and the
    tolerance's feature variance come from the client-side sample of
    :func:`sample_rows` (the variance from the whole data when the sample is
    smaller); with no more rows than the sample size, everything equals the
    single-process fit's. A final pass on the workers assigns every row to
    the final centers; ``labels_`` is gathered to the client (int32, one
    per row).

    Parameters
    ----------
    est : KMeans
    X : dask.array.Array or dask.dataframe.DataFrame
        2-D, numeric, with known chunk sizes.
    client : distributed.Client, optional
        Default: the active Client.
    names : array of str, optional
        Feature names (stored as ``feature_names_in_``).

    Returns
    -------
    KMeans
        ``est``, fitted.
    """
    from .._validation import check_array, check_random_key
    from ..models._kmeans_lloyd import (KMeansParams, KMeansResult, Lloyd, _initial_centers, same_clustering,
                                        scaled_tolerance)

    client = get_client(client)
    data = row_partitions(X, client)
    init, dtype = est._check_params(data.n_rows, data.n_features)
    key = check_random_key(est.random_state)
    sample = check_array(sample_rows(data, key), name="X")
    if sample.shape[0] < est.n_clusters:
        raise ValueError(f"the client-side sample holds {sample.shape[0]} rows, fewer than n_clusters="
                         f"{est.n_clusters}; raise the Dask config key 'lateo.distributed.sample-rows'.")
    mean = sample.mean(axis=0)
    init, n_init = est._runs(init, mean, stacklevel=4)
    sample_blocks = make_blocks(sample, est._block_size(*sample.shape), shift=mean, dtype=dtype)
    if sample.shape[0] == data.n_rows:  # the whole data: the single-process tolerance exactly
        tol = float(scaled_tolerance(sample_blocks, jnp.asarray(est.tol, dtype)))
    else:
        variance = client.compute((data.collection.astype(np.float64) - mean).var(axis=0)).result()
        tol = float(np.mean(variance) * est.tol) if est.tol != 0 else 0.0
    model = Lloyd()
    make_data = RowData(np.asarray(mean, np.float64), dtype, est._floats_per_row(data.n_features))
    best = None
    for sub in jax.random.split(key, n_init):
        params0 = KMeansParams(jnp.asarray(_initial_centers(sub, sample_blocks, est.n_clusters, init), dtype))
        params, _, history, converged = run_em(model, params0, data, None, make_data=make_data,
                                               max_iter=est.max_iter, tol=tol, progress=est.progress,
                                               description="k-means")
        labels, inertia = kmeans_labels(params.centers, data, make_data)
        run = KMeansResult(params.centers, labels, inertia, len(history), converged)
        if best is None or (run.inertia < best.inertia and not same_clustering(run.labels, best.labels)):
            best = run
    return est._store_fit(best, mean, data.n_features, names, stacklevel=4)


def _warn_unconverged(converged: bool, max_iter: int) -> None:
    if not converged and max_iter > 0:
        warnings.warn("distributed EM did not converge; increase max_iter or tol.", ConvergenceWarning, stacklevel=3)


__all__ = [
    "Partitioned", "RowData", "SequenceData", "combine_stats", "expected_stats", "fit_kmeans", "fit_rows",
    "fit_sequences", "get_client", "is_dask_input", "kmeans_labels", "partition_stats", "row_partitions", "run_em",
    "sample_rows", "sample_sequences", "sequence_partitions", "tree_sum",
]
