"""PPCA: EM against the closed form, scikit-learn's probabilistic PCA score,
missing values, the Gaussian it defines, bad input, scikit-learn's estimator checks."""

import warnings

import numpy as np
import pytest
from scipy.linalg import subspace_angles
from scipy.stats import multivariate_normal
from sklearn.decomposition import PCA
from sklearn.utils.estimator_checks import parametrize_with_checks

from lateo.models.ppca import PPCA

N, D, Q = 500, 8, 2


def _data(n=N, d=D, q=Q, noise=0.5, seed=0):
    """``x = W z + mu + noise * eps`` with loadings of scales 3 and 2 (well-separated spectrum)."""
    rng = np.random.default_rng(seed)
    W = rng.normal(size=(d, q)) * np.array([3.0, 2.0, 1.5][:q])
    X = rng.normal(size=(n, q)) @ W.T + noise * rng.normal(size=(n, d)) + 3.0
    return X, W


@pytest.fixture(scope="module")
def data():
    return _data()[0]


@pytest.fixture(scope="module")
def closed(data):
    return PPCA(Q, method="closed_form").fit(data)


def _projector(model):
    return model.components_.T @ model.components_


def test_em_converges_to_closed_form(data, closed):
    """EM from a random W reaches the Tipping-Bishop closed form: sigma^2 and the subspace to 1e-6."""
    em = PPCA(Q, method="em", tol=1e-13, max_iter=5000, random_state=0).fit(data)
    assert em.converged_
    assert abs(em.noise_variance_ - closed.noise_variance_) < 1e-6
    assert np.abs(_projector(em) - _projector(closed)).max() < 1e-6
    np.testing.assert_allclose(em.explained_variance_, closed.explained_variance_, rtol=1e-6)
    np.testing.assert_allclose(em.mean_, closed.mean_, atol=1e-8)
    # EM never decreases the likelihood (seed 002), up to rounding of a mean of 500 terms
    assert np.all(np.diff(em.lower_bounds_) > -1e-12)
    assert em.lower_bound_ == pytest.approx(closed.lower_bound_, abs=1e-9)


def test_closed_form_is_the_ml_eigen_solution(data, closed):
    lam = np.linalg.eigvalsh(np.cov(data, rowvar=False, ddof=0))[::-1]
    assert closed.noise_variance_ == pytest.approx(lam[Q:].mean(), rel=1e-12)
    np.testing.assert_allclose(closed.explained_variance_, lam[:Q], rtol=1e-12)
    np.testing.assert_allclose(closed.components_ @ closed.components_.T, np.eye(Q), atol=1e-12)
    np.testing.assert_allclose(closed.mean_, data.mean(axis=0), rtol=1e-12)


