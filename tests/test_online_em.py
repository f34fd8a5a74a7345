"""Online EM (Cappé & Moulines 2009) on the statistics loop: gamma = 1 on one
batch is exact EM, streams of chunks in bounded memory, partial_fit, HMMs,
PPCA, bad input."""

import tracemalloc
import warnings
import weakref

import numpy as np
import pytest

from lateo import GaussianHMM, GaussianMixture
from lateo.algorithms.online_em import ChunkStream, FirstStepExact, check_schedule, online_scan
from lateo.core.schedules import Constant, PowerDecay
from lateo.exceptions import ConvergenceWarning
from lateo.models.ppca import PPCA

MEANS = np.array([[0.0, 0.0], [4.0, 1.0], [-2.0, 4.0]])
CHOL = np.array([[[1.0, 0.0], [0.5, 0.8]], [[0.6, 0.0], [-0.3, 1.2]], [[0.7, 0.0], [0.0, 0.7]]])
WEIGHTS = np.array([0.5, 0.3, 0.2])


def gmm_chunk(index, size, seed=7):
    """Rows ``index * size ...`` of an endless i.i.d. 3-component stream (reproducible per chunk)."""
    rng = np.random.default_rng([seed, index])
    labels = np.searchsorted(np.cumsum(WEIGHTS)[:-1], rng.random(size), side="right")
    eps = rng.standard_normal((size, 2))
    return np.einsum("nij,nj->ni", CHOL[labels], eps) + MEANS[labels]


@pytest.fixture(scope="module")
def X():
    return gmm_chunk(0, 3000)


def _init(X):
    """Shared initial parameters (deterministic, away from the optimum)."""
    means = MEANS + np.array([0.7, -0.5])
    precisions = np.tile(np.eye(2) / 2.0, (3, 1, 1))
    return dict(weights_init=np.full(3, 1 / 3), means_init=means, precisions_init=precisions)


def _quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return fn(*args, **kwargs)


# --------------------------------------------------------------- gamma = 1


