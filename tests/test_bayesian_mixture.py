"""BayesianGaussianMixture (CAVI): differential tests against scikit-learn from the
same initial responsibilities, the full ELBO (scikit-learn's bound plus the
constants it drops, and term by term from Bishop 2006 eq. 10.70-10.77),
monotone ELBO, pruning, bad input, no mutation, compile-once.

All differential fits share one data set (blobs3, 500 x 3) and K = 4, so each
(covariance type, weight prior) pair compiles once; fits are cached.
"""

import functools
import math
import warnings

import numpy as np
import pytest
from scipy.special import betaln, digamma, gammaln
from sklearn.exceptions import ConvergenceWarning as SkConvergenceWarning
from sklearn.mixture import BayesianGaussianMixture as SkBGMM

from lateo.core.loop import run_chunk
from lateo.exceptions import ConvergenceWarning
from lateo.models.bayesian_mixture import BayesianGaussianMixture

COV_TYPES = ["full", "tied", "diag", "spherical"]
PRIORS = ["dirichlet_process", "dirichlet_distribution"]
RTOL = 1e-8
K = 4


def _resp(n, seed=5):
    return np.random.default_rng(seed).dirichlet(np.ones(K), size=n)


def _sklearn_from_resp(resp, **kwargs):
    """scikit-learn's estimator, initialised by ``_initialize(X, resp)`` (its own code path)."""

    class Injected(SkBGMM):
        def _initialize_parameters(self, X, random_state, xp=None):
            self._initialize(X, resp)

    return Injected(n_components=resp.shape[1], **kwargs)


@functools.lru_cache(maxsize=None)
def _pair(X_key, covariance_type, prior_type, max_iter=200, tol=1e-6):
    X = _DATA[X_key]
    resp = _resp(X.shape[0])
    kw = dict(covariance_type=covariance_type, weight_concentration_prior_type=prior_type, max_iter=max_iter, tol=tol)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SkConvergenceWarning)
        warnings.simplefilter("ignore", ConvergenceWarning)
        sk = _sklearn_from_resp(resp, **kw).fit(X)
        lt = BayesianGaussianMixture(K, prune_threshold=0.0, progress=False, **kw).fit(X, resp_init=resp)
    return sk, lt


_DATA = {}


@pytest.fixture(scope="module")
def data(blobs3):
    _DATA["blobs3"] = blobs3
    return blobs3


def _rel(a, b):
    return np.max(np.abs(np.asarray(a) - np.asarray(b)) / np.maximum(np.abs(np.asarray(b)), 1e-300))


def sklearn_dropped_constants(sk, n_samples):
    """The constants of the ELBO that scikit-learn's ``_compute_lower_bound`` leaves out,
    written independently of lateo: weight prior ``log C(alpha0)``, ``-N D/2 log 2 pi``,
    ``K D/2 log beta0`` and ``K`` Wishart prior normalisers (with the ``log pi``
    term scikit-learn also strips from the posterior ones)."""
    d, k = sk.means_.shape[1], sk.n_components
    a0, b0, nu0 = sk.weight_concentration_prior_, sk.mean_precision_prior_, sk.degrees_of_freedom_prior_
    if sk.weight_concentration_prior_type == "dirichlet_process":
        weights = -k * betaln(1.0, a0)
    else:
        weights = gammaln(k * a0) - k * gammaln(a0)
    psi0 = sk.covariance_prior_
    if sk.covariance_type in ("full", "tied"):
        log_det_psi0 = np.linalg.slogdet(psi0)[1]
    elif sk.covariance_type == "diag":
        log_det_psi0 = np.sum(np.log(psi0))
    else:
        log_det_psi0 = d * np.log(psi0)
    log_b0 = (0.5 * nu0 * log_det_psi0 - 0.5 * nu0 * d * math.log(2) - 0.25 * d * (d - 1) * math.log(math.pi)
              - sum(gammaln(0.5 * (nu0 - i)) for i in range(d)))
    return (weights - 0.5 * n_samples * d * math.log(2 * math.pi) + 0.5 * k * d * math.log(b0)
            + k * (log_b0 + 0.25 * d * (d - 1) * math.log(math.pi)))


