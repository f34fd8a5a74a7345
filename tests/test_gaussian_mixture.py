"""GaussianMixture: differential tests against scikit-learn, EM monotonicity,
Old Faithful, determinism, compile-once, bad input and degenerate data."""

import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning as SkConvergenceWarning
from sklearn.mixture import GaussianMixture as SkGaussianMixture

from lateo import GaussianMixture
from lateo.core.loop import run_chunk
from lateo.exceptions import ConvergenceWarning

COV_TYPES = ["full", "tied", "diag", "spherical"]
RTOL = 1e-8


def _shared_init(X, covariance_type, k=3, seed=1):
    """Initial parameters from a 1-iteration scikit-learn fit, for both libraries."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SkConvergenceWarning)
        sk0 = SkGaussianMixture(k, covariance_type=covariance_type, max_iter=1, random_state=seed,
                                init_params="random_from_data").fit(X)
    return dict(weights_init=sk0.weights_, means_init=sk0.means_, precisions_init=sk0.precisions_)


def _pair(X, covariance_type, max_iter, tol, k=3):
    init = _shared_init(X, covariance_type, k)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SkConvergenceWarning)
        warnings.simplefilter("ignore", ConvergenceWarning)
        sk = SkGaussianMixture(k, covariance_type=covariance_type, max_iter=max_iter, tol=tol, **init).fit(X)
        lt = GaussianMixture(k, covariance_type=covariance_type, max_iter=max_iter, tol=tol, **init).fit(X)
    return sk, lt


def _assert_same(sk, lt):
    np.testing.assert_allclose(lt.weights_, sk.weights_, rtol=RTOL)
    np.testing.assert_allclose(lt.means_, sk.means_, rtol=RTOL)
    np.testing.assert_allclose(lt.covariances_, sk.covariances_, rtol=RTOL)
    np.testing.assert_allclose(lt.precisions_cholesky_, sk.precisions_cholesky_, rtol=1e-6 * 0 + RTOL)
    np.testing.assert_allclose(lt.lower_bound_, sk.lower_bound_, rtol=RTOL)
    np.testing.assert_allclose(lt.lower_bounds_, sk.lower_bounds_, rtol=RTOL)
    assert lt.n_iter_ == sk.n_iter_
    assert lt.converged_ == sk.converged_


@pytest.mark.parametrize("covariance_type", COV_TYPES)
def test_one_em_step_matches_sklearn(blobs3, covariance_type):
    sk, lt = _pair(blobs3, covariance_type, max_iter=1, tol=0.0)
    _assert_same(sk, lt)


@pytest.mark.parametrize("covariance_type", COV_TYPES)
def test_full_fit_matches_sklearn(blobs3, covariance_type):
    sk, lt = _pair(blobs3, covariance_type, max_iter=2000, tol=1e-8)
    assert sk.converged_
    _assert_same(sk, lt)
    np.testing.assert_allclose(lt.bic(blobs3), sk.bic(blobs3), rtol=RTOL)
    np.testing.assert_allclose(lt.aic(blobs3), sk.aic(blobs3), rtol=RTOL)
    np.testing.assert_allclose(lt.score_samples(blobs3), sk.score_samples(blobs3), rtol=RTOL)
    np.testing.assert_allclose(lt.predict_proba(blobs3), sk.predict_proba(blobs3), atol=1e-8)
    np.testing.assert_array_equal(lt.predict(blobs3), sk.predict(blobs3))
    np.testing.assert_allclose(lt.precisions_, sk.precisions_, rtol=RTOL)


@pytest.mark.parametrize("covariance_type", COV_TYPES)
def test_log_likelihood_never_decreases(blobs3, covariance_type):
    """Step by step over 300 exact-EM steps (seed 002: EM is monotone).

    reg_covar=0 so that the M-step is the exact maximiser; the allowance is
    floating-point rounding of a sum of 500 log-densities.
    """
    gm = GaussianMixture(3, covariance_type=covariance_type, reg_covar=0.0, tol=0.0, max_iter=300,
                         init_params="random", random_state=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        gm.fit(blobs3)
    history = gm.lower_bounds_
    assert history.size == 300
    rounding = 64 * np.finfo(float).eps * np.abs(history[1:])
    assert np.all(np.diff(history) >= -rounding)


@pytest.mark.parametrize("covariance_type", COV_TYPES)
def test_map_objective_never_decreases(blobs3, covariance_type):
    """MAP-EM increases log p(X | theta) + log p(theta)."""
    gm = GaussianMixture(3, covariance_type=covariance_type, reg_covar=0.0, tol=0.0, max_iter=200,
                         init_params="random_from_data", random_state=4, prior="default")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        gm.fit(blobs3)
    history = gm.lower_bounds_
    rounding = 64 * np.finfo(float).eps * np.abs(history[1:])
    assert np.all(np.diff(history) >= -rounding)
    assert np.all(np.isfinite(gm.covariances_))


def test_old_faithful_default_settings(faithful):
    """K=2 full with default settings reaches log L = -1130.264 (+-1e-3)."""
    gm = GaussianMixture(2, random_state=0).fit(faithful)
    assert gm.converged_
    assert abs(gm.score(faithful) * faithful.shape[0] - (-1130.264)) < 1e-3


@pytest.mark.parametrize("init_params", ["k-means++", "kmeans", "random_from_data"])
def test_old_faithful_every_init_reaches_optimum(faithful, init_params):
    gm = GaussianMixture(2, init_params=init_params, n_init=3, tol=1e-6, random_state=1).fit(faithful)
    assert abs(gm.score(faithful) * faithful.shape[0] - (-1130.264)) < 1e-3


def test_same_random_state_same_result_and_compiles_once(blobs3):
    first = GaussianMixture(3, random_state=7, n_init=2).fit(blobs3)
    cache = run_chunk._cache_size()
    second = GaussianMixture(3, random_state=7, n_init=2).fit(blobs3)
    other = GaussianMixture(3, random_state=8, n_init=2).fit(blobs3)
    assert run_chunk._cache_size() == cache  # new seeds, restarts, refits: no recompilation
    np.testing.assert_array_equal(first.means_, second.means_)
    np.testing.assert_array_equal(first.lower_bounds_, second.lower_bounds_)
    assert other.n_iter_ >= 1


def test_n_init_keeps_best(blobs3):
    lbs = [GaussianMixture(3, init_params="random", random_state=s).fit(blobs3).lower_bound_ for s in range(3)]
    best = GaussianMixture(3, init_params="random", n_init=3, random_state=0).fit(blobs3)
    assert best.lower_bound_ >= min(lbs)


def test_warm_start_continues(blobs3):
    gm = GaussianMixture(3, max_iter=2, tol=0.0, warm_start=True, random_state=0)
    with pytest.warns(ConvergenceWarning, match="did not converge"):
        gm.fit(blobs3)
    first = gm.lower_bound_
    with pytest.warns(ConvergenceWarning):
        gm.fit(blobs3)
    assert gm.lower_bound_ >= first


def test_fit_predict_equals_predict(blobs3):
    gm = GaussianMixture(3, random_state=0)
    labels = gm.fit_predict(blobs3)
    np.testing.assert_array_equal(labels, gm.predict(blobs3))


def test_sample_shapes_and_moments(blobs3):
    gm = GaussianMixture(3, random_state=0).fit(blobs3)
    X, y = gm.sample(20000)
    assert X.shape == (20000, 3) and y.shape == (20000,)
    np.testing.assert_allclose(np.bincount(y, minlength=3) / 20000, gm.weights_, atol=0.02)
    np.testing.assert_allclose(X.mean(0), gm.weights_ @ gm.means_, atol=0.05)


def test_float32(blobs3):
    """Single precision from the same start reaches the float64 optimum (to float32 accuracy)."""
    init = _shared_init(blobs3, "full")
    gm64 = GaussianMixture(3, tol=1e-6, max_iter=1000, **init).fit(blobs3)
    gm32 = GaussianMixture(3, tol=1e-6, max_iter=1000, dtype="float32", **init).fit(blobs3)
    np.testing.assert_allclose(gm32.means_, gm64.means_, rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(gm32.score(blobs3), gm64.score(blobs3), rtol=1e-4)


def test_caller_arrays_not_modified(blobs3):
    X = blobs3.copy()
    init = _shared_init(X, "full")
    frozen = {k: v.copy() for k, v in init.items()}
    GaussianMixture(3, **init).fit(X)
    np.testing.assert_array_equal(X, blobs3)
    for k in init:
        np.testing.assert_array_equal(init[k], frozen[k])


def test_zero_variance_feature_is_regularised(blobs3):
    X = blobs3.copy()
    X[:, 1] = 5.0
    for covariance_type in COV_TYPES:
        gm = GaussianMixture(2, covariance_type=covariance_type, random_state=0).fit(X)
        assert np.all(np.isfinite(gm.covariances_)) and np.all(np.isfinite(gm.score_samples(X)))


def test_collapsing_component_is_regularised():
    """Duplicated points make a component collapse; reg_covar keeps it finite."""
    X = np.vstack([np.zeros((30, 2)), np.random.default_rng(0).normal(size=(30, 2)) + 5])
    gm = GaussianMixture(3, random_state=0, init_params="random_from_data").fit(X)
    assert np.all(np.isfinite(gm.precisions_cholesky_)) and np.isfinite(gm.lower_bound_)


@pytest.mark.parametrize("covariance_type", COV_TYPES)
def test_collapse_without_reg_covar_is_repaired_consistently(covariance_type):
    """reg_covar=0 on a cluster of identical points: the singular covariance is
    repaired (never NaN) and covariances_ stays the inverse of precisions_."""
    X = np.vstack([np.zeros((30, 2)), np.random.default_rng(0).normal(size=(30, 2)) + 5])
    init = dict(weights_init=[0.5, 0.5], means_init=[[0.0, 0.0], [5.0, 5.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        gm = GaussianMixture(2, covariance_type=covariance_type, reg_covar=0.0, max_iter=5, **init).fit(X)
    assert np.all(np.isfinite(gm.covariances_)) and np.all(np.isfinite(gm.precisions_))
    assert np.all(np.isfinite(gm.score_samples(X)))
    if covariance_type == "full":
        for cov, prec in zip(gm.covariances_, gm.precisions_):
            np.testing.assert_allclose(cov @ prec, np.eye(2), atol=1e-6)


def test_extreme_offset_data(blobs3):
    """Data far from the origin: centring keeps the expanded quadratic form exact."""
    sk, lt = _pair(blobs3 + 1e6, "full", max_iter=50, tol=1e-10)
    np.testing.assert_allclose(lt.means_, sk.means_, rtol=1e-10)
    np.testing.assert_allclose(lt.covariances_, sk.covariances_, rtol=1e-5)


@pytest.mark.parametrize(
    "X, kwargs, match",
    [
        (np.array([[0.0, np.nan], [1.0, 2.0]]), {}, "NaN"),
        (np.array([[0.0, np.inf], [1.0, 2.0]]), {}, "infinite"),
        (np.arange(5.0), {}, "2-D"),
        (np.zeros((0, 2)), {}, "empty"),
        (np.zeros((4, 2)), {"n_components": 0}, "n_components"),
        (np.zeros((4, 2)), {"n_components": 5}, "n_components"),
        (np.zeros((4, 2)), {"covariance_type": "banana"}, "covariance_type"),
        (np.zeros((4, 2)), {"init_params": "banana"}, "init_params"),
        (np.zeros((4, 2)), {"n_components": 2, "weights_init": [0.5, 0.6]}, "weights_init"),
        (np.zeros((4, 2)), {"n_components": 2, "weights_init": [0.5, 0.25, 0.25]}, "weights_init"),
        (np.zeros((4, 2)), {"n_components": 2, "means_init": np.zeros((3, 2))}, "means_init"),
        (np.zeros((4, 2)), {"n_components": 2, "precisions_init": np.ones((2, 2))}, "precisions_init"),
        (np.zeros((4, 2)), {"n_components": 2, "precisions_init": -np.stack([np.eye(2)] * 2)}, "precisions_init"),
        (np.zeros((4, 2)), {"tol": -1.0}, "tol"),
        (np.zeros((4, 2)), {"dtype": "float16"}, "dtype"),
        (np.zeros((4, 2)), {"prior": {"banana": 1}}, "prior"),
        (np.zeros((4, 2)), {"progress": "sometimes"}, "progress"),
    ],
)
def test_bad_input_raises_clear_error(X, kwargs, match):
    with pytest.raises(ValueError, match=match):
        GaussianMixture(**kwargs).fit(X)


def test_predict_before_fit_and_wrong_features(blobs3):
    with pytest.raises(ValueError, match="not fitted"):
        GaussianMixture().predict(blobs3)
    gm = GaussianMixture(2, random_state=0).fit(blobs3)
    with pytest.raises(ValueError, match="features"):
        gm.predict(blobs3[:, :2])


def test_dataframe_input_keeps_feature_names(faithful):
    import pandas as pd

    df = pd.DataFrame(faithful, columns=["eruptions", "waiting"])
    gm = GaussianMixture(2, random_state=0).fit(df)
    assert list(gm.feature_names_in_) == ["eruptions", "waiting"]
    np.testing.assert_allclose(gm.score(df), gm.score(faithful))


def test_get_set_params_round_trip():
    gm = GaussianMixture(3, covariance_type="diag")
    params = gm.get_params()
    assert params["n_components"] == 3 and params["covariance_type"] == "diag"
    clone = GaussianMixture(**params)
    assert clone.get_params() == params
    gm.set_params(n_components=4)
    assert gm.n_components == 4
    with pytest.raises(ValueError, match="Invalid parameter"):
        gm.set_params(banana=1)
