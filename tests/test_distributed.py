"""Distributed EM on a Dask LocalCluster (loopback): equality with the
single-process fits, additivity of partition statistics, data larger than a
worker's memory, a worker killed mid-fit, and clear errors on bad input."""

import functools
import os
import signal
import warnings

import numpy as np
import pytest

dask = pytest.importorskip("dask")
distributed = pytest.importorskip("distributed")

import dask.array as da  # noqa: E402
import dask.bag as db  # noqa: E402
import dask.dataframe as dd  # noqa: E402
import jax  # noqa: E402
import pandas as pd  # noqa: E402

from lateo.algorithms import distributed as dist  # noqa: E402
from lateo.algorithms.online_em import chunk_stats  # noqa: E402
from lateo.core.blocks import make_blocks  # noqa: E402
from lateo.exceptions import ConvergenceWarning  # noqa: E402
from lateo.models._mixture_em import GaussianMixtureEM  # noqa: E402
from lateo.models.gaussian_mixture import GaussianMixture  # noqa: E402
from lateo.models._kmeans_lloyd import KMeansParams, Lloyd, lloyd_stats  # noqa: E402
from lateo.models.hmm import GaussianHMM  # noqa: E402
from lateo.models.kmeans import KMeans  # noqa: E402
from lateo.models.ppca import PPCA  # noqa: E402

TOL = 1e-10


def _gmm_kwargs(X, k=3):
    rng = np.random.default_rng(1)
    means = X[rng.choice(X.shape[0], k, replace=False)]
    return dict(n_components=k, tol=1e-9, max_iter=40, progress=False, means_init=means,
                weights_init=np.full(k, 1.0 / k), precisions_init=np.stack([np.eye(X.shape[1])] * k))


def _assert_close(a, b):
    np.testing.assert_allclose(a, b, rtol=TOL, atol=TOL)


def test_gmm_distributed_equals_single_process(client, blobs3):
    kw = _gmm_kwargs(blobs3)
    single = GaussianMixture(**kw).fit(blobs3)
    dask_fit = GaussianMixture(**kw).fit(da.from_array(blobs3, chunks=(128, 3)))
    assert dask_fit.n_iter_ == single.n_iter_ and dask_fit.converged_ == single.converged_
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_", "lower_bounds_"):
        _assert_close(getattr(dask_fit, name), getattr(single, name))


def test_gmm_default_init_dataframe_and_prior(client, blobs3):
    """k-means++ from the client-side sample (all rows here) = the single-process init; a DataFrame
    input; MAP-EM, whose per-partition objectives each include log p(theta) once."""
    kw = dict(n_components=3, prior="default", tol=1e-9, max_iter=25, random_state=3, progress=False)
    single = GaussianMixture(**kw).fit(blobs3)
    frame = dd.from_pandas(pd.DataFrame(blobs3, columns=["a", "b", "c"]), npartitions=4)
    dask_fit = GaussianMixture(**kw).fit(frame)
    assert dask_fit.n_iter_ == single.n_iter_
    for name in ("weights_", "means_", "covariances_", "lower_bounds_"):
        _assert_close(getattr(dask_fit, name), getattr(single, name))
    assert list(dask_fit.feature_names_in_) == ["a", "b", "c"]


def test_gmm_from_a_sample(client, blobs3):
    """With a sample smaller than the data, initialisation uses the sample; EM still runs on all rows."""
    with dask.config.set({"lateo.distributed.sample-rows": 100}):
        fit = GaussianMixture(n_components=3, random_state=0, tol=1e-6, max_iter=200, progress=False).fit(
            da.from_array(blobs3, chunks=(128, 3)))
    assert fit.converged_
    true_means = np.array([[0.0, 0.0, 0.0], [3.0, 1.0, -1.0], [-2.0, 3.0, 2.0]]) + 10.0  # conftest's blobs3
    order = np.argsort(fit.means_[:, 0])
    np.testing.assert_allclose(fit.means_[order], true_means[np.argsort(true_means[:, 0])], atol=0.3)


