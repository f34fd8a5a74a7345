"""``BayesianGaussianMixture``: variational Bayes (CAVI) for Gaussian mixtures.

scikit-learn's API and update equations (``sklearn.mixture.
BayesianGaussianMixture``), run on the lateo statistics loop
(:mod:`lateo.core.loop`) with the maths of
:mod:`lateo.models._bayesian_mixture_cavi`: Normal-Wishart components
(Bishop 2006, section 10.2), a Dirichlet or a truncated stick-breaking
Dirichlet-process prior on the weights (Blei & Jordan 2006), and the
exponential-family E-step of DESIGN.md section 5 (``T(X)`` computed once on
centred data, each ``q(Z)`` update one matrix product). Seed 004 covers the
KL divergence, the ELBO and CAVI.

Two things differ from scikit-learn, by design:

* ``lower_bound_`` (alias ``elbo_``) is the **full** ELBO, a lower bound
  on ``log p(X)`` in nats (total, not per sample), with every normalising
  constant. scikit-learn's ``lower_bound_`` omits the constants; here it
  is ``sklearn_lower_bound_ = lower_bound_ - elbo_constant_``, where
  ``elbo_constant_`` = ``log C(alpha0)`` of the weight prior (Dirichlet:
  ``log Gamma(K alpha0) - K log Gamma(alpha0)``; stick-breaking: ``K log
  alpha0``) ``- N D/2 log(2 pi) + K D/2 log(beta0) + K [log B(W0, nu0) +
  D (D - 1)/4 log(pi)]`` (``B``: Wishart normaliser, Bishop eq. B.79;
  scikit-learn strips the ``log(pi)`` term from each posterior Wishart
  normaliser). See :mod:`lateo.models._bayesian_mixture_cavi` for the
  derivation and when the formula is exact (``full``, ``reg_covar=0``).
* Components whose effective count ``N_k = sum_i r_ik`` is below
  ``prune_threshold`` at the end of the fit are removed from the fitted
  attributes (``active_components_`` lists the survivors' original
  indices; ``prune_threshold=0`` keeps all, as scikit-learn does).
"""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np

from .._config import resolve_dtype
from .._validation import check_array, check_float, check_int, check_option, check_random_key
from ..core import loop
from ..core.blocks import choose_block_size, make_blocks, to_block_rows
from ..core.progress import check_progress
from ..exceptions import ConvergenceWarning
from ..families import gaussian
from . import _bayesian_mixture_cavi as cavi
from . import _mixture_init
from ._base import ParamsMixin, check_is_fitted, feature_names
from ._mixture_em import MixtureParams, label_rows, score_rows
from .gaussian_mixture import GaussianMixture, _precisions

#: T(X) is computed once when it takes at most this many bytes; else block by block.
FEATURE_CACHE_BYTES = 512 * 2**20

_m_step = jax.jit(cavi.m_step, static_argnames=("covariance_type",))


