"""k-means maths: Lloyd's algorithm on the statistics loop, and k-means++ seeding.

k-means minimises the *inertia* ``sum_i w_i ||x_i - c_{z_i}||^2`` over
centers ``c_1..c_K`` and labels ``z_i``. Lloyd's algorithm (Lloyd 1982,
"Least squares quantization in PCM") alternates

    z_i     = argmin_k ||x_i - c_k||^2                    (assignment)
    c_k     = sum_{i: z_i = k} w_i x_i / sum_{i: z_i = k} w_i   (update)

which is hard-assignment EM, so it runs on the core loop (DESIGN.md section
1): the statistics are the counts ``n_k`` and sums ``s_k`` per cluster (plus
the farthest points, for scikit-learn's empty-cluster relocation), the
M-step is ``c_k = s_k / n_k``, and ``gamma = 1`` (``Constant()``). Over a
Dask cluster (:func:`lateo.algorithms.distributed.fit_kmeans`) the
statistics of the partitions are merged by :meth:`Lloyd.combine_stats`.

k-means++ (Arthur & Vassilvitskii 2007, "k-means++: the advantages of careful
seeding") draws the first center uniformly and each next one with
probability proportional to ``D(x)^2``, the squared distance to the nearest
chosen center; the greedy variant keeps, of ``2 + log K`` such draws, the one
that lowers the potential ``sum_i w_i D(x_i)^2`` most.

Everything reproduces scikit-learn's ``KMeans(algorithm="lloyd")``
(``sklearn/cluster/_kmeans.py``): data centered first, the ``tol * mean(var)``
tolerance, strict/tolerance convergence, a final assignment to the final
centers, ``n_init`` restarts keeping the lowest inertia.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .._validation import check_option
from ..core.blocks import Blocks, block_rows, block_sum
from ..core.loop import init as loop_init
from ..core.loop import run as loop_run
from ..core.schedules import Constant

_HIGHEST = jax.lax.Precision.HIGHEST
_INITS = ("k-means++", "random")


class KMeansParams(NamedTuple):
    """Parameters of k-means: ``centers``, shape (n_clusters, n_features)."""

    centers: jax.Array


class LloydStats(NamedTuple):
    """Statistics of one assignment pass: sums and counts, plus the far points.

    ``counts`` (K,) ``n_k = sum_{z_i = k} w_i``; ``sums`` (K, D) ``s_k =
    sum_{z_i = k} w_i x_i``; ``inertia`` ``sum_i w_i ||x_i - c_{z_i}||^2``;
    ``far_dist`` (K,) the K largest ``||x_i - c_{z_i}||^2``, descending (-inf
    past the real rows), with those rows ``far_x`` (K, D), their labels
    ``far_label`` and weights ``far_weight``. The far points merge by top-K
    rather than addition; they feed the empty-cluster relocation.
    """

    counts: jax.Array
    sums: jax.Array
    inertia: jax.Array
    far_dist: jax.Array
    far_x: jax.Array
    far_label: jax.Array
    far_weight: jax.Array


class KMeansResult(NamedTuple):
    """What :func:`kmeans_fit` returns (the best of its runs).

    ``centers`` (K, D) in the blocks' coordinates; ``labels`` (n_samples,)
    numpy int32, each real row's nearest final center; ``inertia`` (float)
    at those centers and labels; ``n_iter`` (int); ``converged`` (bool).
    """

    centers: jax.Array
    labels: np.ndarray
    inertia: float
    n_iter: int
    converged: bool


def _assign(xb, centers):
    """Labels and squared distances of one block's rows to their nearest center.

    The argmin uses scikit-learn's criterion ``||c||^2 - 2 x.c`` (first index
    on ties); the returned distance is the direct ``||x - c_z||^2``.
    """
    scores = jnp.sum(centers**2, axis=1)[None, :] - 2.0 * jnp.dot(xb, centers.T, precision=_HIGHEST)
    labels = jnp.argmin(scores, axis=1).astype(jnp.int32)
    dist = jnp.sum((xb - centers[labels]) ** 2, axis=1)
    return labels, dist


def _block_sums(xb, wb, centers):
    """One block's ``(counts, sums, inertia)`` (padding has weight 0)."""
    labels, dist = _assign(xb, centers)
    onehot = jax.nn.one_hot(labels, centers.shape[0], dtype=xb.dtype) * wb[:, None]
    return onehot.sum(axis=0), jnp.dot(onehot.T, xb, precision=_HIGHEST), jnp.sum(wb * dist)


