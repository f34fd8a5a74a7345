"""k-means and k-means++ against scikit-learn, and the estimator's contract.

Compile time dominates, so almost every test uses data of one shape
(300 x 2, K = 3): the compiled programs are shared.
"""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats
from sklearn.base import clone
from sklearn.cluster import KMeans as SKKMeans

import lateo._config  # noqa: F401  (float64)
from lateo.core.blocks import make_blocks
from lateo.exceptions import ConvergenceWarning, NotFittedError
from lateo.models._kmeans_lloyd import kmeans_fit, kmeans_plusplus
from lateo.models.kmeans import KMeans

N, D, K = 300, 2, 3
MEANS = np.array([[0.0, 0.0], [1.0, 1.0], [0.0, 1.5]])


def _blobs(scale, seed=0, offset=0.0):
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.normal(m * scale, 1.0, (N // K, D)) for m in MEANS]) + offset


@pytest.fixture(scope="module")
def datasets():
    separated, overlapping = _blobs(20.0), _blobs(2.0, seed=1)
    duplicates = np.repeat(np.array([[-1.0, 0.0], [1.0, 0.0]]), N // 2, axis=0)
    far = np.array([[100.0, 100.0], [-100.0, 100.0]])
    return {
        "separated": (separated, separated[[0, 1, 2]], 1e-4, 300),
        "overlapping": (overlapping, overlapping[[0, 1, 2]], 1e-4, 300),
        "overlapping_tol0": (overlapping, overlapping[[5, 6, 7]], 0.0, 300),
        "overlapping_max_iter": (overlapping, overlapping[[0, 1, 2]], 1e-4, 3),
        "empty_cluster": (overlapping, np.vstack([overlapping[[0, 150]], far[:1]]), 1e-4, 300),
        "offset_1e6": (overlapping + 1e6, overlapping[[0, 1, 2]] + 1e6, 1e-4, 300),
        "duplicates_argmax_above": (duplicates, np.vstack([far[:1], duplicates[[0, -1]]]), 1e-4, 300),
        "duplicates_argmax_below": (duplicates, np.vstack([duplicates[[0, -1]], far[:1]]), 1e-4, 300),
    }


def _fit_both(X, init, tol, max_iter):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # duplicates: fewer distinct clusters than K
        ours = KMeans(K, init=init, tol=tol, max_iter=max_iter).fit(X)
        ref = SKKMeans(K, init=init, n_init=1, algorithm="lloyd", tol=tol, max_iter=max_iter).fit(X)
    return ours, ref


@pytest.mark.parametrize("name", [
    "separated", "overlapping", "overlapping_tol0", "overlapping_max_iter", "empty_cluster", "offset_1e6",
    "duplicates_argmax_above", "duplicates_argmax_below",
])
def test_lloyd_matches_sklearn(datasets, name):
    X, init, tol, max_iter = datasets[name]
    ours, ref = _fit_both(X, init, tol, max_iter)
    np.testing.assert_array_equal(ours.labels_, ref.labels_)
    assert ours.n_iter_ == ref.n_iter_
    np.testing.assert_allclose(ours.cluster_centers_, ref.cluster_centers_, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(ours.inertia_, ref.inertia_, rtol=1e-10)


def test_two_empty_clusters_match_sklearn_up_to_permutation(datasets):
    X = datasets["overlapping"][0]
    init = np.array([[0.0, 0.0], [100.0, 100.0], [-100.0, 100.0]])
    ours, ref = _fit_both(X, init, 1e-4, 300)
    pairs = np.unique(np.stack([ours.labels_, ref.labels_]), axis=1)
    assert np.unique(pairs[0]).size == np.unique(pairs[1]).size == pairs.shape[1] == K  # a bijection
    perm = dict(zip(pairs[0], pairs[1]))
    np.testing.assert_allclose(ours.cluster_centers_, ref.cluster_centers_[[perm[k] for k in range(K)]], rtol=1e-10)
    np.testing.assert_allclose(ours.inertia_, ref.inertia_, rtol=1e-10)
    assert ours.n_iter_ == ref.n_iter_


def test_duplicates_warn(datasets):
    X, init, _, _ = datasets["duplicates_argmax_below"]
    with pytest.warns(ConvergenceWarning, match="distinct clusters"):
        KMeans(K, init=init).fit(X)


def test_predict_transform_score_match_sklearn(datasets):
    X, init, tol, max_iter = datasets["overlapping"]
    ours, ref = _fit_both(X, init, tol, max_iter)
    Xnew = _blobs(2.0, seed=7)
    np.testing.assert_array_equal(ours.predict(Xnew), ref.predict(Xnew))
    np.testing.assert_allclose(ours.transform(Xnew), ref.transform(Xnew), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(ours.score(Xnew), ref.score(Xnew), rtol=1e-10)
    np.testing.assert_array_equal(ours.predict(X), ours.labels_)
    np.testing.assert_array_equal(KMeans(K, init=init).fit_predict(X), ours.labels_)
    np.testing.assert_allclose(KMeans(K, init=init).fit_transform(X), ours.transform(X), rtol=1e-12)


# ---------------------------------------------------------------- k-means++


@pytest.fixture(scope="module")
def offset_blocks():
    """Well-separated blobs far from the origin, in one block with 212 zero padding rows."""
    X = _blobs(20.0, seed=3) + 50.0
    return X, make_blocks(X, 512)


def test_plusplus_picks_distinct_real_rows_one_per_blob(offset_blocks):
    X, blocks = offset_blocks
    for seed in range(20):
        centers, idx = kmeans_plusplus(jax.random.key(seed), blocks, K)
        idx = np.asarray(idx)
        assert np.all(idx < N) and np.unique(idx).size == K  # real, distinct rows
        np.testing.assert_array_equal(np.asarray(centers), X[idx])
        assert sorted(idx // (N // K)) == list(range(K))  # one center per blob


def test_plusplus_samples_proportionally_to_squared_distance():
    """With one trial, P(first=i, second=j) = 1/n * d_ij^2 / sum_l d_il^2 (padding never drawn)."""
    x = np.array([[0.0], [1.0], [3.0], [7.0]])
    blocks = make_blocks(x, 64)
    keys = jax.random.split(jax.random.key(0), 20000)
    _, idx = jax.vmap(lambda k: kmeans_plusplus(k, blocks, 2, n_local_trials=1))(keys)
    idx = np.asarray(idx)
    assert idx.max() < 4
    d2 = (x - x.T) ** 2
    expected = (d2 / d2.sum(axis=1, keepdims=True) / 4).ravel()
    observed = np.bincount(idx[:, 0] * 4 + idx[:, 1], minlength=16)
    keep = expected > 0
    assert observed[~keep].sum() == 0
    assert stats.chisquare(observed[keep], expected[keep] * len(keys)).pvalue > 1e-4


def test_plusplus_estimator_reaches_sklearn_optimum(datasets):
    X = datasets["separated"][0]
    ours = KMeans(K, random_state=0).fit(X)
    ref = SKKMeans(K, n_init=1, random_state=0).fit(X)
    np.testing.assert_allclose(ours.inertia_, ref.inertia_, rtol=1e-10)


def test_random_init_and_n_init_keeps_best(datasets):
    X = datasets["overlapping"][0]
    blocks = make_blocks(X - X.mean(axis=0), 512)
    key = jax.random.key(4)
    best = kmeans_fit(key, blocks, K, init="random", n_init=4)
    singles = [kmeans_fit(k, blocks, K, init="random", n_init=1) for k in jax.random.split(key, 4)]
    assert best[2] == min(s[2] for s in singles)
    assert best[4]  # converged
    assert best[1].shape == (N,) and best[1].dtype == np.int32


# ---------------------------------------------------------------- contract


def test_padding_does_not_change_results(datasets):
    X, init, _, _ = datasets["empty_cluster"]
    mean = X.mean(axis=0)
    runs = [kmeans_fit(jax.random.key(0), make_blocks(X, bs, shift=mean), K, init=init - mean) for bs in (64, 512)]
    np.testing.assert_array_equal(runs[0][1], runs[1][1])
    np.testing.assert_allclose(np.asarray(runs[0][0]), np.asarray(runs[1][0]), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(runs[0][2], runs[1][2], rtol=1e-12)
    assert runs[0][3] == runs[1][3]


def test_deterministic_and_input_unchanged(datasets):
    X = datasets["overlapping"][0]
    X_copy = X.copy()
    a = KMeans(K, n_init=2, random_state=11).fit(X)
    b = KMeans(K, n_init=2, random_state=11).fit(X)
    np.testing.assert_array_equal(a.cluster_centers_, b.cluster_centers_)
    np.testing.assert_array_equal(a.labels_, b.labels_)
    assert a.inertia_ == b.inertia_ and a.n_iter_ == b.n_iter_
    np.testing.assert_array_equal(X, X_copy)
    init = X[[0, 1, 2]].copy()
    KMeans(K, init=init).fit(X)
    np.testing.assert_array_equal(init, X[[0, 1, 2]])
    assert a.n_features_in_ == D and a.labels_.dtype == np.int32


def test_float32(datasets):
    X, init, _, _ = datasets["separated"]
    ours = KMeans(K, init=init, dtype="float32").fit(X)
    ref = KMeans(K, init=init).fit(X)
    np.testing.assert_array_equal(ours.labels_, ref.labels_)
    np.testing.assert_allclose(ours.cluster_centers_, ref.cluster_centers_, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("X, params, match", [
    (np.array([[0.0, np.nan], [1.0, 2.0], [3.0, 4.0]]), {}, "NaN"),
    (np.arange(5.0), {}, "2-D"),
    (np.zeros((0, 2)), {}, "empty"),
    (np.zeros((5, 2)), {"n_clusters": 0}, "n_clusters"),
    (np.zeros((5, 2)), {"n_clusters": 6}, "n_clusters"),
    (np.zeros((5, 2)), {"init": "foo"}, "init"),
    (np.zeros((5, 2)), {"init": np.zeros((3, 3))}, "init"),
    (np.zeros((5, 2)), {"max_iter": 0}, "max_iter"),
    (np.zeros((5, 2)), {"n_init": 0}, "n_init"),
    (np.zeros((5, 2)), {"tol": -1.0}, "tol"),
    (np.zeros((5, 2)), {"dtype": "int8"}, "dtype"),
])
def test_bad_input(X, params, match):
    params = {"n_clusters": 2, **params}
    with pytest.raises(ValueError, match=match):
        KMeans(**params).fit(X)


def test_not_fitted_and_wrong_features():
    with pytest.raises(NotFittedError):
        KMeans(2).predict(np.zeros((3, 2)))
    model = KMeans(2, init=np.array([[0.0, 0.0], [1.0, 1.0]]))
    model.cluster_centers_, model.n_features_in_ = np.eye(2), 2
    with pytest.raises(ValueError, match="features"):
        model.predict(np.zeros((3, 3)))


def test_explicit_init_with_n_init_warns(datasets):
    X, init, _, _ = datasets["separated"]
    with pytest.warns(UserWarning, match="n_init"):
        KMeans(K, init=init, n_init=3).fit(X)


def test_params_protocol():
    model = KMeans(4, tol=1e-3)
    params = model.get_params()
    assert params["n_clusters"] == 4 and params["tol"] == 1e-3 and params["init"] == "k-means++"
    assert model.set_params(n_clusters=5) is model and model.n_clusters == 5
    with pytest.raises(ValueError, match="bogus"):
        model.set_params(bogus=1)
    assert clone(model).get_params() == model.get_params()


def test_lloyd_model_is_hashable_and_compiles_once(datasets):
    from lateo.core.loop import run_chunk
    from lateo.models._kmeans_lloyd import Lloyd

    assert hash(Lloyd()) == hash(Lloyd())
    X, init, _, _ = datasets["overlapping"]
    KMeans(K, init=init).fit(X)
    size = run_chunk._cache_size()
    KMeans(K, init=init[::-1].copy(), max_iter=50).fit(X + 1.0)
    assert run_chunk._cache_size() == size
    assert jnp.asarray(0.0).dtype == jnp.float64