class BayesianGaussianMixture(ParamsMixin):
    """Variational Bayesian Gaussian mixture fitted by CAVI (scikit-learn's API).

    Parameters
    ----------
    n_components : int, default=1
        Truncation level ``K``: the most components the posterior may use.
    covariance_type : {"full", "tied", "diag", "spherical"}, default="full"
    tol : float, default=1e-3
        Stop when the ELBO (in nats, not per sample: scikit-learn's rule)
        changes by less than ``tol``.
    reg_covar : float, default=1e-6
        Added to the diagonal of each component's scatter ``S_k``.
    max_iter : int, default=100
        Maximum CAVI iterations per initialisation.
    n_init : int, default=1
        Initialisations; the one with the highest ELBO is kept.
    init_params : {"kmeans", "k-means++", "random", "random_from_data"}, default="kmeans"
        Initial responsibilities (scikit-learn's meanings); ``fit(X,
        resp_init=R)`` gives them explicitly instead.
    weight_concentration_prior_type : {"dirichlet_process", "dirichlet_distribution"}, default="dirichlet_process"
        Stick-breaking ``v_k ~ Beta(1, alpha0)`` or ``pi ~ Dirichlet(alpha0)``.
    weight_concentration_prior : float > 0, default=None (``1 / n_components``)
        ``alpha0``.
    mean_precision_prior : float > 0, default=None (1)
        ``beta0``: ``mu_k | Lambda_k ~ N(m0, (beta0 Lambda_k)^-1)``.
    mean_prior : array (n_features,), default=None (the data mean)
        ``m0``.
    degrees_of_freedom_prior : float > n_features - 1, default=None (n_features)
        ``nu0`` of the Wishart prior.
    covariance_prior : default=None (the data covariance, ddof=1)
        ``W0^-1``: (D, D) positive definite (full, tied), (D,) positive
        (diag), a positive float (spherical).
    random_state : int, numpy RNG or JAX key, optional
    warm_start : bool, default=False
        Continue from the previous fit (all K components, pruned or not).
    prune_threshold : float >= 0, default=1.0
        Remove components explaining fewer than this many points
        (``N_k < prune_threshold``) from the fitted attributes; the largest
        component is always kept.
    dtype : {"float64", "float32"}, default="float64"
    verbose : int, default=0
        1: one line per initialisation (iterations, ELBO, convergence).
    progress : {"auto", True, False}, default="auto"
        Progress bar between jitted chunks of iterations.

    Attributes
    ----------
    weights_ : (n_components_,) ``E[pi_k]`` of the kept components, renormalised.
    weight_concentration_ : (n_components_,) Dirichlet, or a tuple of two
        arrays (the Beta parameters of the sticks).
    mean_precision_ : (n_components_,) ``beta_k``.
    means_ : (n_components_, D) ``m_k``.
    degrees_of_freedom_ : (n_components_,) ``nu_k`` (a float for tied).
    covariances_, precisions_, precisions_cholesky_ : ``W_k^-1 / nu_k`` and
        its inverse ``E[Lambda_k]`` (scikit-learn's shapes).
    lower_bound_ : float
        Full ELBO of the best run, ``<= log p(X)`` (also ``elbo_``).
    lower_bounds_ : ndarray, the full ELBO at every iteration of that run.
    elbo_constant_ : float, the constant terms scikit-learn leaves out.
    sklearn_lower_bound_ : float, ``lower_bound_ - elbo_constant_``.
    effective_counts_ : (n_components,) ``N_k`` of all components, before pruning.
    active_components_ : int array, original indices of the kept components.
    n_components_ : int, the number kept.
    converged_, n_iter_, n_features_in_ : as in scikit-learn.

    References
    ----------
    Bishop (2006), Pattern Recognition and Machine Learning, section 10.2.
    Blei & Jordan (2006), Variational inference for Dirichlet process
    mixtures, Bayesian Analysis 1(1):121-144.
    """

    _estimator_type = "density_estimator"

    def __init__(
        self,
        n_components=1,
        *,
        covariance_type="full",
        tol=1e-3,
        reg_covar=1e-6,
        max_iter=100,
        n_init=1,
        init_params="kmeans",
        weight_concentration_prior_type="dirichlet_process",
        weight_concentration_prior=None,
        mean_precision_prior=None,
        mean_prior=None,
        degrees_of_freedom_prior=None,
        covariance_prior=None,
        random_state=None,
        warm_start=False,
        prune_threshold=1.0,
        dtype="float64",
        verbose=0,
        progress="auto",
    ):
        self._store_init_args(locals())

    # ------------------------------------------------------------------ fit
    def _validate_hyperparameters(self, n_samples: int) -> None:
        check_int(self.n_components, name="n_components", low=1, high=n_samples)
        check_option(self.covariance_type, name="covariance_type", options=gaussian.COVARIANCE_TYPES)
        check_option(self.init_params, name="init_params", options=_mixture_init.INIT_METHODS)
        check_option(self.weight_concentration_prior_type, name="weight_concentration_prior_type",
                     options=cavi.PRIOR_TYPES)
        check_float(self.tol, name="tol")
        check_float(self.reg_covar, name="reg_covar")
        check_float(self.prune_threshold, name="prune_threshold")
        check_int(self.max_iter, name="max_iter", low=0)
        check_int(self.n_init, name="n_init", low=1)
        check_int(self.verbose, name="verbose", low=0)
        check_progress(self.progress)

    def fit(self, X, y=None, *, resp_init=None):
        """Fit ``q(Z) q(pi) q(mu, Lambda)`` by CAVI; returns ``self``.

        ``resp_init`` (n_samples, n_components), rows summing to 1, replaces
        ``init_params`` (scikit-learn's ``_initialize(X, resp)``).
        """
        self.fit_predict(X, y, resp_init=resp_init)
        return self

    def fit_predict(self, X, y=None, *, resp_init=None):
        """Fit, then return the most probable kept component of each row."""
        del y
        names = feature_names(X)
        X = check_array(X, name="X")
        self._validate_hyperparameters(X.shape[0])
        dtype = resolve_dtype(self.dtype)
        shift = X.mean(axis=0)
        prior_np = _check_priors(self, X)
        prior = cavi.BayesPrior(*(jnp.asarray(v - shift if name == "mean" else v, dtype)
                                  for name, v in prior_np.items()))
        resp = _check_resp(resp_init, X.shape[0], self.n_components)
        blocks = make_blocks(X, self._block_size(X.shape), shift=shift, dtype=dtype)
        cached = _feature_bytes(blocks, self.covariance_type) <= FEATURE_CACHE_BYTES
        data = cavi.feature_blocks(blocks, self.covariance_type) if cached else blocks
        stick_breaking = jnp.asarray(self.weight_concentration_prior_type == "dirichlet_process")
        hyper = cavi.CaviHyper(jnp.asarray(self.reg_covar, dtype), prior, stick_breaking)
        model = cavi.BayesianMixtureCAVI(self.covariance_type, cached)
        lower, result = self._best_run(model, blocks, data, hyper, resp, shift)
        if not result.converged and self.max_iter > 0:
            warnings.warn("Best performing initialization did not converge. Try different init parameters, "
                          "or increase max_iter, tol, or check for degenerate data.", ConvergenceWarning, stacklevel=2)
        self._store(result, shift, lower, hyper, X.shape[0], names, prior_np)
        labels = label_rows(self._scoring_params(shift, dtype), blocks, self.covariance_type)
        return np.asarray(labels[: X.shape[0]])

    def _best_run(self, model, blocks, data, hyper, resp, shift):
        """Run every initialisation; keep the highest final ELBO (scikit-learn's rule)."""
        key = check_random_key(self.random_state)
        warm = self.warm_start and hasattr(self, "_variational")
        best = None
        for i in range(1 if warm else self.n_init):
            key, init_key, loop_key = jax.random.split(key, 3)
            params0 = self._warm_params(shift, hyper) if warm else self._initial_params(init_key, blocks, data, resp, model, hyper)
            state = loop.init(model, params0, data, hyper, loop_key)
            if warm:
                state = state._replace(objective=jnp.asarray(self.lower_bound_, state.objective.dtype))
            result = loop.run(model, state, data, hyper, max_iter=self.max_iter, tol=self.tol,
                              progress=self.progress, description="BayesianGaussianMixture")
            lower = float(result.history[-1]) if result.n_iter else -np.inf
            if self.verbose:
                print(f"Initialization {i}: {result.n_iter} iterations, ELBO {lower:.6f}, converged={result.converged}")
            if best is None or lower > best[0] or best[0] == -np.inf:
                best = (lower, result)
        return best

    def _initial_params(self, key, blocks, data, resp, model, hyper):
        """``q(theta)`` from the initial responsibilities (scikit-learn's ``_initialize``)."""
        ct, dim = self.covariance_type, blocks.X.shape[-1]
        if resp is None:
            stats = _mixture_init._resp_stats(self, key, blocks)
        else:
            stats = cavi.stats_from_resp(data, to_block_rows(resp, blocks), dim, ct, model.features_given)
        return _m_step(stats, hyper, covariance_type=ct)

    def _warm_params(self, shift, hyper):
        """The previous fit's (unpruned) ``q(theta)``, re-centred on this fit's data mean."""
        dtype = hyper.reg_covar.dtype
        params = jax.tree.map(lambda a: jnp.asarray(a, dtype), self._variational)
        return params._replace(means=params.means + jnp.asarray(self._shift - shift, dtype))

    def _block_size(self, shape) -> int:
        n, d = shape
        width = d * (d + 1) // 2 if gaussian.uses_vech(self.covariance_type) else d
        return choose_block_size(n, d + width + 3 * self.n_components)

    # ---------------------------------------------------------------- store
    def _store(self, result, shift, lower, hyper, n_samples, names, prior_np) -> None:
        params = loop.final(result.state)
        ct, prior_type = self.covariance_type, self.weight_concentration_prior_type
        extra, constant = cavi.fit_summary(params, hyper, float(n_samples), ct)
        self._variational = jax.tree.map(lambda a: np.asarray(a, np.float64), jax.device_get(params))
        self._shift = shift
        extra, constant = np.asarray(extra, np.float64), float(constant)
        counts = self._variational.counts
        keep = _active(counts, self.prune_threshold)
        v = self._variational
        weights = _expected_weights(v.weight_concentration, prior_type)[keep]
        self.weights_ = weights / weights.sum()
        wc = v.weight_concentration
        self.weight_concentration_ = (wc[0][keep], wc[1][keep]) if prior_type == "dirichlet_process" else wc[0][keep]
        self.mean_precision_ = v.mean_precision[keep]
        self.means_ = v.means[keep] + shift
        per_component = ct != "tied"
        self.degrees_of_freedom_ = v.degrees_of_freedom[keep] if per_component else float(v.degrees_of_freedom)
        self.covariances_ = v.covariances[keep] if per_component else v.covariances
        self.precisions_cholesky_ = v.precisions_cholesky[keep] if per_component else v.precisions_cholesky
        self.precisions_ = _precisions(self.precisions_cholesky_, ct)
        self._log_rho_extra = extra[keep]
        self.effective_counts_ = counts
        self.active_components_ = keep
        self.n_components_ = int(keep.size)
        self.converged_ = bool(result.converged)
        self.n_iter_ = int(result.n_iter)
        self.lower_bound_ = self.elbo_ = float(lower)
        self.lower_bounds_ = np.asarray(result.history, dtype=np.float64)
        self.elbo_constant_ = constant
        self.sklearn_lower_bound_ = self.lower_bound_ - constant
        for name, value in prior_np.items():
            setattr(self, f"{_PRIOR_ATTRS[name]}_", value)
        self.n_features_in_ = int(self.means_.shape[1])
        if names is not None:
            self.feature_names_in_ = names

    # -------------------------------------------------------------- scoring
    def _scoring_params(self, shift, dtype) -> MixtureParams:
        """Kept components centred on ``shift``, as mixture parameters whose
        "weights" are ``exp`` of the variational constants of ``log rho``:
        the ``q(Z)`` update is the EM E-step with those weights."""
        as_j = lambda a: jnp.asarray(a, dtype)  # noqa: E731
        return MixtureParams(as_j(np.exp(self._log_rho_extra)), as_j(self.means_ - shift),
                             as_j(self.covariances_), as_j(self.precisions_cholesky_))

    def _blocks(self, X):
        check_is_fitted(self, "means_")
        X = check_array(X, name="X", n_features=self.n_features_in_, estimator=type(self).__name__)
        dtype = resolve_dtype(self.dtype)
        shift = self.weights_ @ self.means_
        return make_blocks(X, self._block_size(X.shape), shift=shift, dtype=dtype), self._scoring_params(shift, dtype)

    def _score(self, X):
        blocks, params = self._blocks(X)
        norm, log_resp = score_rows(params, blocks, self.covariance_type)
        n = int(blocks.n_samples)
        return np.asarray(norm[:n], dtype=np.float64), np.asarray(log_resp[:n], dtype=np.float64)

    def score_samples(self, X):
        """``log sum_k rho_ik`` per row: scikit-learn's variational log-density."""
        return self._score(X)[0]

    def score(self, X, y=None):
        """Mean of :meth:`score_samples`."""
        return float(np.mean(self.score_samples(X)))

    def predict(self, X):
        """Most probable kept component of each row."""
        blocks, params = self._blocks(X)
        return np.asarray(label_rows(params, blocks, self.covariance_type)[: int(blocks.n_samples)])

    def predict_proba(self, X):
        """``q(z_i = k)`` over the kept components, (n_samples, n_components_)."""
        return np.exp(self._score(X)[1])

    sample = GaussianMixture.sample


