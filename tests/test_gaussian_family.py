"""The Gaussian family: log-densities against scipy, statistics and M-step by hand."""

import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from lateo.families import conjugate, gaussian

D, K = 3, 2


def _random_params(covariance_type, rng):
    means = rng.normal(size=(K, D))
    A = rng.normal(size=(K, D, D))
    full = A @ np.swapaxes(A, 1, 2) + 0.5 * np.eye(D)
    cov = {
        "full": full,
        "tied": full[0],
        "diag": rng.uniform(0.3, 2.0, size=(K, D)),
        "spherical": rng.uniform(0.3, 2.0, size=K),
    }[covariance_type]
    return means, cov


def _dense(cov, covariance_type, k):
    if covariance_type == "full":
        return cov[k]
    if covariance_type == "tied":
        return cov
    if covariance_type == "diag":
        return np.diag(cov[k])
    return cov[k] * np.eye(D)


@pytest.mark.parametrize("covariance_type", gaussian.COVARIANCE_TYPES)
def test_log_prob_matches_scipy(covariance_type):
    rng = np.random.default_rng(0)
    means, cov = _random_params(covariance_type, rng)
    X = rng.normal(size=(50, D)) * 2
    prec_chol = gaussian.precisions_cholesky(jnp.asarray(cov), covariance_type)
    got = np.asarray(gaussian.log_prob(jnp.asarray(X), gaussian.GaussianParams(jnp.asarray(means), prec_chol), covariance_type))
    for k in range(K):
        want = stats.multivariate_normal(means[k], _dense(cov, covariance_type, k)).logpdf(X)
        np.testing.assert_allclose(got[:, k], want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("covariance_type", gaussian.COVARIANCE_TYPES)
def test_precisions_cholesky_round_trip(covariance_type):
    rng = np.random.default_rng(1)
    _, cov = _random_params(covariance_type, rng)
    pc = gaussian.precisions_cholesky(jnp.asarray(cov), covariance_type)
    back = gaussian.covariances_from_precisions_cholesky(pc, covariance_type)
    np.testing.assert_allclose(np.asarray(back), cov, rtol=1e-12)


@pytest.mark.parametrize("covariance_type", gaussian.COVARIANCE_TYPES)
def test_ml_m_step_equals_weighted_moments(covariance_type):
    """Sums -> (mu, Sigma) equals the two-pass weighted mean and scatter."""
    rng = np.random.default_rng(2)
    X = rng.normal(size=(40, D))
    resp = rng.dirichlet(np.ones(K), size=40)
    feats = gaussian.features(jnp.asarray(X), covariance_type)
    st = gaussian.weighted_stats(feats, jnp.asarray(resp), D)
    means, cov, _ = gaussian.m_step(st, covariance_type, 0.0)
    nk = resp.sum(0)
    mu = resp.T @ X / nk[:, None]
    np.testing.assert_allclose(np.asarray(means), mu, rtol=1e-12)
    scatter = np.stack([(resp[:, k, None] * (X - mu[k])).T @ (X - mu[k]) for k in range(K)])
    want = {
        "full": scatter / nk[:, None, None],
        "tied": scatter.sum(0) / nk.sum(),
        "diag": np.diagonal(scatter, axis1=1, axis2=2) / nk[:, None],
        "spherical": np.diagonal(scatter, axis1=1, axis2=2).mean(1) / nk,
    }[covariance_type]
    np.testing.assert_allclose(np.asarray(cov), want, rtol=1e-10)


def test_collapsed_covariance_is_regularised_not_nan():
    """A singular covariance with reg_covar=0 falls back to its diagonal, never NaN."""
    singular = jnp.asarray(np.stack([np.ones((2, 2)), np.eye(2)]))  # first one rank one
    repaired = np.asarray(gaussian.repair_covariances(singular, "full"))
    np.testing.assert_array_equal(repaired[1], np.eye(2))  # positive definite: unchanged
    assert repaired[0, 0, 1] == 0 and repaired[0, 0, 0] > 1  # diagonal fallback
    pc = gaussian.precisions_cholesky(jnp.asarray(repaired), "full")
    assert np.all(np.isfinite(np.asarray(pc)))
    zero = gaussian.repair_covariances(jnp.zeros((1, 2)), "diag")
    assert np.all(np.isfinite(np.asarray(gaussian.precisions_cholesky(zero, "diag"))))


def test_vech_round_trip():
    rng = np.random.default_rng(3)
    A = rng.normal(size=(4, 4))
    S = A + A.T
    rows, cols = np.triu_indices(4)
    np.testing.assert_allclose(np.asarray(gaussian.unvech(jnp.asarray(S[rows, cols]), 4)), S)
    x = rng.normal(size=4)
    quad = float(jnp.dot(gaussian.second_moment_features(jnp.asarray(x), "full"), gaussian.vech_coefficients(jnp.asarray(S), "full")))
    np.testing.assert_allclose(quad, x @ S @ x, rtol=1e-12)


def test_log_prior_matches_scipy_full():
    rng = np.random.default_rng(4)
    means, cov = _random_params("full", rng)
    weights = np.array([0.3, 0.7])
    psi = np.eye(D) * 0.7 + 0.1
    niw = conjugate.NormalInverseWishart(jnp.asarray(np.ones(D)), jnp.asarray(0.5), jnp.asarray(D + 2.0), jnp.asarray(psi))
    prior = conjugate.MixturePrior(jnp.asarray([2.0, 3.0]), niw)
    pc = gaussian.precisions_cholesky(jnp.asarray(cov), "full")
    got = float(conjugate.log_prior(jnp.asarray(weights), jnp.asarray(means), pc, prior, "full"))
    want = stats.dirichlet([2.0, 3.0]).logpdf(weights)
    for k in range(K):
        want += stats.multivariate_normal(np.ones(D), cov[k] / 0.5).logpdf(means[k])
        want += stats.invwishart(df=D + 2.0, scale=psi).logpdf(cov[k])
    np.testing.assert_allclose(got, want, rtol=1e-10)


def test_log_prior_matches_scipy_diag_and_spherical():
    rng = np.random.default_rng(5)
    weights = np.array([0.5, 0.5])
    alpha = jnp.asarray([1.0, 1.0])
    for covariance_type in ("diag", "spherical"):
        means, cov = _random_params(covariance_type, rng)
        psi = np.full(D, 0.8) if covariance_type == "diag" else 0.8
        niw = conjugate.NormalInverseWishart(jnp.zeros(D), jnp.asarray(2.0), jnp.asarray(3.0), jnp.asarray(psi))
        prior = conjugate.MixturePrior(alpha, niw)
        pc = gaussian.precisions_cholesky(jnp.asarray(cov), covariance_type)
        got = float(conjugate.log_prior(jnp.asarray(weights), jnp.asarray(means), pc, prior, covariance_type))
        want = stats.dirichlet([1.0, 1.0]).logpdf(weights)
        for k in range(K):
            var = cov[k] * np.ones(D)
            want += stats.norm(0, np.sqrt(var / 2.0)).logpdf(means[k]).sum()
            if covariance_type == "diag":
                want += stats.invgamma(1.5, scale=0.4).logpdf(var).sum()
            else:
                want += stats.invgamma(1.5 * D, scale=0.4 * D).logpdf(cov[k])
        np.testing.assert_allclose(got, want, rtol=1e-10)


# ---------------------------------------------------------------- properties
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), split=st.integers(1, 29), scale=st.floats(1e-3, 1e3))
def test_statistics_of_a_partition_add_up(seed, split, scale):
    """Sums, never means: the statistics of any split of the rows add up."""
    rng = np.random.default_rng(seed)
    X = jnp.asarray(rng.normal(size=(30, D)) * scale)
    resp = jnp.asarray(rng.dirichlet(np.ones(K), size=30))
    for covariance_type in ("full", "diag"):
        feats = gaussian.features(X, covariance_type)
        whole = gaussian.weighted_stats(feats, resp, D)
        a = gaussian.weighted_stats(feats[:split], resp[:split], D)
        b = gaussian.weighted_stats(feats[split:], resp[split:], D)
        for total, left, right in zip(whole, a, b):
            np.testing.assert_allclose(np.asarray(left + right), np.asarray(total), rtol=1e-10, atol=1e-12 * scale**2)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), log_scale=st.floats(-3, 3))
def test_log_prob_matches_scipy_for_random_covariances(seed, log_scale):
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(K, D, D))
    cov = (A @ np.swapaxes(A, 1, 2) + 0.1 * np.eye(D)) * 10.0**log_scale
    means = rng.normal(size=(K, D)) * 10.0 ** (log_scale / 2)
    X = means[0] + rng.normal(size=(20, D)) * 10.0 ** (log_scale / 2)
    pc = gaussian.precisions_cholesky(jnp.asarray(cov), "full")
    got = np.asarray(gaussian.log_prob(jnp.asarray(X), gaussian.GaussianParams(jnp.asarray(means), pc), "full"))
    for k in range(K):
        want = stats.multivariate_normal(means[k], cov[k]).logpdf(X)
        np.testing.assert_allclose(got[:, k], want, rtol=1e-9, atol=1e-9)
