"""Shipped data sets and the Gaussian-mixture simulator."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from lateo.datasets import load_nile, load_old_faithful, make_gaussian_mixture

N_LARGE = 200_000
Z = 5.0  # tolerance in Monte Carlo standard errors


# --------------------------------------------------------------------------- Old Faithful


def test_old_faithful_frame():
    df = load_old_faithful()
    assert isinstance(df, pd.DataFrame)
    assert df.shape == (272, 2)
    assert list(df.columns) == ["eruptions", "waiting"]
    assert df["eruptions"].dtype == np.float64
    assert np.issubdtype(df["waiting"].dtype, np.integer)
    assert df.iloc[0].tolist() == [3.6, 79.0]
    # Published summary statistics of R's datasets::faithful.
    assert df["eruptions"].mean() == pytest.approx(3.487783, abs=1e-6)
    assert df["waiting"].mean() == pytest.approx(70.897059, abs=1e-6)
    assert not df.isna().any().any()


def test_old_faithful_array():
    X = load_old_faithful(as_frame=False)
    assert isinstance(X, np.ndarray)
    assert X.shape == (272, 2) and X.dtype == np.float64
    np.testing.assert_array_equal(X, load_old_faithful().to_numpy(dtype=float))


# --------------------------------------------------------------------------- Nile


def test_nile_frame():
    df = load_nile()
    assert isinstance(df, pd.DataFrame)
    assert df.shape == (100, 2)
    assert list(df.columns) == ["year", "flow"]
    assert np.issubdtype(df["year"].dtype, np.integer) and df["flow"].dtype == np.float64
    np.testing.assert_array_equal(df["year"], np.arange(1871, 1971))
    assert df.iloc[0].tolist() == [1871, 1120.0] and df.iloc[-1].tolist() == [1970, 740.0]
    # Published summaries of R's datasets::Nile, and the level shift after 1898.
    assert df["flow"].mean() == pytest.approx(919.35)
    assert (df["flow"].min(), df["flow"].max()) == (456.0, 1370.0)
    before, after = df.loc[df["year"] <= 1898, "flow"], df.loc[df["year"] > 1898, "flow"]
    assert before.mean() == pytest.approx(1097.75) and after.mean() == pytest.approx(849.972222, abs=1e-6)


def test_nile_array():
    X = load_nile(as_frame=False)
    assert isinstance(X, np.ndarray)
    assert X.shape == (100, 1) and X.dtype == np.float64
    np.testing.assert_array_equal(X[:, 0], load_nile()["flow"])


# --------------------------------------------------------------------------- simulator: basics


def test_shapes_dtypes_and_labels():
    X, y = make_gaussian_mixture(500, n_components=4, n_features=3, random_state=0)
    assert X.shape == (500, 3) and X.dtype == np.float64
    assert y.shape == (500,) and y.dtype == np.int64
    assert set(np.unique(y)) <= set(range(4))


def test_same_seed_same_data_and_different_seed_different_data():
    a = make_gaussian_mixture(100, random_state=7)
    b = make_gaussian_mixture(100, random_state=7)
    c = make_gaussian_mixture(100, random_state=8)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


def test_accepts_numpy_generators():
    X1, _ = make_gaussian_mixture(20, random_state=np.random.default_rng(3))
    X2, _ = make_gaussian_mixture(20, random_state=np.random.RandomState(3))
    assert X1.shape == X2.shape == (20, 2)


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
def test_random_parameters_are_valid_and_separated(covariance_type):
    separation = 4.0
    _, _, p = make_gaussian_mixture(
        10, n_components=5, n_features=3, covariance_type=covariance_type, separation=separation,
        random_state=1, return_params=True,
    )
    assert p["covariance_type"] == covariance_type
    assert p["weights"].shape == (5,) and np.isclose(p["weights"].sum(), 1.0)
    assert p["means"].shape == (5, 3)
    expected = {"full": (5, 3, 3), "tied": (3, 3), "diag": (5, 3), "spherical": (5,)}[covariance_type]
    assert p["covariances"].shape == expected
    largest_sd = max(np.sqrt(np.linalg.eigvalsh(c).max()) for c in _full(p["covariances"], covariance_type, 5, 3))
    for i, j in itertools.combinations(range(5), 2):
        assert np.linalg.norm(p["means"][i] - p["means"][j]) >= separation * largest_sd - 1e-12


def test_given_parameters_fix_the_shape():
    means = np.array([[0.0, 0.0, 0.0], [5.0, 5.0, 5.0]])
    X, y = make_gaussian_mixture(50, means=means, n_components=7, n_features=9, random_state=0)
    assert X.shape == (50, 3) and y.max() <= 1


def test_inputs_are_not_mutated():
    weights = np.array([0.25, 0.75])
    means = np.array([[0.0, 0.0], [4.0, 4.0]])
    covariances = np.array([[1.0, 2.0], [0.5, 0.5]])
    copies = [a.copy() for a in (weights, means, covariances)]
    make_gaussian_mixture(30, weights=weights, means=means, covariances=covariances, covariance_type="diag",
                          random_state=0)
    for before, after in zip(copies, (weights, means, covariances)):
        np.testing.assert_array_equal(before, after)


# --------------------------------------------------------------------------- simulator: recovery


def _full(covariances, covariance_type, k, d):
    c = np.asarray(covariances, dtype=float)
    return {
        "full": lambda: c,
        "tied": lambda: np.broadcast_to(c, (k, d, d)),
        "diag": lambda: c[:, :, None] * np.eye(d),
        "spherical": lambda: c[:, None, None] * np.eye(d),
    }[covariance_type]()


def _check_recovery(X, y, weights, means, covariances):
    """Empirical weights, means and covariances within Z standard errors of the truth."""
    n, d = X.shape
    counts = np.bincount(y, minlength=len(weights))
    se_w = np.sqrt(weights * (1 - weights) / n)
    assert np.all(np.abs(counts / n - weights) <= Z * se_w)
    for k, (mu, sigma) in enumerate(zip(means, covariances)):
        Xk = X[y == k]
        nk = Xk.shape[0]
        se_mu = np.sqrt(np.diag(sigma) / nk)
        assert np.all(np.abs(Xk.mean(axis=0) - mu) <= Z * se_mu)
        # Var of a sample covariance entry (Gaussian): (S_ij^2 + S_ii S_jj) / n.
        se_cov = np.sqrt((sigma**2 + np.outer(np.diag(sigma), np.diag(sigma))) / nk)
        assert np.all(np.abs(np.cov(Xk, rowvar=False) - sigma) <= Z * se_cov)


@pytest.mark.parametrize(
    "covariance_type, covariances",
    [
        ("full", [[[1.0, 0.6], [0.6, 2.0]], [[0.5, -0.2], [-0.2, 0.3]], [[2.0, 0.0], [0.0, 0.1]]]),
        ("tied", [[1.0, 0.3], [0.3, 0.5]]),
        ("diag", [[1.0, 0.2], [0.3, 2.0], [0.5, 0.5]]),
        ("spherical", [1.0, 0.25, 2.0]),
    ],
)
def test_simulator_recovers_given_parameters(covariance_type, covariances):
    weights = np.array([0.5, 0.3, 0.2])
    means = np.array([[0.0, 0.0], [3.0, -2.0], [-4.0, 5.0]])
    X, y = make_gaussian_mixture(
        N_LARGE, weights=weights, means=means, covariances=covariances, covariance_type=covariance_type,
        random_state=123,
    )
    _check_recovery(X, y, weights, means, _full(covariances, covariance_type, 3, 2))


def test_simulator_recovers_its_random_parameters():
    X, y, p = make_gaussian_mixture(N_LARGE, n_components=3, n_features=3, random_state=5, return_params=True)
    _check_recovery(X, y, p["weights"], p["means"], p["covariances"])


# --------------------------------------------------------------------------- simulator: errors


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"n_samples": 0}, "n_samples must be an integer >= 1"),
        ({"n_samples": 2.5}, "n_samples must be an integer >= 1"),
        ({"n_components": 0}, "n_components must be an integer >= 1"),
        ({"covariance_type": "banana"}, "covariance_type must be one of"),
        ({"separation": 0}, "separation must be a number > 0"),
        ({"weights": [0.5, 0.6]}, "weights must sum to 1"),
        ({"weights": [1.5, -0.5]}, "weights must be non-negative"),
        ({"weights": [[0.5, 0.5]]}, "weights must be 1-D"),
        ({"means": [0.0, 1.0]}, "means must be 2-D"),
        ({"means": [[0.0, np.nan]]}, "means contains NaN"),
        ({"weights": [0.5, 0.5], "means": [[0.0], [1.0], [2.0]]}, "disagree on n_components"),
        ({"covariances": [[1.0, 2.0], [2.0, 1.0]], "covariance_type": "tied"}, "not positive definite"),
        ({"covariances": [[1.0, 0.5], [0.0, 1.0]], "covariance_type": "tied"}, "not symmetric"),
        ({"covariances": [1.0, -1.0], "covariance_type": "spherical"}, "must be > 0"),
        ({"covariances": np.eye(2), "covariance_type": "full"}, r"must have shape \('n_components'"),
        ({"means": [[0.0, 0.0]], "covariances": np.eye(3), "covariance_type": "tied"}, "disagree on n_features"),
        ({"random_state": "seed"}, "random_state must be"),
    ],
)
def test_simulator_errors(kwargs, match):
    kwargs = {"n_samples": 10, **kwargs}
    n = kwargs.pop("n_samples")
    with pytest.raises(ValueError, match=match):
        make_gaussian_mixture(n, **kwargs)


def test_challenger_orings_reproduce_the_published_glm():
    """23 flights, 7 with distress; the ML logistic fit is R's glm: 15.0429, -0.23216."""
    from scipy.optimize import minimize

    from lateo.datasets import load_challenger_orings

    frame = load_challenger_orings()
    assert frame.shape == (23, 3) and int(frame["distress"].sum()) == 7
    X, y = load_challenger_orings(as_frame=False)
    t = X[:, 0]

    def nll(p):
        z = p[0] + p[1] * t
        return np.sum(np.logaddexp(0.0, z) - y * z)

    fit = minimize(nll, [0.0, 0.0], method="BFGS", options={"gtol": 1e-10})
    np.testing.assert_allclose(fit.x, [15.0429, -0.23216], atol=1e-4)