@pytest.mark.parametrize("prior_type", PRIORS)
@pytest.mark.parametrize("covariance_type", COV_TYPES)
def test_matches_sklearn_from_same_responsibilities(data, covariance_type, prior_type):
    sk, lt = _pair("blobs3", covariance_type, prior_type)
    assert lt.n_iter_ == sk.n_iter_ and lt.converged_ == sk.converged_
    np.testing.assert_allclose(np.ravel(lt.weight_concentration_), np.ravel(sk.weight_concentration_), rtol=RTOL)
    for name in ("weights_", "mean_precision_", "means_", "degrees_of_freedom_", "covariances_",
                 "precisions_cholesky_", "precisions_"):
        np.testing.assert_allclose(getattr(lt, name), getattr(sk, name), rtol=RTOL, err_msg=name)
    np.testing.assert_allclose(lt.predict_proba(data), sk.predict_proba(data), rtol=RTOL, atol=1e-12)
    np.testing.assert_allclose(lt.score_samples(data), sk.score_samples(data), rtol=RTOL)
    np.testing.assert_array_equal(lt.predict(data), sk.predict(data))
    np.testing.assert_allclose(lt.sklearn_lower_bound_, sk.lower_bound_, rtol=RTOL)


@pytest.mark.parametrize("prior_type", PRIORS)
@pytest.mark.parametrize("covariance_type", COV_TYPES)
def test_elbo_is_sklearn_bound_plus_dropped_constants(data, covariance_type, prior_type):
    sk, lt = _pair("blobs3", covariance_type, prior_type)
    const = sklearn_dropped_constants(sk, data.shape[0])
    np.testing.assert_allclose(lt.elbo_constant_, const, rtol=1e-12)
    np.testing.assert_allclose(lt.lower_bound_, sk.lower_bound_ + const, rtol=RTOL)
    np.testing.assert_allclose(lt.lower_bounds_, np.ravel(sk.lower_bounds_) + const, rtol=RTOL)
    assert lt.elbo_ == lt.lower_bound_