def test_matches_sklearn_probabilistic_pca_after_ddof(data, closed):
    """scikit-learn's PCA divides by n - 1: explained_variance_ and noise_variance_ are lateo's
    maximum-likelihood values times n / (n - 1), and PCA.score is the PPCA log-likelihood of
    C * n / (n - 1). lateo's own (ML) score is the larger one."""
    n = data.shape[0]
    c = n / (n - 1)
    sk = PCA(Q, svd_solver="full").fit(data)
    np.testing.assert_allclose(sk.explained_variance_, closed.explained_variance_ * c, rtol=1e-10)
    assert sk.noise_variance_ == pytest.approx(closed.noise_variance_ * c, rel=1e-10)
    np.testing.assert_allclose(sk.get_covariance(), closed.get_covariance() * c, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(np.abs(sk.components_ @ closed.components_.T), np.eye(Q), atol=1e-10)
    scaled = PPCA(Q).fit(data)
    scaled.loadings_ = scaled.loadings_ * np.sqrt(c)
    scaled.noise_variance_ = scaled.noise_variance_ * c
    np.testing.assert_allclose(scaled.score_samples(data), sk.score_samples(data), rtol=1e-10)
    assert scaled.score(data) == pytest.approx(sk.score(data), rel=1e-12)
    assert closed.score(data) > sk.score(data)


def test_score_samples_is_the_marginal_gaussian(data, closed):
    """Complete rows: log N(x | mu, W W^T + sigma^2 I); rows with NaN: the same on the observed coordinates."""
    cov = closed.get_covariance()
    np.testing.assert_allclose(closed.score_samples(data[:50]),
                               multivariate_normal(closed.mean_, cov).logpdf(data[:50]), rtol=1e-10)
    X = data[:20].copy()
    rng = np.random.default_rng(3)
    X[rng.random(X.shape) < 0.3] = np.nan
    X[0] = np.nan  # nothing observed: log-likelihood 0
    expect = []
    for row in X:
        o = ~np.isnan(row)
        expect.append(multivariate_normal(closed.mean_[o], cov[np.ix_(o, o)]).logpdf(row[o]) if o.any() else 0.0)
    np.testing.assert_allclose(closed.score_samples(X), expect, rtol=1e-10, atol=1e-12)


def test_transform_inverse_transform_sample(data, closed):
    W, s2 = closed.loadings_, closed.noise_variance_
    M = W.T @ W + s2 * np.eye(Q)
    expect = np.linalg.solve(M, W.T @ (data - closed.mean_).T).T
    np.testing.assert_allclose(closed.transform(data), expect, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(closed.inverse_transform(expect), expect @ W.T + closed.mean_, rtol=1e-12)
    assert closed.fit_transform(data).shape == (N, Q)
    draws = closed.sample(20000, random_state=1)
    assert draws.shape == (20000, D)
    np.testing.assert_array_equal(draws, closed.sample(20000, random_state=1))
    # sample covariance within 5 Monte Carlo standard errors: var(S_jk) = (C_jk^2 + C_jj C_kk) / n
    cov = closed.get_covariance()
    se = np.sqrt((cov**2 + np.outer(np.diag(cov), np.diag(cov))) / 20000)
    assert np.all(np.abs(np.cov(draws, rowvar=False) - cov) < 5 * se)


def test_missing_values_recover_the_subspace():
    """20% missing at random (n = 2000): the EM subspace is close to the truth.

    Tolerance from the sampling error of a PCA subspace: component i of the
    estimate leans towards noise direction j with variance
    lambda_i lambda_j / (n (lambda_i - lambda_j)^2) (Anderson 1963); summed over
    the D - q noise directions, with n the effective rows 0.8 n, times 4.
    """
    n, noise = 2000, 0.5
    X, W = _data(n=n, d=10, q=Q, noise=noise, seed=5)
    rng = np.random.default_rng(6)
    Xm = X.copy()
    Xm[rng.random(X.shape) < 0.2] = np.nan
    model = PPCA(Q, tol=1e-9, max_iter=3000, random_state=0).fit(Xm)
    assert model.n_iter_ > 1  # method="auto" chose EM because of the NaN
    lam_signal = np.linalg.eigvalsh(W.T @ W) + noise**2
    s2 = noise**2
    se = np.sqrt((10 - Q) * lam_signal.min() * s2 / (0.8 * n * (lam_signal.min() - s2) ** 2))
    angles = subspace_angles(model.components_.T, W)
    assert angles.max() < 4 * se, (angles, se)
    assert model.noise_variance_ == pytest.approx(s2, rel=0.1)  # sd of the estimate ~ sqrt(2 / n_obs) ~ 1%
    full = PPCA(Q).fit(X)
    assert subspace_angles(model.components_.T, full.components_.T).max() < 4 * se


def test_em_without_missing_values_on_request(data, closed):
    model = PPCA(Q, method="em", tol=1e-10, max_iter=3000, random_state=1).fit(data)
    assert np.abs(_projector(model) - _projector(closed)).max() < 1e-4


@pytest.mark.parametrize(
    "kwargs, X_fn, match",
    [
        ({"method": "closed_form"}, lambda X: np.where(np.eye(*X.shape, dtype=bool), np.nan, X), "closed_form"),
        ({"n_components": D}, lambda X: X, "n_components"),
        ({"n_components": 0}, lambda X: X, "n_components"),
        ({}, lambda X: X[:2], "n_samples"),
        ({}, lambda X: np.where(np.eye(*X.shape, dtype=bool), np.inf, X), "infinite"),
        ({}, lambda X: X[:, 0], "2-D"),
        ({"method": "svd"}, lambda X: X, "method"),
        ({"em_algorithm": "minibatch"}, lambda X: X, "algorithm"),
        ({"batch_size": 0}, lambda X: X, "batch_size"),
        ({"method": "em"}, lambda X: np.column_stack([X, np.full(len(X), np.nan)]), "no observed"),
    ],
)
def test_bad_input(data, kwargs, X_fn, match):
    params = {"n_components": Q, **kwargs}
    with pytest.raises(ValueError, match=match):
        PPCA(**params).fit(X_fn(data))


def test_bad_input_after_fit(closed, data):
    with pytest.raises(ValueError, match="features"):
        closed.score(data[:, :3])
    with pytest.raises(ValueError, match="Z"):
        closed.inverse_transform(np.ones((3, Q + 1)))
    with pytest.raises(ValueError, match="n_samples"):
        closed.sample(0)
    with pytest.raises(ValueError, match="closed_form"):
        PPCA(Q, method="closed_form").fit(data, algorithm="online")


def test_input_not_mutated(data):
    X = data.copy()
    X[::7, 1] = np.nan
    before = X.copy()
    model = PPCA(Q, tol=1e-6, random_state=0).fit(X)
    model.score_samples(X)
    model.transform(X)
    np.testing.assert_array_equal(X, before)


warnings.filterwarnings("ignore", message=".*does not inherit from `sklearn.base.BaseEstimator`.*")


@parametrize_with_checks([PPCA(progress=False)])
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)