_PRIOR_ATTRS = dict(weight_concentration="weight_concentration_prior", mean_precision="mean_precision_prior",
                    mean="mean_prior", degrees_of_freedom="degrees_of_freedom_prior", covariance="covariance_prior")


def _positive(value, name, default):
    if value is None:
        return float(default)
    return check_float(value, name=name, low=0.0, inclusive=False)


def _check_covariance_prior(value, X, covariance_type):
    """``W0^-1``: default the data covariance (ddof=1, scikit-learn's), else validated."""
    n, d = X.shape
    if value is None:
        if n < 2:
            raise ValueError(f"X has n_samples={n}; the default covariance_prior (the data covariance) needs at "
                             "least 2 samples. Pass covariance_prior explicitly.")
        cov = np.atleast_2d(np.cov(X.T))
        return {"full": cov, "tied": cov, "diag": np.diag(cov).copy(), "spherical": np.diag(cov).mean()}[covariance_type]
    shape = {"full": (d, d), "tied": (d, d), "diag": (d,), "spherical": ()}[covariance_type]
    arr = _mixture_init._as_array(value, "covariance_prior", shape)
    if shape == (d, d):
        if not np.allclose(arr, arr.T) or np.any(np.linalg.eigvalsh(arr) <= 0):
            raise ValueError(f"covariance_prior must be symmetric positive definite for covariance_type={covariance_type!r}.")
    elif np.any(arr <= 0):
        raise ValueError(f"covariance_prior must be positive for covariance_type={covariance_type!r}, got {arr}.")
    return arr if shape else float(arr)


