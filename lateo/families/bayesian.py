"""Conjugate posteriors, MAP versus maximum likelihood, and Jeffreys priors.

Seed 004 (Bayesian learning): the ML estimate ``argmax_w p(x | w)`` ignores
prior knowledge (three heads in three throws give ``w = 1``); the MAP
estimate ``argmax_w p(x | w) p(w)`` does not. With a *conjugate* prior the
posterior stays in the prior's family and everything is closed form:

* Beta-Binomial: ``w ~ Beta(a, b)``, ``s`` successes in ``n`` trials ->
  ``Beta(a + s, b + n - s)``; MAP ``(a + s - 1) / (a + b + n - 2)``, ML ``s / n``;
* Dirichlet-Categorical: ``w ~ Dir(alpha)``, counts ``c`` -> ``Dir(alpha + c)``;
  MAP ``(alpha + c - 1) / (sum alpha + N - K)``, ML ``c / N``;
* Normal-Gamma: ``tau ~ Gamma(a, b)`` (precision), ``mu | tau ~ N(mu0, 1 /
  (kappa tau))`` -> ``kappa_n = kappa + n``, ``mu_n = (kappa mu0 + n xbar) /
  kappa_n``, ``a_n = a + n / 2``, ``b_n = b + S / 2 + kappa n (xbar - mu0)^2 /
  (2 kappa_n)`` with ``S = sum (x - xbar)^2``; joint mode ``(mu_n, (a_n - 1/2)
  / b_n)``, ML ``(xbar, n / S)`` (Bishop 2006, section 2.3.6; Murphy 2007,
  "Conjugate Bayesian analysis of the Gaussian distribution").

Jeffreys' prior ``p(theta) ∝ sqrt(det I(theta))`` is invariant under
reparametrisation (seed 004). For an exponential family
``log p(x | theta) = <T(x), eta(theta)> - A(eta(theta)) + h(x)`` the Fisher
information is exact by automatic differentiation:
``I(theta) = J^T (∇² A)(eta(theta)) J`` with ``J = ∂eta / ∂theta``. For the
Gaussian in ``(mu, sigma)`` this gives the seed's ``diag(1/sigma^2,
2/sigma^2)`` and ``p ∝ 1/sigma^2``; for logistic regression (``eta = X
beta``, ``A = sum log(1 + e^eta)``) it gives ``X^T W X``.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


class BetaPosterior(NamedTuple):
    """``Beta(a, b)`` with its mean, mode (MAP) and the ML estimate of the data."""

    a: float
    b: float
    mean: float
    map: float
    ml: float


def beta_binomial_posterior(successes, trials, a=1.0, b=1.0) -> BetaPosterior:
    """Posterior of a success probability under a ``Beta(a, b)`` prior.

    The MAP exists (is interior) when ``a + s > 1`` and ``b + n - s > 1``;
    otherwise the mode is at the boundary (0 or 1), which is returned.
    """
    s, n = float(successes), float(trials)
    if n < 0 or s < 0 or s > n:
        raise ValueError(f"need 0 <= successes <= trials, got successes={successes}, trials={trials}.")
    if a <= 0 or b <= 0:
        raise ValueError(f"a and b must be > 0, got a={a}, b={b}.")
    pa, pb = a + s, b + n - s
    if pa > 1 and pb > 1:
        mode = (pa - 1) / (pa + pb - 2)
    else:
        mode = 1.0 if pa > pb else 0.0
    ml = s / n if n > 0 else float("nan")
    return BetaPosterior(pa, pb, pa / (pa + pb), mode, ml)


class DirichletPosterior(NamedTuple):
    """``Dir(alpha)`` with its mean, mode (MAP) and the ML estimate of the counts."""

    alpha: np.ndarray
    mean: np.ndarray
    map: np.ndarray
    ml: np.ndarray


def dirichlet_categorical_posterior(counts, alpha=1.0) -> DirichletPosterior:
    """Posterior of category probabilities under a ``Dir(alpha)`` prior.

    The MAP ``(alpha + c - 1) / (sum alpha + N - K)`` needs every
    ``alpha_k + c_k >= 1``; the ML estimate is ``c / N``.
    """
    counts = np.asarray(counts, dtype=np.float64)
    if counts.ndim != 1 or np.any(counts < 0):
        raise ValueError("counts must be a 1-D array of non-negative numbers.")
    alpha = np.broadcast_to(np.asarray(alpha, dtype=np.float64), counts.shape)
    if np.any(alpha <= 0):
        raise ValueError("alpha must be > 0.")
    post = alpha + counts
    if np.any(post < 1):
        raise ValueError("the MAP needs alpha + counts >= 1 in every category; use alpha >= 1.")
    mode = (post - 1) / np.sum(post - 1)
    total = counts.sum()
    ml = counts / total if total > 0 else np.full_like(counts, np.nan)
    return DirichletPosterior(post, post / post.sum(), mode, ml)


class NormalGammaPosterior(NamedTuple):
    """Normal-Gamma posterior ``(mu, kappa, a, b)`` with the MAP and ML ``(mean, precision)``."""

    mu: float
    kappa: float
    a: float
    b: float
    map: tuple
    ml: tuple


def normal_gamma_posterior(x, mu0=0.0, kappa=1.0, a=1.0, b=1.0) -> NormalGammaPosterior:
    """Posterior of a Gaussian's mean and precision under a Normal-Gamma prior
    (formulas in the module docstring)."""
    x = np.asarray(x, dtype=np.float64).ravel()
    if x.size == 0 or not np.all(np.isfinite(x)):
        raise ValueError("x must hold at least one finite observation.")
    if kappa <= 0 or a <= 0 or b <= 0:
        raise ValueError(f"kappa, a and b must be > 0, got kappa={kappa}, a={a}, b={b}.")
    n, xbar = x.size, x.mean()
    scatter = float(np.sum((x - xbar) ** 2))
    kappa_n = kappa + n
    mu_n = (kappa * mu0 + n * xbar) / kappa_n
    a_n = a + n / 2
    b_n = b + scatter / 2 + kappa * n * (xbar - mu0) ** 2 / (2 * kappa_n)
    ml = (xbar, n / scatter if scatter > 0 else float("inf"))
    return NormalGammaPosterior(mu_n, kappa_n, a_n, b_n, (mu_n, (a_n - 0.5) / b_n), ml)


def fisher_information(natural_params: Callable, log_partition: Callable, theta):
    """Exact Fisher information ``J^T (∇² A)(eta) J`` of an exponential family.

    Parameters
    ----------
    natural_params : callable
        ``theta -> eta`` (a flat array, e.g. one natural parameter per
        observation for a GLM).
    log_partition : callable
        ``eta -> A(eta)`` (a scalar: the sum over observations).
    theta : array (p,)
    """
    theta = jnp.asarray(theta)
    eta = natural_params(theta)
    jac = jax.jacfwd(natural_params)(theta).reshape(eta.size, theta.size)
    hess = jax.hessian(lambda e: log_partition(e.reshape(eta.shape)))(eta.ravel())
    return jac.T @ hess @ jac


def jeffreys_log_prior(natural_params: Callable, log_partition: Callable) -> Callable:
    """``theta -> log sqrt(det I(theta))``: Jeffreys' (unnormalised) log-prior."""

    def log_prior(theta):
        sign, logdet = jnp.linalg.slogdet(fisher_information(natural_params, log_partition, theta))
        return jnp.where(sign > 0, 0.5 * logdet, -jnp.inf)

    return log_prior


def gaussian_natural_params(theta):
    """``(mu, sigma) -> (mu / sigma^2, -1 / (2 sigma^2))``."""
    mu, sigma = theta[0], theta[1]
    return jnp.stack([mu / sigma**2, -0.5 / sigma**2])


def gaussian_log_partition(eta):
    """``A(eta) = -eta1^2 / (4 eta2) - 1/2 log(-2 eta2)``."""
    return -eta[0] ** 2 / (4 * eta[1]) - 0.5 * jnp.log(-2 * eta[1])


def bernoulli_log_partition(eta):
    """``A(eta) = sum log(1 + e^eta)`` (logistic regression, one eta per observation)."""
    return jnp.sum(jnp.logaddexp(0.0, eta))