def test_ppca_distributed_equals_single_process(client, blobs3):
    kw = dict(n_components=1, method="em", tol=1e-10, max_iter=300, random_state=0, progress=False)
    X = blobs3.copy()
    X[::7, 1] = np.nan  # missing values go through the same E-step
    single = PPCA(**kw).fit(X)
    dask_fit = PPCA(**kw).fit(da.from_array(X, chunks=(120, 3)))
    assert dask_fit.n_iter_ == single.n_iter_
    for name in ("loadings_", "mean_", "noise_variance_", "lower_bounds_"):
        _assert_close(getattr(dask_fit, name), getattr(single, name))


def _hmm_sequences():
    rng = np.random.default_rng(0)
    states = [np.repeat(rng.integers(2, size=10), 10) for _ in range(6)]
    return [rng.normal(size=(100, 2)) * 0.7 + 3.0 * s[:, None] for s in states]


def test_hmm_distributed_equals_single_process(client):
    seqs = _hmm_sequences()
    kw = dict(n_components=2, n_iter=10, tol=-np.inf, random_state=0, progress=False)
    single = GaussianHMM(**kw).fit(seqs)
    bag = GaussianHMM(**kw).fit(db.from_sequence(seqs, npartitions=len(seqs)))  # one sequence each, as delayed
    delayed = GaussianHMM(**kw).fit([dask.delayed(s) for s in seqs])
    for fit in (bag, delayed):
        assert fit.n_iter_ == single.n_iter_
        for name in ("startprob_", "transmat_", "means_", "covars_", "lower_bounds_"):
            _assert_close(getattr(fit, name), getattr(single, name))


def test_partition_statistics_sum_to_full_statistics(client, blobs3):
    model = GaussianMixtureEM("full")
    est = GaussianMixture(**_gmm_kwargs(blobs3))
    shift = blobs3.mean(axis=0)
    est._online_check_chunk(blobs3, None)
    params, _, hyper = est._online_init(blobs3, jax.random.key(0), np.float64)
    data = dist.row_partitions(da.from_array(blobs3, chunks=(64, 3)), client)
    make_data = dist.RowData(shift, np.float64, est._online_model()[1])
    parts = dist.partition_stats(model, params, data, hyper, make_data)
    assert len(parts) == 8 and all(p is not None for p in parts)
    total = jax.tree.map(lambda *leaves: sum(leaves[1:], leaves[0]), *[p[0] for p in parts])
    full, objective = chunk_stats(model, params, make_blocks(blobs3, 512, shift=shift), hyper)
    jax.tree.map(lambda a, b: _assert_close(a, np.asarray(b)), total, full)
    _assert_close(sum(p[1] for p in parts) / blobs3.shape[0], float(objective))
    stats, combined = dist.expected_stats(model, params, data, hyper, make_data)
    jax.tree.map(lambda a, b: _assert_close(a, np.asarray(b)), stats, full)
    _assert_close(combined, float(objective))


# ------------------------------------------------------------------ k-means


def _assert_same_kmeans(fit, single):
    assert fit.n_iter_ == single.n_iter_
    np.testing.assert_array_equal(fit.labels_, single.labels_)
    _assert_close(fit.cluster_centers_, single.cluster_centers_)
    _assert_close(fit.inertia_, single.inertia_)


def test_kmeans_distributed_equals_single_process(client, blobs3):
    """k-means++ seeding from the client-side sample (all rows here), n_init restarts, array and DataFrame."""
    kw = dict(n_clusters=4, n_init=2, random_state=0, tol=0.0, progress=False)
    single = KMeans(**kw).fit(blobs3)
    _assert_same_kmeans(KMeans(**kw).fit(da.from_array(blobs3, chunks=(125, 3))), single)
    frame = dd.from_pandas(pd.DataFrame(blobs3, columns=["a", "b", "c"]), npartitions=4)
    fit = KMeans(**kw).fit(frame, client=client)
    _assert_same_kmeans(fit, single)
    assert list(fit.feature_names_in_) == ["a", "b", "c"]