def _direct_elbo(X, r, est):
    """ELBO(q(Z) = r, q(pi, mu, Lambda) = est's factors), term by term (Bishop 2006, eq.
    10.70-10.77; stick-breaking weights as in Blei & Jordan 2006), full covariances."""
    n, d = X.shape
    k = r.shape[1]
    nk = r.sum(0)
    xbar = r.T @ X / nk[:, None]
    S = np.stack([(r[:, j, None] * (X - xbar[j])).T @ (X - xbar[j]) / nk[j] for j in range(k)])
    beta, m, nu = est.mean_precision_, est.means_, est.degrees_of_freedom_
    W = np.linalg.inv(est.covariances_ * nu[:, None, None])
    W0 = np.linalg.inv(est.covariance_prior_)
    a0, b0, m0, nu0 = est.weight_concentration_prior_, est.mean_precision_prior_, est.mean_prior_, est.degrees_of_freedom_prior_

    def log_b(Wm, v):
        return (-0.5 * v * np.linalg.slogdet(Wm)[1] - 0.5 * v * d * math.log(2) - 0.25 * d * (d - 1) * math.log(math.pi)
                - sum(gammaln(0.5 * (v + 1 - i)) for i in range(1, d + 1)))

    elog_lam = np.array([sum(digamma(0.5 * (nu[j] + 1 - i)) for i in range(1, d + 1)) + d * math.log(2)
                         + np.linalg.slogdet(W[j])[1] for j in range(k)])
    quad = lambda v, j: v @ W[j] @ v  # noqa: E731
    e_lik = 0.5 * sum(nk[j] * (elog_lam[j] - d / beta[j] - nu[j] * np.trace(S[j] @ W[j])
                               - nu[j] * quad(xbar[j] - m[j], j) - d * math.log(2 * math.pi)) for j in range(k))
    e_prior_theta = (0.5 * sum(d * math.log(b0 / (2 * math.pi)) + elog_lam[j] - d * b0 / beta[j]
                               - b0 * nu[j] * quad(m[j] - m0, j) for j in range(k))
                     + k * log_b(W0, nu0) + 0.5 * (nu0 - d - 1) * elog_lam.sum()
                     - 0.5 * sum(nu[j] * np.trace(np.linalg.inv(W0) @ W[j]) for j in range(k)))
    e_q_theta = sum(0.5 * elog_lam[j] + 0.5 * d * math.log(beta[j] / (2 * math.pi)) - 0.5 * d
                    + log_b(W[j], nu[j]) + 0.5 * (nu[j] - d - 1) * elog_lam[j] - 0.5 * nu[j] * d for j in range(k))
    if est.weight_concentration_prior_type == "dirichlet_distribution":
        alpha = est.weight_concentration_
        elog_pi = digamma(alpha) - digamma(alpha.sum())
        log_c = lambda al: gammaln(al.sum()) - gammaln(al).sum()  # noqa: E731
        e_weights = (log_c(np.full(k, a0)) + (a0 - 1) * elog_pi.sum()) - (log_c(alpha) + ((alpha - 1) * elog_pi).sum())
    else:
        a, b = est.weight_concentration_
        elog_v, elog_1v = digamma(a) - digamma(a + b), digamma(b) - digamma(a + b)
        elog_pi = elog_v + np.concatenate([[0.0], np.cumsum(elog_1v)[:-1]])
        e_weights = (np.sum(-betaln(1.0, a0) + (a0 - 1) * elog_1v)
                     - np.sum(-betaln(a, b) + (a - 1) * elog_v + (b - 1) * elog_1v))
    e_z = nk @ elog_pi - np.sum(r * np.log(r))
    return e_lik + e_z + e_weights + e_prior_theta - e_q_theta


@pytest.mark.parametrize("prior_type", PRIORS)
def test_full_elbo_equals_bishop_term_by_term(data, prior_type):
    """With reg_covar=0 the collapsed ELBO is exact: r from the E-step at the start,
    q(theta) from one CAVI update, every expectation of eq. 10.70 evaluated directly."""
    kw = dict(covariance_type="full", weight_concentration_prior_type=prior_type, reg_covar=0.0,
              prune_threshold=0.0, tol=0.0, progress=False)
    resp = _resp(data.shape[0])
    start = BayesianGaussianMixture(K, max_iter=0, **kw).fit(data, resp_init=resp)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        one = BayesianGaussianMixture(K, max_iter=1, **kw).fit(data, resp_init=resp)
    r = start.predict_proba(data)
    np.testing.assert_allclose(one.lower_bound_, _direct_elbo(data, r, one), rtol=1e-10)


