"""``GaussianMixture``: EM for Gaussian mixtures with scikit-learn's API.

The estimator validates its input, chooses initial parameters, runs the
statistics loop of :mod:`lateo.core.loop` on the model of
:mod:`lateo.models._mixture_em` and stores numpy results in ``attr_``
(DESIGN.md convention 1). The maths: seed 004 (EM for GMMs, k-means as its
hard limit), seed 002 (EM never decreases the likelihood); MAP-EM with
conjugate priors follows Fraley & Raftery (2007).
"""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np

from .._config import resolve_dtype
from .._validation import check_array, check_float, check_int, check_option, check_random_key
from ..algorithms import distributed, online_em
from ..core import loop
from ..core.blocks import choose_block_size, make_blocks
from ..core.progress import check_progress
from ..exceptions import ConvergenceWarning
from ..families import gaussian
from . import _mixture_init
from ._base import ParamsMixin, check_is_fitted, feature_names
from ._mixture_em import GaussianMixtureEM, MixtureHyper, MixtureParams, label_rows, score_rows
from ._online import OnlineRowsMixin


class GaussianMixture(OnlineRowsMixin, ParamsMixin):
    """Gaussian mixture fitted by (MAP-)EM on the lateo statistics loop.

    Parameters
    ----------
    n_components : int, default=1
        Number of mixture components ``K``.
    covariance_type : {"full", "tied", "diag", "spherical"}, default="full"
        Shape of the component covariances (as in scikit-learn).
    tol : float, default=1e-3
        Stop when the mean per-sample objective changes by less than ``tol``.
    reg_covar : float, default=1e-6
        Added to the covariance diagonals so they stay positive definite.
    max_iter : int, default=100
        Maximum EM iterations per initialisation.
    n_init : int, default=1
        Initialisations to run; the one with the highest objective is kept.
    init_params : {"k-means++", "kmeans", "random", "random_from_data"}, default="k-means++"
        How initial responsibilities are chosen (scikit-learn's meanings).
    weights_init, means_init, precisions_init : array-like, optional
        User-given initial values; they override ``init_params``.
    random_state : int, numpy RNG or JAX key, optional
        Seed; the same seed gives bit-identical results on one machine.
    warm_start : bool, default=False
        Start each ``fit`` from the previous solution (``n_init`` ignored).
    prior : None, "default" or dict, default=None
        ``None``: maximum likelihood. ``"default"``: MAP-EM with a conjugate
        Dirichlet / Normal-inverse-Wishart prior with Fraley & Raftery's
        (2007) defaults; a dict overrides any of ``weight_concentration``,
        ``mean``, ``mean_precision``, ``degrees_of_freedom``, ``scale``.
        ``lower_bound_`` then includes ``log p(theta) / n``.
    dtype : {"float64", "float32"}, default="float64"
        Working precision (see :mod:`lateo._config`).
    progress : {"auto", True, False}, default="auto"
        Progress bar between jitted chunks of iterations.
    em_algorithm : {"batch", "online"}, default="batch"
        ``"batch"``: exact EM. ``"online"``: online EM (Cappé & Moulines
        2009; :mod:`lateo.algorithms.online_em`) on minibatches of
        ``batch_size`` rows, ``max_iter`` passes at most (reshuffled), stopping
        when the pass-mean objective changes by less than ``tol``. ``fit``'s
        ``algorithm`` argument overrides it for one call.
    batch_size : int, default=1024
        Rows per online-EM minibatch (``fit``'s ``batch_size`` overrides it).
    step_size : schedule, optional
        ``gamma_k`` of online EM: ``None`` is ``BurnInThenDecay(20, 0.6)``
        (``gamma_k = 1`` for 20 steps, then ``(k - 20)^-0.6``);
        ``lateo.core.schedules.Constant()`` is ``gamma = 1``.

    Attributes
    ----------
    weights_, means_, covariances_, precisions_, precisions_cholesky_ : ndarray
        Fitted parameters (scikit-learn's shapes).
    converged_ : bool
    n_iter_ : int
    lower_bound_ : float
        Objective of the best run at its last E-step (scikit-learn's meaning);
        online EM: the minibatch-weighted mean objective of the last pass.
    lower_bounds_ : ndarray
        That run's objective at every iteration (online EM: every pass;
        ``partial_fit``: every call, the objective of its minibatch).
    n_steps_ : int
        Online EM: minibatch steps taken.
    n_features_in_ : int
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
        init_params="k-means++",
        weights_init=None,
        means_init=None,
        precisions_init=None,
        random_state=None,
        warm_start=False,
        prior=None,
        dtype="float64",
        progress="auto",
        em_algorithm="batch",
        batch_size=1024,
        step_size=None,
    ):
        self._store_init_args(locals())

    # ------------------------------------------------------------------ fit
    def _validate_hyperparameters(self, n_samples) -> None:
        check_int(self.n_components, name="n_components", low=1, high=n_samples)
        check_option(self.covariance_type, name="covariance_type", options=gaussian.COVARIANCE_TYPES)
        check_option(self.init_params, name="init_params", options=_mixture_init.INIT_METHODS)
        check_float(self.tol, name="tol")
        check_float(self.reg_covar, name="reg_covar")
        check_int(self.max_iter, name="max_iter", low=0)
        check_int(self.n_init, name="n_init", low=1)
        check_progress(self.progress)

    def fit(self, X, y=None, *, algorithm=None, batch_size=None, client=None):
        """Estimate the parameters by EM; returns ``self``.

        ``X`` is an array, or a stream of chunks too large for memory (a
        callable returning a fresh iterator of 2-D arrays, an iterator, or a
        :class:`lateo.algorithms.online_em.ChunkStream`): exact EM over a
        re-iterable stream sums the chunk statistics at every iteration,
        online EM makes up to ``max_iter`` passes (one for an iterator).
        Streams are initialised from their first chunk and use one
        initialisation (``n_init`` ignored). ``algorithm`` ("batch" or
        "online") and ``batch_size`` override ``em_algorithm`` and
        ``batch_size`` for this call.

        A Dask array or Dask DataFrame is fitted by distributed exact EM on
        the workers of ``client`` (default: the active
        ``dask.distributed`` Client); see :mod:`lateo.algorithms.distributed`.
        """
        del y
        algorithm, batch_size, _ = self._online_options(algorithm, batch_size)
        if distributed.is_dask_input(X):
            if algorithm != "batch":
                raise ValueError("online EM is not available for Dask input; use algorithm='batch' "
                                 "(distributed exact EM).")
            self._validate_hyperparameters(n_samples=None)
            warm = self.warm_start and hasattr(self, "means_")
            return distributed.fit_rows(self, X, client=client, n_init=1 if warm else self.n_init,
                                        names=feature_names(X))
        if algorithm == "batch" and online_em.as_stream(X) is None:
            self.fit_predict(X)
            return self
        self._validate_hyperparameters(n_samples=None)
        return self._fit_rows(X, algorithm, batch_size, feature_names(X))

    def fit_predict(self, X, y=None):
        """Fit, then return the component of each row of ``X`` (after a final E-step)."""
        del y
        if self._online_options(None, None)[0] == "online":
            return self.fit(X).predict(X)
        self.__dict__.pop("_online_", None)
        names = feature_names(X)
        X = check_array(X, name="X")
        self._validate_hyperparameters(X.shape[0])
        dtype = resolve_dtype(self.dtype)
        cov_type, k = self.covariance_type, self.n_components
        shift = X.mean(axis=0)
        blocks = make_blocks(X, self._block_size(X.shape), shift=shift, dtype=dtype)
        user_init = _mixture_init.check_user_init(self, X.shape[1], dtype)
        prior = _mixture_init.build_prior(self.prior, X, shift, k, cov_type, dtype)
        hyper = MixtureHyper(jnp.asarray(self.reg_covar, dtype), prior)
        model = GaussianMixtureEM(cov_type)
        key = check_random_key(self.random_state)
        warm = self.warm_start and hasattr(self, "means_")
        best = None
        for _ in range(1 if warm else self.n_init):
            key, init_key, loop_key = jax.random.split(key, 3)
            if warm:
                params0 = self._centred_params(shift, dtype)
            else:
                params0 = _mixture_init.initial_params(self, init_key, blocks, user_init, shift, hyper)
            state = loop.init(model, params0, blocks, hyper, loop_key)
            result = loop.run(model, state, blocks, hyper, max_iter=self.max_iter, tol=self.tol,
                              progress=self.progress, description="GaussianMixture")
            lower = result.history[-1] if result.n_iter else -np.inf
            if best is None or lower > best[0] or best[0] == -np.inf:
                best = (lower, result)
        lower, result = best
        if not result.converged and self.max_iter > 0:
            warnings.warn(
                "Best performing initialization did not converge. Try different init parameters, "
                "or increase max_iter, tol, or check for degenerate data.",
                ConvergenceWarning,
                stacklevel=2,
            )
        self._store(result, shift, lower, names)
        # final E-step on the blocks already in memory, so labels match the parameters
        return np.asarray(label_rows(loop.final(result.state), blocks, cov_type)[: X.shape[0]])

    # ------------------------------------------------------- online hooks
    def _online_model(self):
        d = getattr(self, "_online_features", 1)
        width = d * (d + 1) // 2 if gaussian.uses_vech(self.covariance_type) else d
        return GaussianMixtureEM(self.covariance_type), d + width + 3 * self.n_components

    def _online_check_chunk(self, chunk, index):
        name = "X" if index is None else f"chunk {index} of X"
        rows = check_array(chunk, name=name)
        self._online_features = rows.shape[1]
        return rows

    def _online_init(self, rows, key, dtype):
        self._validate_hyperparameters(rows.shape[0])
        shift = rows.mean(axis=0)
        blocks = make_blocks(rows, self._block_size(rows.shape), shift=shift, dtype=dtype)
        prior = _mixture_init.build_prior(self.prior, rows, shift, self.n_components, self.covariance_type, dtype)
        hyper = MixtureHyper(jnp.asarray(self.reg_covar, dtype), prior)
        if self.warm_start and hasattr(self, "means_"):
            return self._centred_params(shift, dtype), shift, hyper
        user_init = _mixture_init.check_user_init(self, rows.shape[1], dtype)
        return _mixture_init.initial_params(self, key, blocks, user_init, shift, hyper), shift, hyper

    def _online_store(self, params, shift, history, converged, n_iter, names):
        state = loop.LoopState(params, None, None, None, None, None)
        result = loop.LoopResult(state, np.asarray(history), bool(converged), int(n_iter))
        self._store(result, shift, float(history[-1]) if len(history) else -np.inf, names)

    def _block_size(self, shape) -> int:
        n, d = shape
        width = d * (d + 1) // 2 if gaussian.uses_vech(self.covariance_type) else d
        return choose_block_size(n, d + width + 3 * self.n_components)

    def _store(self, result, shift, lower, names) -> None:
        params = jax.device_get(loop.final(result.state))
        self.weights_ = np.asarray(params.weights, dtype=np.float64)
        self.means_ = np.asarray(params.means, dtype=np.float64) + shift
        self.covariances_ = np.asarray(params.covariances, dtype=np.float64)
        self.precisions_cholesky_ = np.asarray(params.precisions_cholesky, dtype=np.float64)
        self.precisions_ = _precisions(self.precisions_cholesky_, self.covariance_type)
        self.converged_ = bool(result.converged)
        self.n_iter_ = int(result.n_iter)
        self.lower_bound_ = float(lower)
        self.lower_bounds_ = np.asarray(result.history, dtype=np.float64)
        self.n_features_in_ = int(self.means_.shape[1])
        if names is not None:
            self.feature_names_in_ = names

    def _centred_params(self, shift, dtype) -> MixtureParams:
        return MixtureParams(
            jnp.asarray(self.weights_, dtype),
            jnp.asarray(self.means_ - shift, dtype),
            jnp.asarray(self.covariances_, dtype),
            jnp.asarray(self.precisions_cholesky_, dtype),
        )

    # -------------------------------------------------------------- scoring
    def _blocks(self, X):
        """New data, validated and blocked around the mixture mean, with the
        parameters in the same centred coordinates."""
        check_is_fitted(self, "means_")
        X = check_array(X, name="X", n_features=self.n_features_in_, estimator=type(self).__name__)
        dtype = resolve_dtype(self.dtype)
        shift = self.weights_ @ self.means_
        blocks = make_blocks(X, self._block_size(X.shape), shift=shift, dtype=dtype)
        return blocks, self._centred_params(shift, dtype)

    def _score(self, X):
        """Per-row ``log p(x)`` and log-responsibilities for new data."""
        blocks, params = self._blocks(X)
        norm, log_resp = score_rows(params, blocks, self.covariance_type)
        n = int(blocks.n_samples)
        return np.asarray(norm[:n], dtype=np.float64), np.asarray(log_resp[:n], dtype=np.float64)

    def _log_resp(self, X):
        return self._score(X)[1]

    def score_samples(self, X):
        """Log-density ``log p(x_i)`` of each row, shape (n_samples,)."""
        return self._score(X)[0]

    def score(self, X, y=None):
        """Mean per-sample log-likelihood of ``X``."""
        return float(np.mean(self.score_samples(X)))

    def predict(self, X):
        """Most probable component of each row."""
        blocks, params = self._blocks(X)
        return np.asarray(label_rows(params, blocks, self.covariance_type)[: int(blocks.n_samples)])

    def predict_proba(self, X):
        """Posterior probability of each component for each row, (n_samples, K)."""
        return np.exp(self._log_resp(X))

    def _n_parameters(self) -> int:
        k, d = self.means_.shape
        return gaussian.n_covariance_parameters(self.covariance_type, k, d) + k * d + k - 1

    def bic(self, X):
        """Bayesian information criterion ``-2 log L + p log n`` (lower is better)."""
        X = check_array(X, name="X", n_features=self.n_features_in_, estimator=type(self).__name__)
        return -2 * self.score(X) * X.shape[0] + self._n_parameters() * np.log(X.shape[0])

    def aic(self, X):
        """Akaike information criterion ``-2 log L + 2 p`` (lower is better)."""
        X = check_array(X, name="X", n_features=self.n_features_in_, estimator=type(self).__name__)
        return -2 * self.score(X) * X.shape[0] + 2 * self._n_parameters()

    def sample(self, n_samples=1):
        """Draw ``(X, y)`` from the fitted mixture; ``y`` holds the components.

        Counts per component are multinomial, rows are grouped by component
        (scikit-learn's layout). Uses ``random_state``.
        """
        check_is_fitted(self, "means_")
        n_samples = check_int(n_samples, name="n_samples", low=1)
        rng = np.random.default_rng(int(jax.random.randint(check_random_key(self.random_state), (), 0, 2**31 - 1)))
        counts = rng.multinomial(n_samples, self.weights_ / self.weights_.sum())
        covs = np.asarray(gaussian.full_covariances(jnp.asarray(self.covariances_), self.covariance_type, *self.means_.shape))
        X = np.vstack([rng.multivariate_normal(m, c, size=n, method="cholesky") for m, c, n in zip(self.means_, covs, counts)])
        y = np.repeat(np.arange(len(counts)), counts)
        return X, y


def _precisions(prec_chol, covariance_type):
    if gaussian.uses_vech(covariance_type):
        return prec_chol @ np.swapaxes(prec_chol, -1, -2)
    return prec_chol**2


__all__ = ["GaussianMixture"]