def test_kmeans_empty_clusters_refilled(client, blobs3):
    """Two initial centers far from every row: both clusters empty at once and take the farthest rows,
    which the tree reduction (10 partitions, two levels) merges as a top-K, not a sum."""
    init = np.concatenate([blobs3[:2], [[1e3, 1e3, 1e3], [-1e3, -1e3, -1e3]]])
    kw = dict(n_clusters=4, init=init, tol=1e-6, progress=False)
    single = KMeans(**kw).fit(blobs3)
    X = da.from_array(blobs3, chunks=(50, 3))
    _assert_same_kmeans(KMeans(**kw).fit(X), single)
    shift = blobs3.mean(axis=0)  # the first iteration's statistics, as the fit sees them
    data = dist.row_partitions(X, client)
    params = KMeansParams(np.asarray(init - shift))
    stats, _ = dist.expected_stats(Lloyd(), params, data, None, dist.RowData(shift, np.float64, 16))
    full = lloyd_stats(make_blocks(blobs3, 64, shift=shift), params.centers)
    np.testing.assert_array_equal(stats.counts[2:], 0)
    assert np.all(np.isfinite(stats.far_dist))
    for name in ("far_dist", "far_x", "far_label", "far_weight"):
        np.testing.assert_array_equal(getattr(stats, name), np.asarray(getattr(full, name)))
    for name in ("counts", "sums", "inertia"):
        _assert_close(getattr(stats, name), np.asarray(getattr(full, name)))


def test_kmeans_combine_stats_is_one_pass_with_ties():
    """Integer rows with equal distances across partitions: the merged top-K keeps data order on ties."""
    rng = np.random.default_rng(0)
    X = rng.integers(-2, 3, size=(40, 3)).astype(np.float64)
    ties = np.array([[3.0, 4, 0], [0, -4, 3], [4, 0, 3], [-3, 0, 4], [0, 3, -4]])  # ||x||^2 = 25
    X[[5, 12, 13, 27, 38]] = ties
    centers = np.array([[0.0, 0, 0], [1e3, 1e3, 1e3], [-1e3, -1e3, -1e3]])
    full = lloyd_stats(make_blocks(X, 7, shift=np.zeros(3)), centers)
    parts = [lloyd_stats(make_blocks(p, 4, shift=np.zeros(3)), centers) for p in np.split(X, [10, 13, 30])]
    merged = Lloyd().combine_stats([jax.device_get(p) for p in parts])
    np.testing.assert_array_equal(merged.far_x, X[[5, 12, 13]])
    for a, b in zip(merged, full):
        np.testing.assert_array_equal(a, np.asarray(b))


# ------------------------------------------------------------------ errors


def test_unknown_chunk_sizes(client, blobs3):
    X = da.from_array(blobs3, chunks=(100, 3))
    with pytest.raises(ValueError, match="compute_chunk_sizes"):
        GaussianMixture(n_components=2, progress=False).fit(X[X[:, 0] > 10])


def test_kmeans_bad_input(client, blobs3):
    X = da.from_array(blobs3, chunks=(100, 3))
    with pytest.raises(ValueError, match="compute_chunk_sizes"):
        KMeans(n_clusters=2, progress=False).fit(X[X[:, 0] > 10])
    frame = pd.DataFrame(blobs3, columns=["a", "b", "c"]).assign(site=["x", "y"] * 250)
    with pytest.raises(ValueError, match="non-numeric columns 'site'"):
        KMeans(n_clusters=2, progress=False).fit(dd.from_pandas(frame, npartitions=2))
    with pytest.raises(ValueError, match="n_clusters=600 must be <= n_samples=500"):
        KMeans(n_clusters=600, progress=False).fit(X)


def test_mixed_dtypes(client, blobs3):
    frame = pd.DataFrame(blobs3, columns=["a", "b", "c"]).assign(site=["x", "y"] * 250)
    with pytest.raises(ValueError, match="non-numeric columns 'site'"):
        GaussianMixture(n_components=2, progress=False).fit(dd.from_pandas(frame, npartitions=2))
    with pytest.raises(ValueError, match="must hold numbers"):
        PPCA(n_components=1, progress=False).fit(da.from_array(blobs3.astype(str), chunks=(100, 3)))