def test_gmm_gamma_one_single_batch_is_exact_em(X):
    kw = dict(tol=0.0, max_iter=15, progress=False, **_init(X))
    exact = _quiet(GaussianMixture(3, **kw).fit, X)
    online = GaussianMixture(3, step_size=Constant(), **kw).fit(X, algorithm="online", batch_size=len(X))
    assert online.n_steps_ == online.n_iter_ == 15
    for name in ("weights_", "means_", "covariances_"):
        np.testing.assert_allclose(getattr(online, name), getattr(exact, name), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(online.lower_bounds_, exact.lower_bounds_, rtol=1e-10)


def test_ppca_gamma_one_single_batch_is_exact_em(X):
    data = np.column_stack([X, X @ np.array([[1.0, -0.5], [0.3, 2.0]]), X[:, :1]]) + 0.1 * gmm_chunk(1, 3000)[:, :1]
    kw = dict(method="em", tol=0.0, max_iter=10, random_state=0, progress=False)
    exact = _quiet(PPCA(2, **kw).fit, data)
    online = PPCA(2, step_size=Constant(), **kw).fit(data, algorithm="online", batch_size=len(data))
    assert abs(online.noise_variance_ - exact.noise_variance_) < 1e-10 * exact.noise_variance_
    np.testing.assert_allclose(online.loadings_, exact.loadings_, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(online.mean_, exact.mean_, rtol=1e-10, atol=1e-12)


def _true_hmm():
    true = GaussianHMM(3, init_params="", random_state=0, progress=False)
    true.startprob_ = np.array([0.6, 0.3, 0.1])
    true.transmat_ = np.array([[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6]])
    true.means_ = np.array([[0.0, 0.0], [3.0, 3.0], [-3.0, 3.0]])
    true.covars_ = np.ones((3, 2))
    return true


@pytest.fixture(scope="module")
def hmm_data():
    return [_true_hmm().sample(50, random_state=i)[0] for i in range(32)]


def _hmm(**kwargs):
    """A Gaussian HMM started from means near the truth (no k-means compilation in these tests)."""
    model = GaussianHMM(3, init_params="stc", random_state=1, progress=False, **kwargs)
    model.means_ = _true_hmm().means_ + 0.8
    return model


def test_hmm_gamma_one_single_batch_is_baum_welch(hmm_data):
    exact = _hmm(n_iter=4, tol=-np.inf).fit(hmm_data[:8])
    online = _hmm(n_iter=4, tol=-np.inf, step_size=Constant()).fit(hmm_data[:8], algorithm="online", batch_size=8)
    np.testing.assert_allclose(online.lower_bounds_, exact.lower_bounds_, rtol=1e-10)
    for name in ("startprob_", "transmat_", "means_", "covars_"):
        np.testing.assert_allclose(getattr(online, name), getattr(exact, name), rtol=1e-10, atol=1e-12)


def test_hmm_online_minibatches_of_sequences(hmm_data):
    """Minibatches of 8 of the 32 sequences, three passes (12 steps).

    The maximum-likelihood fit scores above the true parameters; the online
    fit must come within 1 per sequence (32 in all) of them, the order of the
    sampling noise that its last steps (gamma_12 = 12^-0.6 = 0.22 on 8
    sequences) still carry.
    """
    truth = _true_hmm().score(hmm_data)
    online = _hmm(n_iter=3, tol=-np.inf, step_size=PowerDecay(0.6)).fit(hmm_data, algorithm="online", batch_size=8)
    assert online.n_iter_ == 3 and online.n_steps_ == 12
    assert online.score(hmm_data) > truth - 32.0
    partial = _hmm(step_size=PowerDecay(0.6))
    for i in range(0, 32, 8):
        partial.partial_fit(hmm_data[i:i + 8])
    assert partial.n_steps_ == 4 and len(partial.lower_bounds_) == 4
    assert partial.score(hmm_data) > truth - 64.0
    chunks = iter([hmm_data[i:i + 8] for i in range(0, 32, 8)])  # initialised from the first chunk, as partial_fit
    streamed = _hmm(n_iter=1, step_size=PowerDecay(0.6)).fit(chunks, algorithm="online", batch_size=8)
    assert streamed.n_steps_ == 4
    np.testing.assert_allclose(streamed.means_, partial.means_, rtol=1e-10)  # the same four steps


# --------------------------------------------------------------- arrays, partial_fit


def test_online_gmm_reaches_exact_log_likelihood(X):
    """20 passes of minibatches of 100 rows: within 1e-3 per sample of exact EM's optimum."""
    exact = GaussianMixture(3, tol=1e-10, max_iter=500, progress=False, **_init(X)).fit(X)
    online = _quiet(GaussianMixture(3, max_iter=20, tol=0.0, random_state=0, progress=False, **_init(X)).fit,
                    X, algorithm="online", batch_size=100)
    assert online.n_steps_ == 20 * 30
    gap = exact.score(X) - online.score(X)
    assert 0 <= gap < 1e-3


def test_partial_fit_with_gamma_one_is_em_step_by_step(X):
    """Each call is one step; with gamma = 1 on the same rows, k calls are k exact EM iterations."""
    kw = dict(progress=False, **_init(X))
    exact = _quiet(GaussianMixture(3, max_iter=3, tol=0.0, **kw).fit, X)
    partial = GaussianMixture(3, step_size=Constant(), **kw)
    for _ in range(3):
        partial.partial_fit(X)
    assert partial.n_steps_ == 3
    np.testing.assert_allclose(partial.means_, exact.means_, rtol=1e-10)
    np.testing.assert_allclose(partial.covariances_, exact.covariances_, rtol=1e-10)
    np.testing.assert_allclose(partial.lower_bounds_, exact.lower_bounds_, rtol=1e-10)


def test_partial_fit_on_minibatches_approaches_the_fit(X):
    """20 calls on 150 rows each, gamma_k = k^-0.6 (no burn-in: the 20 steps average)."""
    model = GaussianMixture(3, progress=False, step_size=PowerDecay(0.6), **_init(X))
    for i in range(0, len(X), 150):
        model.partial_fit(X[i:i + 150])
    assert model.n_steps_ == 20
    exact = GaussianMixture(3, tol=1e-10, max_iter=500, progress=False, **_init(X)).fit(X)
    assert exact.score(X) - model.score(X) < 5e-3
    with pytest.raises(ValueError, match="features"):
        model.partial_fit(np.ones((10, 3)))


def test_step_size_first_step_replaces_empty_statistics():
    schedule = check_schedule(PowerDecay(alpha=0.7, offset=5.0))
    assert isinstance(schedule, FirstStepExact)
    assert float(schedule(1)) == 1.0
    assert float(schedule(2)) == pytest.approx(7.0 ** -0.7)
    assert check_schedule(Constant()) == Constant()


# --------------------------------------------------------------- streams


def test_exact_em_over_chunks_equals_exact_em_on_the_array(X):
    kw = dict(tol=0.0, max_iter=10, progress=False, **_init(X))
    whole = _quiet(GaussianMixture(3, **kw).fit, X)
    chunked = GaussianMixture(3, **kw).fit(lambda: (X[i:i + 700] for i in range(0, len(X), 700)))
    np.testing.assert_allclose(chunked.means_, whole.means_, rtol=1e-10)
    np.testing.assert_allclose(chunked.covariances_, whole.covariances_, rtol=1e-10)
    np.testing.assert_allclose(chunked.lower_bounds_, whole.lower_bounds_, rtol=1e-10)


class _LiveChunks:
    """Chunks generated on the fly; counts how many are alive at once (weak references)."""

    def __init__(self, n_chunks, size):
        self.n_chunks, self.size, self.alive, self.max_alive = n_chunks, size, 0, 0

    def _release(self):
        self.alive -= 1

    def __call__(self):
        for i in range(self.n_chunks):
            chunk = gmm_chunk(i, self.size)
            self.alive += 1
            self.max_alive = max(self.max_alive, self.alive)
            weakref.finalize(chunk, self._release)
            yield chunk
            del chunk


@pytest.mark.slow
def test_ten_million_points_streamed_in_bounded_memory():
    """10^7 rows in 40 chunks of 250,000, generated on the fly (the whole array would take 160 MB).

    One online pass (minibatches of 10^4, the default step sizes) reaches the
    exact-EM log-likelihood within 1e-3 per sample. The reference is exact
    EM over the same stream (chunk statistics summed at every iteration),
    started from the online solution: EM never decreases the likelihood, so
    its first value is the exact log-likelihood of the online parameters and
    its last the optimum; the parameters also match the truth, so that
    optimum is the global one.
    """
    chunks = _LiveChunks(40, 250_000)
    online = GaussianMixture(3, random_state=0, progress=False, batch_size=10_000)
    tracemalloc.start()
    online.fit(chunks(), algorithm="online")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert online.n_steps_ == 1000
    assert chunks.max_alive <= 2
    assert peak < 160e6 / 4
    exact = GaussianMixture(3, warm_start=True, tol=1e-9, max_iter=4, progress=False)
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
        setattr(exact, name, getattr(online, name))
    exact.fit(_LiveChunks(40, 250_000), algorithm="batch")
    at_online, optimum = exact.lower_bounds_[0], exact.lower_bounds_[-1]
    assert 0 <= optimum - at_online < 1e-3
    order = np.argsort(exact.means_[:, 0])
    np.testing.assert_allclose(exact.weights_[order], WEIGHTS[[2, 0, 1]], atol=1e-3)
    np.testing.assert_allclose(exact.means_[order], MEANS[[2, 0, 1]], atol=5e-3)


def test_one_shot_iterator_and_reiterable_streams(X):
    parts = [X[:1000].copy(), X[1000:2000].copy(), X[2000:].copy()]
    before = [p.copy() for p in parts]
    one_pass = GaussianMixture(3, max_iter=5, progress=False, **_init(X))
    one_pass.fit(iter(parts), algorithm="online", batch_size=250)
    assert one_pass.n_iter_ == 1 and one_pass.n_steps_ == 12
    for p, b in zip(parts, before):  # chunks are read, never modified
        np.testing.assert_array_equal(p, b)
    several = GaussianMixture(3, max_iter=3, tol=0.0, progress=False, **_init(X))
    several.fit(ChunkStream(lambda: iter(parts)), algorithm="online", batch_size=250)
    assert several.n_iter_ == 3 and several.n_steps_ == 36
    ppca = PPCA(1, max_iter=2, random_state=0, progress=False).fit(lambda: iter(parts), algorithm="online",
                                                                    batch_size=500)
    assert ppca.n_steps_ == 12 and ppca.components_.shape == (1, 2)


def test_online_fit_compiles_once(X):
    """Chunks of any size, passes, a last short minibatch: one compiled online step per (model, layout)."""
    kw = dict(max_iter=2, tol=0.0, progress=False, batch_size=250, **_init(X))
    GaussianMixture(3, **kw).fit(lambda: iter([X[:1000], X[1000:2000]]), algorithm="online")
    cache = online_scan._cache_size()
    GaussianMixture(3, **kw).fit(lambda: iter([X[:1000], X[1000:1770], X[1770:2900]]), algorithm="online")
    assert online_scan._cache_size() == cache


def test_online_ppca_with_missing_values_recovers_the_subspace():
    rng = np.random.default_rng(0)
    W = rng.normal(size=(6, 2)) * np.array([3.0, 2.0])
    X = rng.normal(size=(4000, 2)) @ W.T + 0.5 * rng.normal(size=(4000, 6))
    X[rng.random(X.shape) < 0.2] = np.nan
    model = PPCA(2, max_iter=5, tol=0.0, random_state=0, progress=False).fit(X, algorithm="online", batch_size=200)
    from scipy.linalg import subspace_angles

    assert subspace_angles(model.components_.T, W).max() < 0.05
    assert model.noise_variance_ == pytest.approx(0.25, rel=0.1)


# --------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "fit_kwargs, init_kwargs, match",
    [
        ({"algorithm": "minibatch"}, {}, "algorithm"),
        ({"algorithm": "online", "batch_size": 0}, {}, "batch_size"),
        ({"algorithm": "online", "batch_size": 2.5}, {}, "batch_size"),
        ({"algorithm": "online"}, {"step_size": 0.5}, "step_size"),
        ({}, {"em_algorithm": "sgd"}, "algorithm"),
    ],
)
def test_bad_options(X, fit_kwargs, init_kwargs, match):
    with pytest.raises(ValueError, match=match):
        GaussianMixture(3, progress=False, **init_kwargs).fit(X, **fit_kwargs)


def test_bad_streams(X):
    gm = GaussianMixture(3, progress=False, batch_size=250)
    X = X[:1000]
    with pytest.raises(ValueError, match="re-iterable"):
        gm.fit(iter([X]), algorithm="batch")
    with pytest.raises(ValueError, match="empty"):
        gm.fit(iter([]), algorithm="online")
    with pytest.raises(ValueError, match="chunk 1 of X"):
        gm.fit(iter([X, X[:, :1]]), algorithm="online")
    bad = X.copy()
    bad[5, 0] = np.nan
    with pytest.raises(ValueError, match="chunk 1 of X contains 1 NaN"):
        gm.fit(iter([X, bad]), algorithm="online")
    consumed = ChunkStream(iter([X]))
    gm.fit(consumed, algorithm="online")
    with pytest.raises(ValueError, match="consumed"):
        gm.fit(consumed, algorithm="online")
    with pytest.raises(ValueError, match="online"):
        GaussianHMM(2, progress=False).fit(iter([X]), algorithm="batch")