@pytest.mark.parametrize("prior_type", PRIORS)
def test_elbo_never_decreases(data, prior_type):
    bgm = BayesianGaussianMixture(K, weight_concentration_prior_type=prior_type, reg_covar=0.0, tol=0.0, max_iter=150,
                                  prune_threshold=0.0, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        bgm.fit(data, resp_init=_resp(data.shape[0], seed=9))
    history = bgm.lower_bounds_
    assert history.size == 150
    assert np.all(np.diff(history) >= -64 * np.finfo(float).eps * np.abs(history[1:]))


@pytest.fixture(scope="module")
def three_clusters():
    rng = np.random.default_rng(0)
    centers = np.array([[0.0, 0.0], [6.0, 0.0], [0.0, 6.0]]) + 3.0
    y = rng.integers(3, size=600)
    return centers[y] + 0.8 * rng.normal(size=(600, 2)), y, centers


@pytest.mark.parametrize("prior_type", PRIORS)
@pytest.mark.parametrize("seed", [0, 1])
def test_prunes_unused_components(three_clusters, prior_type, seed):
    """3 well-separated clusters, K = 10: exactly the 3 used components survive."""
    X, y, centers = three_clusters
    bgm = BayesianGaussianMixture(10, weight_concentration_prior_type=prior_type, init_params="k-means++",
                                  max_iter=500, random_state=seed, progress=False).fit(X)
    assert bgm.converged_
    assert bgm.n_components_ == 3 and bgm.active_components_.size == 3
    assert bgm.means_.shape == (3, 2) and bgm.covariances_.shape == (3, 2, 2) and bgm.weights_.shape == (3,)
    assert np.all(bgm.effective_counts_[bgm.active_components_] > 100)
    dropped = np.setdiff1d(np.arange(10), bgm.active_components_)
    assert np.all(bgm.effective_counts_[dropped] < 1.0)
    order = [int(np.argmin(np.linalg.norm(bgm.means_ - c, axis=1))) for c in centers]
    np.testing.assert_allclose(bgm.means_[order], centers, atol=0.2)
    np.testing.assert_array_equal(np.asarray(order)[y], bgm.predict(X))
    np.testing.assert_allclose(bgm.weights_.sum(), 1.0)
    assert bgm.predict_proba(X).shape == (600, 3)


def test_fit_predict_sample_and_compiles_once(data):
    bgm = BayesianGaussianMixture(K, prune_threshold=0.0, max_iter=200, progress=False)
    labels = bgm.fit_predict(data, resp_init=_resp(data.shape[0]))
    np.testing.assert_array_equal(labels, bgm.predict(data))
    cache = run_chunk._cache_size()
    other = BayesianGaussianMixture(K, weight_concentration_prior_type="dirichlet_distribution", prune_threshold=0.0,
                                    max_iter=200, random_state=3, progress=False)
    other.fit(data, resp_init=_resp(data.shape[0], seed=11))
    assert run_chunk._cache_size() == cache  # new responsibilities, other weight prior: no recompilation
    Xs, ys = bgm.set_params(random_state=0).sample(5000)
    assert Xs.shape == (5000, 3) and ys.shape == (5000,)
    np.testing.assert_allclose(np.bincount(ys, minlength=K) / 5000, bgm.weights_, atol=0.03)


def test_features_block_by_block_equal_cached_features(data, monkeypatch):
    """Data too large to cache T(X) compute it block by block: the same fit."""
    import lateo.models.bayesian_mixture as module

    sk, cached = _pair("blobs3", "spherical", "dirichlet_process")
    monkeypatch.setattr(module, "FEATURE_CACHE_BYTES", 0)
    kw = dict(covariance_type="spherical", max_iter=200, tol=1e-6, prune_threshold=0.0, progress=False)
    blockwise = BayesianGaussianMixture(K, **kw).fit(data, resp_init=_resp(data.shape[0]))
    assert blockwise.n_iter_ == cached.n_iter_
    np.testing.assert_allclose(blockwise.means_, cached.means_, rtol=1e-12)
    np.testing.assert_allclose(blockwise.lower_bounds_, cached.lower_bounds_, rtol=1e-12)


def test_warm_start_continues(data):
    bgm = BayesianGaussianMixture(K, max_iter=3, tol=0.0, warm_start=True, prune_threshold=0.0, progress=False)
    with pytest.warns(ConvergenceWarning, match="did not converge"):
        bgm.fit(data, resp_init=_resp(data.shape[0]))
    first = bgm.lower_bound_
    with pytest.warns(ConvergenceWarning):
        bgm.fit(data)
    assert bgm.lower_bound_ >= first and bgm.lower_bounds_.size == 3


def test_caller_arrays_not_modified(data):
    X = data.copy()
    resp = _resp(X.shape[0])
    priors = dict(mean_prior=X.mean(0) + 1.0, covariance_prior=np.cov(X.T) * 2.0)
    frozen = (resp.copy(), {k: v.copy() for k, v in priors.items()})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        BayesianGaussianMixture(K, max_iter=5, tol=0.0, progress=False, **priors).fit(X, resp_init=resp)
    np.testing.assert_array_equal(X, data)
    np.testing.assert_array_equal(resp, frozen[0])
    for k, v in priors.items():
        np.testing.assert_array_equal(v, frozen[1][k])


def test_random_init_and_verbose(data, capsys):
    bgm = BayesianGaussianMixture(K, init_params="random", n_init=2, random_state=1, verbose=1, progress=False).fit(data)
    assert "Initialization 1" in capsys.readouterr().out
    assert np.isfinite(bgm.lower_bound_) and bgm.lower_bound_ <= 0


_X = np.arange(12.0).reshape(6, 2) + np.random.default_rng(0).normal(size=(6, 2))


@pytest.mark.parametrize(
    "X, kwargs, fit_kwargs, match",
    [
        (np.array([[0.0, np.nan], [1.0, 2.0]]), {}, {}, "NaN"),
        (np.array([[0.0, np.inf], [1.0, 2.0]]), {}, {}, "infinite"),
        (np.arange(5.0), {}, {}, "2-D"),
        (np.zeros((0, 2)), {}, {}, "empty"),
        (_X[:1], {}, {}, "covariance_prior"),
        (_X, {"n_components": 7}, {}, "n_components"),
        (_X, {"n_components": 0}, {}, "n_components"),
        (_X, {"covariance_type": "banana"}, {}, "covariance_type"),
        (_X, {"init_params": "banana"}, {}, "init_params"),
        (_X, {"weight_concentration_prior_type": "pitman_yor"}, {}, "weight_concentration_prior_type"),
        (_X, {"weight_concentration_prior": 0.0}, {}, "weight_concentration_prior"),
        (_X, {"mean_precision_prior": -1.0}, {}, "mean_precision_prior"),
        (_X, {"degrees_of_freedom_prior": 0.5}, {}, "degrees_of_freedom_prior"),
        (_X, {"mean_prior": [0.0, 0.0, 0.0]}, {}, "mean_prior"),
        (_X, {"mean_prior": [0.0, np.nan]}, {}, "mean_prior"),
        (_X, {"covariance_prior": -np.eye(2)}, {}, "covariance_prior"),
        (_X, {"covariance_prior": np.ones(2)}, {}, "covariance_prior"),
        (_X, {"covariance_type": "diag", "covariance_prior": [1.0, -1.0]}, {}, "covariance_prior"),
        (_X, {"covariance_type": "spherical", "covariance_prior": 0.0}, {}, "covariance_prior"),
        (_X, {"tol": -1.0}, {}, "tol"),
        (_X, {"max_iter": 1.5}, {}, "max_iter"),
        (_X, {"prune_threshold": -1.0}, {}, "prune_threshold"),
        (_X, {"dtype": "float16"}, {}, "dtype"),
        (_X, {"progress": "sometimes"}, {}, "progress"),
        (_X, {"n_components": 2}, {"resp_init": np.full((6, 3), 1 / 3)}, "resp_init"),
        (_X, {"n_components": 2}, {"resp_init": np.full((6, 2), 0.7)}, "resp_init"),
    ],
)
def test_bad_input_raises_clear_error(X, kwargs, fit_kwargs, match):
    with pytest.raises(ValueError, match=match):
        BayesianGaussianMixture(**kwargs).fit(X, **fit_kwargs)


def test_predict_before_fit_and_wrong_features(data):
    with pytest.raises(ValueError, match="not fitted"):
        BayesianGaussianMixture().predict(data)
    _, lt = _pair("blobs3", "full", "dirichlet_process")
    with pytest.raises(ValueError, match="features"):
        lt.predict(data[:, :2])