def _check_priors(est, X) -> dict:
    """The prior hyper-parameters (scikit-learn's defaults), validated, in data coordinates."""
    d = X.shape[1]
    nu0 = est.degrees_of_freedom_prior
    nu0 = float(d) if nu0 is None else check_float(nu0, name="degrees_of_freedom_prior", low=d - 1.0, inclusive=False)
    mean = X.mean(axis=0) if est.mean_prior is None else _mixture_init._as_array(est.mean_prior, "mean_prior", (d,))
    return dict(
        weight_concentration=_positive(est.weight_concentration_prior, "weight_concentration_prior", 1.0 / est.n_components),
        mean_precision=_positive(est.mean_precision_prior, "mean_precision_prior", 1.0),
        mean=mean,
        degrees_of_freedom=nu0,
        covariance=_check_covariance_prior(est.covariance_prior, X, est.covariance_type),
    )


def _check_resp(resp, n_samples, n_components):
    if resp is None:
        return None
    arr = _mixture_init._as_array(resp, "resp_init", (n_samples, n_components))
    if np.any(arr < 0) or not np.allclose(arr.sum(axis=1), 1.0, rtol=0, atol=1e-6):
        raise ValueError("resp_init must be non-negative with rows summing to 1 (responsibilities).")
    return arr


def _feature_bytes(blocks, covariance_type) -> int:
    n_blocks, size, d = blocks.X.shape
    width = d + (d * (d + 1) // 2 if gaussian.uses_vech(covariance_type) else d)
    return n_blocks * size * width * blocks.X.dtype.itemsize


def _active(counts, threshold):
    keep = np.flatnonzero(counts >= threshold)
    return keep if keep.size else np.array([int(np.argmax(counts))])


def _expected_weights(weight_concentration, prior_type):
    """``E[pi_k]`` (sticks: ``E[v_k] prod_{j<k} E[1 - v_j]``), normalised as scikit-learn does."""
    if prior_type == "dirichlet_process":
        a, b = weight_concentration
        w = a / (a + b) * np.hstack((1.0, np.cumprod(b / (a + b))[:-1]))
    else:
        w = weight_concentration[0]
    return w / w.sum()


__all__ = ["BayesianGaussianMixture"]
