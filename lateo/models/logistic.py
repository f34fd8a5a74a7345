"""``BayesianLogisticRegression``: MAP or MCMC posterior of a logistic regression.

``p(y_i = 1 | x_i, beta) = sigmoid(beta_0 + x_i^T beta)`` with a Gaussian
prior ``N(0, prior_scale^2)`` on every coefficient, or Jeffreys' prior
``|X^T W X|^(1/2)`` (Firth 1993; computed by automatic differentiation of
the Bernoulli log-partition, :mod:`lateo.families.bayesian`). The fit is
the posterior mode (``method="map"``, by BFGS on the exact gradient) or
draws from the posterior by any kernel of :mod:`lateo.mcmc`
(``method="mcmc"``), started at the mode. Seed 002 works the space-shuttle
O-ring example (Dalal, Fowlkes & Hoadley 1989; see
:func:`lateo.datasets.load_challenger_orings`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from scipy import optimize

from .._validation import check_array, check_float, check_int, check_option
from ..families import bayesian
from ._base import ParamsMixin, check_is_fitted


def log_likelihood(beta, X, y):
    """``sum_i y_i eta_i - log(1 + e^eta_i)`` with ``eta = X beta`` (X with its intercept column)."""
    eta = X @ beta
    return jnp.sum(y * eta - jnp.logaddexp(0.0, eta))


def log_prior_fn(prior: str, scale: float, X):
    """The log-prior of the coefficients (up to a constant)."""
    if prior == "gaussian":
        return lambda beta: -0.5 * jnp.sum(beta**2) / scale**2
    if prior == "jeffreys":
        return bayesian.jeffreys_log_prior(lambda beta: X @ beta, bayesian.bernoulli_log_partition)
    return lambda beta: jnp.zeros((), X.dtype)


class BayesianLogisticRegression(ParamsMixin):
    """Bayesian logistic regression for binary targets.

    Parameters
    ----------
    prior : {"gaussian", "jeffreys", "flat"}, default="gaussian"
        Prior on the coefficients (intercept included); "flat" gives the
        maximum-likelihood estimate with ``method="map"``.
    prior_scale : float, default=100.0
        Standard deviation of the Gaussian prior.
    fit_intercept : bool, default=True
    method : {"mcmc", "map"}, default="mcmc"
    kernel : str, default="hmc"
        MCMC kernel (see :func:`lateo.mcmc.sample`).
    num_warmup, num_samples, num_chains : int, default 1000, 1000, 4
    credible_level : float, default=0.9
        Central credible interval returned by ``predict_proba(..., return_interval=True)``.
    random_state : int, optional
    progress : {"auto", True, False}

    Attributes
    ----------
    coef_ (n_features,), intercept_ : posterior means (``mcmc``) or the mode (``map``).
    map_ : (n_params,) the posterior mode, intercept first.
    samples_ : (num_chains, num_samples, n_params) posterior draws (``mcmc``).
    mcmc_ : the :class:`lateo.inference.mcmc.MCMCResult` (``mcmc``).
    classes_ : array([0, 1]).
    """

    _estimator_type = "classifier"

    def __init__(self, *, prior="gaussian", prior_scale=100.0, fit_intercept=True, method="mcmc", kernel="hmc",
                 num_warmup=1000, num_samples=1000, num_chains=4, credible_level=0.9, random_state=None,
                 progress="auto"):
        self._store_init_args(locals())

    def _design(self, X):
        X = np.asarray(X, dtype=np.float64)
        return np.column_stack([np.ones(X.shape[0]), X]) if self.fit_intercept else X

    def _check_y(self, y, n):
        y = np.asarray(y)
        if y.shape != (n,):
            raise ValueError(f"y must have shape ({n},) to match X, got {y.shape}.")
        if not np.all(np.isin(y, [0, 1])):
            raise ValueError("y must hold only 0 and 1 (binary targets).")
        return y.astype(np.float64)

    def fit(self, X, y):
        """Posterior mode, then (``method="mcmc"``) posterior draws; returns ``self``."""
        X = check_array(X, name="X", min_samples=2)
        y = self._check_y(y, X.shape[0])
        check_option(self.prior, name="prior", options=("gaussian", "jeffreys", "flat"))
        check_option(self.method, name="method", options=("mcmc", "map"))
        check_float(self.prior_scale, name="prior_scale", low=0.0, inclusive=False)
        if not 0.0 < self.credible_level < 1.0:
            raise ValueError(f"credible_level must be in (0, 1), got {self.credible_level!r}.")
        design = jnp.asarray(self._design(X))
        target = jnp.asarray(y)
        log_prior = log_prior_fn(self.prior, self.prior_scale, design)

        def log_posterior(beta):
            return log_likelihood(beta, design, target) + log_prior(beta)

        self.map_ = self._mode(log_posterior, design.shape[1])
        params = self.map_[None, None, :]
        if self.method == "mcmc":
            params = self._sample(log_posterior)
        mean = params.reshape(-1, params.shape[-1]).mean(axis=0)
        self.intercept_ = float(mean[0]) if self.fit_intercept else 0.0
        self.coef_ = mean[1:] if self.fit_intercept else mean
        self.classes_ = np.array([0, 1])
        self.n_features_in_ = X.shape[1]
        return self

    def _mode(self, log_posterior, n_params):
        value_and_grad = jax.jit(jax.value_and_grad(lambda b: -log_posterior(b)))

        def objective(beta):
            v, g = value_and_grad(jnp.asarray(beta))
            return float(v), np.asarray(g, dtype=np.float64)

        res = optimize.minimize(objective, np.zeros(n_params), jac=True, method="BFGS", options={"gtol": 1e-10})
        if not np.all(np.isfinite(res.x)):
            raise ValueError("the posterior mode is not finite: the data are separable and the prior is flat; "
                             "use prior='gaussian' or prior='jeffreys'.")
        return res.x

    def _sample(self, log_posterior):
        from ..mcmc import sample

        check_int(self.num_chains, name="num_chains", low=1)
        result = sample(log_posterior, jnp.asarray(self.map_), kernel=self.kernel, num_warmup=self.num_warmup,
                        num_samples=self.num_samples, num_chains=self.num_chains, key=self.random_state,
                        progress=self.progress)
        self.mcmc_ = result
        self.samples_ = np.asarray(result.samples)
        return self.samples_

    def _draws(self):
        check_is_fitted(self, "map_")
        if hasattr(self, "samples_") and self.method == "mcmc":
            return self.samples_.reshape(-1, self.samples_.shape[-1])
        return self.map_[None, :]

    def predict_proba(self, X, return_interval=False):
        """Posterior-mean probabilities ``[[1 - p, p], ...]`` (n_samples, 2).

        With ``return_interval=True`` also the central ``credible_level``
        interval of ``p(y = 1 | x)`` across the posterior draws:
        ``(proba, lower, upper)``.
        """
        X = check_array(X, name="X", n_features=self.n_features_in_, estimator=type(self).__name__)
        probs = 1.0 / (1.0 + np.exp(-(self._design(X) @ self._draws().T)))  # (n, draws)
        p = probs.mean(axis=1)
        proba = np.column_stack([1 - p, p])
        if not return_interval:
            return proba
        tail = (1 - self.credible_level) / 2
        lower, upper = np.quantile(probs, [tail, 1 - tail], axis=1)
        return proba, lower, upper

    def predict(self, X):
        """The more probable class under the posterior-mean probability."""
        return (self.predict_proba(X)[:, 1] > 0.5).astype(np.int64)


__all__ = ["BayesianLogisticRegression", "log_likelihood"]