def _far_rows(blocks: Blocks, centers):
    """The K real rows farthest from their nearest center: a top-K merged block by block."""
    k, d = centers.shape
    dt = blocks.X.dtype

    def body(far, block):
        xb, wb = block
        labels, dist = _assign(xb, centers)
        top, idx = jax.lax.top_k(jnp.concatenate([far[0], jnp.where(wb > 0, dist, -jnp.inf)]), k)
        rest = (jnp.concatenate([old, new])[idx] for old, new in zip(far[1:], (xb, labels, wb)))
        return (top, *rest), None

    init = (jnp.full(k, -jnp.inf, dt), jnp.zeros((k, d), dt), jnp.zeros(k, jnp.int32), jnp.zeros(k, dt))
    return jax.lax.scan(body, init, (blocks.X, blocks.weight))[0]


@jax.jit
def lloyd_stats(blocks: Blocks, centers) -> LloydStats:
    """One assignment pass over the blocks: the statistics at ``centers``.

    The far rows are only searched (a second pass) when a cluster is empty,
    the one case that uses them; otherwise ``far_dist`` is all ``-inf``.
    """
    counts, sums, inertia = block_sum(_block_sums, blocks, centers)
    k, d = centers.shape
    dt = blocks.X.dtype

    def no_far(blocks, centers):
        return jnp.full(k, -jnp.inf, dt), jnp.zeros((k, d), dt), jnp.zeros(k, jnp.int32), jnp.zeros(k, dt)

    far = jax.lax.cond(jnp.any(counts == 0), _far_rows, no_far, blocks, centers)
    return LloydStats(counts, sums, inertia, *far)


@jax.jit
def labels_inertia(blocks: Blocks, centers):
    """Labels of every (padded) row and the inertia of the real rows at ``centers``.

    Returns ``(labels (n_blocks * block_size,), inertia)``; trim the labels
    to ``[:n_samples]``.
    """
    labels, dist = block_rows(_assign, blocks, centers)
    return labels, jnp.sum(blocks.weight.reshape(-1) * dist)


@jax.jit
def center_distances(blocks: Blocks, centers):
    """Euclidean distance of every (padded) row to every center, (n_padded, K)."""

    def dist(xb, c):
        return jnp.sqrt(jnp.sum((xb[:, None, :] - c[None, :, :]) ** 2, axis=-1))

    return block_rows(dist, blocks, centers)


def relocate_empty_clusters(stats: LloydStats):
    """scikit-learn's ``_relocate_empty_clusters_dense`` on sums and counts.

    The ``j``-th empty cluster (in index order) takes the ``j``-th farthest
    row from its assigned center: that row's weighted value becomes the
    cluster's sum and is removed from its old cluster. Nothing moves when
    every row sits on its center (more clusters than distinct rows).
    Returns the new ``(sums, counts)``.
    """
    empty = stats.counts == 0
    n_empty = jnp.sum(empty)
    active = (n_empty > 0) & (stats.far_dist[0] > 0)
    targets = jnp.argsort(jnp.logical_not(empty), stable=True)  # empty clusters first

    def body(r, carry):
        sums, counts = carry
        x, w = stats.far_x[r], stats.far_weight[r]
        new, old = targets[r], stats.far_label[r]
        moved = (sums.at[old].add(-x * w).at[new].set(x * w), counts.at[new].set(w).at[old].add(-w))
        return jax.tree.map(partial(jnp.where, active & (r < n_empty)), moved, carry)

    return jax.lax.fori_loop(0, stats.counts.shape[0], body, (stats.sums, stats.counts))


def average_centers(sums, counts):
    """scikit-learn's ``_average_centers``: ``c_k = s_k * (1 / n_k)``.

    A cluster still empty takes the row of the heaviest cluster as it stands
    in scikit-learn's in-place loop: averaged if that cluster's index is
    lower, still the raw sum otherwise (reproduced for exact agreement).
    """
    big = jnp.argmax(counts)
    avg = sums * (1.0 / jnp.where(counts > 0, counts, 1.0))[:, None]
    lower = (big < jnp.arange(counts.shape[0]))[:, None]
    fallback = jnp.where(lower, avg[big][None, :], sums[big][None, :])
    return jnp.where((counts > 0)[:, None], avg, fallback)


