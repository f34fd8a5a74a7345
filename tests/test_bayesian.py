"""Conjugate posteriors, MAP versus ML, and Jeffreys priors from Fisher information."""

import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate

from lateo.families import bayesian


def test_beta_binomial_three_heads():
    """Seed 004's coin: three heads in three throws; ML says w = 1, MAP does not."""
    post = bayesian.beta_binomial_posterior(3, 3, a=2.0, b=2.0)
    assert post.ml == 1.0
    assert (post.a, post.b) == (5.0, 2.0)
    np.testing.assert_allclose(post.map, 4.0 / 5.0)
    np.testing.assert_allclose(post.mean, 5.0 / 7.0)
    flat = bayesian.beta_binomial_posterior(3, 7, a=1.0, b=1.0)
    np.testing.assert_allclose(flat.map, flat.ml)  # a flat prior: MAP = ML


def test_dirichlet_categorical():
    post = bayesian.dirichlet_categorical_posterior([3, 0, 7], alpha=2.0)
    np.testing.assert_allclose(post.alpha, [5, 2, 9])
    np.testing.assert_allclose(post.map, np.array([4, 1, 8]) / 13)
    np.testing.assert_allclose(post.ml, [0.3, 0.0, 0.7])
    np.testing.assert_allclose(bayesian.dirichlet_categorical_posterior([3, 1, 6], 1.0).map, [0.3, 0.1, 0.6])


def test_normal_gamma_posterior_matches_numerical_integration():
    rng = np.random.default_rng(0)
    x = rng.normal(1.5, 2.0, size=12)
    mu0, kappa, a, b = 0.5, 2.0, 3.0, 4.0
    post = bayesian.normal_gamma_posterior(x, mu0, kappa, a, b)

    def log_joint(mu, tau):
        n, xbar, scatter = x.size, x.mean(), np.sum((x - x.mean()) ** 2)
        loglik = 0.5 * n * np.log(tau) - 0.5 * tau * (scatter + n * (xbar - mu) ** 2)
        return (a - 1) * np.log(tau) - b * tau + 0.5 * np.log(tau) - 0.5 * kappa * tau * (mu - mu0) ** 2 + loglik

    # posterior means of mu and tau on a fine grid (Simpson's rule), against the closed form
    mu = np.linspace(-4.0, 7.0, 1201)
    tau = np.linspace(1e-6, 4.0, 2001)
    M, T = np.meshgrid(mu, tau, indexing="ij")
    logp = log_joint(M, T)
    w = np.exp(logp - logp.max())

    def integral(f):
        return integrate.simpson(integrate.simpson(f * w, x=tau, axis=1), x=mu)

    z = integral(1.0)
    np.testing.assert_allclose(integral(M) / z, post.mu, rtol=1e-6)
    np.testing.assert_allclose(integral(T) / z, post.a / post.b, rtol=1e-6)
    # the joint mode maximises the posterior density
    mode = np.array(post.map)
    best = log_joint(*mode)
    for d in ([1e-3, 0], [-1e-3, 0], [0, 1e-4], [0, -1e-4]):
        assert log_joint(*(mode + d)) < best


def test_normal_gamma_ml_limit():
    x = np.array([1.0, 2.0, 4.0])
    post = bayesian.normal_gamma_posterior(x, kappa=1e-9, a=0.5 + 1e-12, b=1e-12)
    np.testing.assert_allclose(post.map, post.ml, rtol=1e-6)
    np.testing.assert_allclose(post.ml, (7 / 3, 3 / np.sum((x - 7 / 3) ** 2)))


def test_jeffreys_gaussian_is_the_seeds_result():
    """I(mu, sigma) = diag(1/sigma^2, 2/sigma^2), so p(mu, sigma) ∝ 1/sigma^2 (seed 004)."""
    for sigma in (0.3, 1.0, 2.5):
        info = bayesian.fisher_information(bayesian.gaussian_natural_params, bayesian.gaussian_log_partition,
                                           jnp.asarray([0.7, sigma]))
        np.testing.assert_allclose(info, np.diag([1 / sigma**2, 2 / sigma**2]), rtol=1e-12, atol=1e-12)
        log_p = bayesian.jeffreys_log_prior(bayesian.gaussian_natural_params, bayesian.gaussian_log_partition)
        np.testing.assert_allclose(log_p(jnp.asarray([0.7, sigma])), 0.5 * np.log(2.0) - 2 * np.log(sigma), rtol=1e-12)


def test_jeffreys_logistic_regression_is_half_log_det_xtwx():
    rng = np.random.default_rng(1)
    X = np.column_stack([np.ones(15), rng.normal(size=15)])
    beta = np.array([0.3, -1.2])
    log_p = bayesian.jeffreys_log_prior(lambda b: jnp.asarray(X) @ b, bayesian.bernoulli_log_partition)
    p = 1 / (1 + np.exp(-X @ beta))
    want = 0.5 * np.linalg.slogdet(X.T @ (X * (p * (1 - p))[:, None]))[1]
    np.testing.assert_allclose(log_p(jnp.asarray(beta)), want, rtol=1e-12)


def test_jeffreys_bernoulli_is_arcsine():
    """One Bernoulli in the mean parameter w: p(w) ∝ 1 / sqrt(w (1 - w))."""
    log_p = bayesian.jeffreys_log_prior(lambda w: jnp.log(w / (1 - w)), bayesian.bernoulli_log_partition)
    for w in (0.1, 0.5, 0.8):
        np.testing.assert_allclose(log_p(jnp.asarray([w])), -0.5 * np.log(w * (1 - w)), rtol=1e-12)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: bayesian.beta_binomial_posterior(4, 3), "successes"),
        (lambda: bayesian.beta_binomial_posterior(1, 3, a=0.0), "a and b"),
        (lambda: bayesian.dirichlet_categorical_posterior([[1, 2]]), "counts"),
        (lambda: bayesian.dirichlet_categorical_posterior([0, 2], alpha=0.5), "MAP"),
        (lambda: bayesian.normal_gamma_posterior([]), "observation"),
        (lambda: bayesian.normal_gamma_posterior([1.0, np.nan]), "finite"),
    ],
)
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()