def test_closed_client(client, blobs3):
    closed = distributed.Client(client.cluster, set_as_default=False)
    closed.close()
    with pytest.raises(ValueError, match="closed"):
        GaussianMixture(n_components=2, progress=False).fit(da.from_array(blobs3, chunks=(100, 3)), client=closed)


def test_bad_values_and_inputs(client, blobs3):
    X = blobs3.copy()
    X[321, 2] = np.inf
    with pytest.raises(ValueError, match="NaN or infinite"):  # seen in the client-side sample
        GaussianMixture(n_components=2, progress=False).fit(da.from_array(X, chunks=(100, 3)))
    with dask.config.set({"lateo.distributed.sample-rows": 4}), \
            pytest.raises(ValueError, match="partition 3 of X contains NaN or infinite"):  # on a worker
        GaussianMixture(n_components=2, random_state=0, progress=False).fit(da.from_array(X, chunks=(100, 3)))
    with pytest.raises(TypeError, match="Dask bag"):
        GaussianHMM(n_components=2, progress=False).fit(da.from_array(blobs3, chunks=(100, 3)))
    with pytest.raises(ValueError, match="algorithm='batch'"):
        GaussianMixture(n_components=2, progress=False).fit(da.from_array(blobs3, chunks=(100, 3)),
                                                             algorithm="online")


# ------------------------------------------------------------------ process workers


@pytest.fixture(scope="module")
def process_client():
    """Two worker processes with a low memory limit (each pauses at 80% and is killed at 95% of it)."""
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  host="127.0.0.1", memory_limit="600MiB") as cluster, \
            distributed.Client(cluster) as c:
        yield c


@pytest.mark.slow
def test_fit_on_data_larger_than_a_worker(process_client):
    """640 MB generated lazily (never materialised whole), 600 MiB per worker: partitions are recomputed per pass."""
    n, d, chunk = 1_600_000, 50, 20_000
    index = da.arange(n, chunks=chunk, dtype=np.float64)[:, None]
    X = (index * (np.sqrt(np.arange(2, 2 + d)) % 1.0)) % 1.0  # a low-discrepancy sequence in [0, 1)^d
    X = X + 3.0 * (X[:, :1] < 0.3)  # two clusters: 30% shifted by 3 along the first axis
    assert X.nbytes > 600 * 2**20
    pids = process_client.run(os.getpid)
    with dask.config.set({"lateo.distributed.persist": False, "lateo.distributed.sample-rows": 2_000}), \
            warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        fit = GaussianMixture(n_components=2, covariance_type="spherical", max_iter=2, tol=0.0, random_state=0,
                              progress=False).fit(X, client=process_client)
    assert process_client.run(os.getpid) == pids  # no worker was killed for memory
    assert fit.n_iter_ == 2
    np.testing.assert_allclose(np.sort(fit.weights_), [0.3, 0.7], atol=1e-3)


@pytest.mark.slow
def test_worker_killed_mid_fit(process_client, blobs3, monkeypatch):
    """SIGKILL one worker process after the second iteration: Dask recomputes its partitions, the result is unchanged."""
    kw = _gmm_kwargs(blobs3)
    single = GaussianMixture(**kw).fit(blobs3)
    killed = []

    def kill(iteration, params, objective):
        if iteration == 2:
            pid = next(iter(process_client.run(os.getpid).values()))
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    monkeypatch.setattr(dist, "run_em", functools.partial(dist.run_em, callback=kill))
    fit = GaussianMixture(**kw).fit(da.from_array(blobs3, chunks=(64, 3)), client=process_client)
    assert killed and killed[0] not in process_client.run(os.getpid).values()
    assert fit.n_iter_ == single.n_iter_ > 2
    for name in ("weights_", "means_", "covariances_", "lower_bounds_"):
        _assert_close(getattr(fit, name), getattr(single, name))