@dataclass(frozen=True)
class Lloyd:
    """Lloyd's algorithm as a model of the core statistics loop.

    ``data`` is a :class:`~lateo.core.blocks.Blocks`, ``params`` a
    :class:`KMeansParams`, ``hyper`` unused (``None``). The objective is
    ``-inertia / n_samples`` at the centers entering the iteration; the
    convergence test is scikit-learn's ``sum_k ||c_k' - c_k||^2 <= tol``,
    with ``tol`` already scaled by the data's mean feature variance.
    """

    def expected_stats(self, key, params: KMeansParams, data: Blocks, hyper):
        """Assignment step: the statistics and ``-inertia / n`` at ``params``."""
        del key, hyper
        stats = lloyd_stats(data, params.centers)
        return stats, -stats.inertia / data.n_samples

    def m_step(self, stats: LloydStats, hyper, previous=None) -> KMeansParams:
        """Update step: relocate empty clusters, then average."""
        del hyper
        sums, counts = relocate_empty_clusters(stats)
        return KMeansParams(average_centers(sums, counts))

    def combine_stats(self, stats: list) -> LloydStats:
        """Statistics of the union of disjoint row sets, from theirs (given in data order).

        The distributed fit's combine hook
        (:func:`lateo.algorithms.distributed.combine_stats`): counts, sums
        and inertia add; the far points merge as a top-K of the farthest,
        ties going to the earlier set (as :func:`jax.lax.top_k` does over
        the blocks of one pass), so the result equals one pass over the
        union up to the order of the additions. A set searched for far
        points only when one of its clusters is empty still gives the
        union's: a cluster empty in the union is empty in every set.

        Parameters
        ----------
        stats : list of LloydStats
            numpy (or JAX) leaves.

        Returns
        -------
        LloydStats
            numpy leaves.
        """
        stats = [jax.tree.map(np.asarray, s) for s in stats]
        first, rest = stats[0], stats[1:]
        added = [sum((getattr(s, f) for s in rest), getattr(first, f)) for f in ("counts", "sums", "inertia")]
        k = first.far_dist.shape[0]
        order = np.argsort(-np.concatenate([s.far_dist for s in stats]), kind="stable")[:k]
        far = [np.concatenate([getattr(s, f) for s in stats])[order]
               for f in ("far_dist", "far_x", "far_label", "far_weight")]
        return LloydStats(*added, *far)

    def has_converged(self, old_params, new_params, change, tol):
        """Squared center shift, summed over clusters, at most ``tol``.

        (scikit-learn's strict test, unchanged labels, implies a zero
        shift, so it needs no separate check.)
        """
        del change
        shift = jnp.sqrt(jnp.sum((new_params.centers - old_params.centers) ** 2, axis=1))
        return jnp.sum(shift**2) <= tol


def _closest_to(blocks: Blocks, closest, center):
    """``min(closest, ||x - center||^2)`` row by row, block by block."""
    return jax.lax.map(lambda a: jnp.minimum(a[1], jnp.sum((a[0] - center) ** 2, axis=-1)), (blocks.X, closest))


def _potentials(blocks: Blocks, closest, candidates):
    """``sum_i w_i min(D(x_i)^2, ||x_i - c_t||^2)`` for each candidate ``c_t``."""

    def body(total, block):
        xb, wb, cb = block
        d = jnp.sum((xb[None, :, :] - candidates[:, None, :]) ** 2, axis=-1)
        return total + jnp.sum(wb * jnp.minimum(cb, d), axis=1), None

    init = jnp.zeros(candidates.shape[0], blocks.X.dtype)
    return jax.lax.scan(body, init, (blocks.X, blocks.weight, closest))[0]


@partial(jax.jit, static_argnames=("n_clusters", "n_local_trials"))
def kmeans_plusplus(key, blocks: Blocks, n_clusters: int, n_local_trials: int | None = None):
    """Greedy k-means++ seeding (Arthur & Vassilvitskii 2007), as scikit-learn's.

    The first center is a real row drawn uniformly (proportionally to the
    row weights); each next one is the best of ``n_local_trials`` rows drawn
    with probability ``w_i D(x_i)^2 / sum_j w_j D(x_j)^2``, "best" meaning
    the lowest potential ``sum_i w_i D(x_i)^2`` once it is added. Padding
    rows have weight 0 and are never drawn.

    Parameters
    ----------
    key : PRNG key
    blocks : Blocks
    n_clusters : int
    n_local_trials : int, optional
        Draws per center; default ``2 + int(log K)``.

    Returns
    -------
    centers : array, shape (K, n_features)
    indices : int array, shape (K,)
        Row index of each center in the unpadded data.
    """
    trials = 2 + int(np.log(n_clusters)) if n_local_trials is None else int(n_local_trials)
    X = blocks.X.reshape(-1, blocks.X.shape[-1])
    w = blocks.weight.reshape(-1)
    last_real = blocks.n_samples.astype(jnp.int32) - 1
    key, sub = jax.random.split(key)
    first = jax.random.choice(sub, w.shape[0], p=w / jnp.sum(w)).astype(jnp.int32)
    closest = _closest_to(blocks, jnp.full(blocks.weight.shape, jnp.inf, X.dtype), X[first])
    centers = jnp.zeros((n_clusters, X.shape[1]), X.dtype).at[0].set(X[first])
    indices = jnp.zeros(n_clusters, jnp.int32).at[0].set(first)

    def body(c, carry):
        centers, indices, closest = carry
        cum = jnp.cumsum(w * closest.reshape(-1))
        u = jax.random.uniform(jax.random.fold_in(key, c), (trials,), X.dtype)
        ids = jnp.minimum(jnp.searchsorted(cum, u * cum[-1]), last_real).astype(jnp.int32)
        best = ids[jnp.argmin(_potentials(blocks, closest, X[ids]))]
        return centers.at[c].set(X[best]), indices.at[c].set(best), _closest_to(blocks, closest, X[best])

    centers, indices, _ = jax.lax.fori_loop(1, n_clusters, body, (centers, indices, closest))
    return centers, indices


@partial(jax.jit, static_argnames=("n_clusters",))
def random_rows(key, blocks: Blocks, n_clusters: int):
    """``K`` distinct real rows drawn uniformly without replacement."""
    w = blocks.weight.reshape(-1)
    idx = jax.random.choice(key, w.shape[0], (n_clusters,), replace=False, p=w / jnp.sum(w))
    return blocks.X.reshape(-1, blocks.X.shape[-1])[idx]


@jax.jit
def scaled_tolerance(blocks: Blocks, tol):
    """scikit-learn's ``_tolerance``: ``tol`` times the mean per-feature variance."""
    w = blocks.weight[..., None]
    mean = jnp.sum(w * blocks.X, axis=(0, 1)) / blocks.n_samples
    var = jnp.sum(w * (blocks.X - mean) ** 2, axis=(0, 1)) / blocks.n_samples
    return jnp.where(tol == 0, 0.0, jnp.mean(var) * tol)


def same_clustering(labels1, labels2) -> bool:
    """scikit-learn's ``_is_same_clustering``: does each label of ``labels1`` map to one of ``labels2``?"""
    pairs = np.unique(np.stack([labels1, labels2]), axis=1)
    return bool(np.unique(pairs[0]).size == pairs.shape[1])


def kmeans_single(blocks: Blocks, centers_init, *, max_iter: int, tol, progress=False):
    """One Lloyd run from ``centers_init`` on the core loop (``_kmeans_single_lloyd``).

    Returns a :class:`KMeansResult`: after the loop, the real rows are
    assigned to the final centers and the inertia is computed there.
    """
    model = Lloyd()
    params = KMeansParams(jnp.asarray(centers_init, blocks.X.dtype))
    state = loop_init(model, params, blocks, None, jax.random.key(0))
    result = loop_run(model, state, blocks, None, max_iter=max_iter, tol=tol, schedule=Constant(),
                      progress=progress, description="k-means")
    centers = result.state.params.centers
    labels, inertia = labels_inertia(blocks, centers)
    n = int(blocks.n_samples)
    return KMeansResult(centers, np.asarray(labels[:n]), float(inertia), result.n_iter, result.converged)


def _initial_centers(key, blocks: Blocks, n_clusters: int, init):
    if isinstance(init, str):
        if init == "k-means++":
            return kmeans_plusplus(key, blocks, n_clusters)[0]
        return random_rows(key, blocks, n_clusters)
    return jnp.asarray(init, blocks.X.dtype)


def kmeans_fit(key, blocks: Blocks, n_clusters: int, *, init="k-means++", max_iter: int = 300,
               tol: float = 1e-4, n_init: int = 1, progress=False):
    """k-means on already-blocked data, scikit-learn's ``KMeans(algorithm="lloyd")``.

    The data are used as they are (not re-centered): center them first, as
    :class:`KMeans` does, for accurate distances.

    Parameters
    ----------
    key : PRNG key
    blocks : Blocks
    n_clusters : int
    init : {"k-means++", "random"} or array (n_clusters, n_features)
        Seeding, or initial centers in the blocks' coordinates.
    max_iter : int
        Lloyd iterations per run.
    tol : float
        Relative tolerance: runs stop when the summed squared center shift
        is at most ``tol`` times the mean per-feature variance.
    n_init : int
        Runs from different seeds; the lowest inertia wins (a later run
        replaces the best only if its clustering differs, as in scikit-learn).
    progress : {False, True, "auto"}

    Returns
    -------
    KMeansResult
        ``(centers, labels, inertia, n_iter, converged)``.
    """
    if isinstance(init, str):
        check_option(init, name="init", options=_INITS)
    elif np.shape(init) != (n_clusters, blocks.X.shape[-1]):
        raise ValueError(f"init must have shape {(n_clusters, blocks.X.shape[-1])}, got {np.shape(init)}.")
    tol_scaled = scaled_tolerance(blocks, jnp.asarray(tol, blocks.X.dtype))
    best = None
    for sub in jax.random.split(key, n_init):
        centers0 = _initial_centers(sub, blocks, n_clusters, init)
        run = kmeans_single(blocks, centers0, max_iter=max_iter, tol=tol_scaled, progress=progress)
        if best is None or (run.inertia < best.inertia and not same_clustering(run.labels, best.labels)):
            best = run
    return best
