"""``PPCA``: probabilistic principal component analysis with scikit-learn's API.

Three fits of ``x = W z + mu + eps``, ``z ~ N(0, I_q)``, ``eps ~ N(0, sigma^2
I)`` (Tipping & Bishop 1999; seed 001): the closed-form maximum-likelihood
solution, EM on the statistics loop (seed 001's EM), and the same EM with
missing values (NaN), whose E-step uses each row's observed coordinates.
Online EM and streams of chunks come from :class:`lateo.models._online.
OnlineRowsMixin`. The maths: :mod:`lateo.models._ppca_em`.

Relation to scikit-learn's ``PCA``: its ``explained_variance_`` and
``noise_variance_`` divide by ``n - 1``; lateo's are the maximum-likelihood
values (divide by ``n``), so ``sklearn = lateo * n / (n - 1)`` and
scikit-learn's ``PCA.score`` is the PPCA log-likelihood of the covariance
``C * n / (n - 1)``.
"""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
from scipy import sparse as sp_sparse

from .._config import resolve_dtype
from .._validation import check_array, check_float, check_int, check_option, check_random_key
from ..algorithms import distributed, online_em
from ..core import loop
from ..core.blocks import choose_block_size, make_blocks
from ..core.progress import check_progress
from ..exceptions import ConvergenceWarning
from ._base import ParamsMixin, check_is_fitted, feature_names
from ._online import OnlineRowsMixin
from ._ppca_em import PPCAEM, PPCAParams, closed_form, score_and_transform

METHODS = ("auto", "closed_form", "em")


def check_rows(X, *, name="X", allow_nan: bool, n_features=None, estimator="PPCA"):
    """A copy of ``X`` as a 2-D float64 array; NaN (missing) allowed only if ``allow_nan``, inf never."""
    if not allow_nan or sp_sparse.issparse(X):
        return check_array(X, name=name, n_features=n_features, estimator=estimator)
    if hasattr(X, "to_numpy") and hasattr(X, "columns"):
        X = X.to_numpy()
    arr = np.asarray(X)
    nan = np.isnan(arr) if arr.dtype.kind == "f" else False
    filled = check_array(np.where(nan, 0.0, arr) if nan is not False else arr, name=name,
                         n_features=n_features, estimator=estimator)  # shape, type and inf checks
    filled[np.broadcast_to(nan, filled.shape)] = np.nan
    return filled


class PPCA(OnlineRowsMixin, ParamsMixin):
    """Probabilistic PCA: closed form, EM, EM with missing values, online EM.

    Parameters
    ----------
    n_components : int, default=1
        Latent dimension ``q``, ``1 <= q < n_features``.
    method : {"auto", "closed_form", "em"}, default="auto"
        ``"closed_form"``: eigen-decomposition (no NaN allowed). ``"em"``:
        EM, which accepts NaN as missing values. ``"auto"``: the closed form
        for complete data, EM when ``X`` has NaN, is a stream, or
        ``em_algorithm="online"``.
    tol : float, default=1e-8
        EM stops when the mean per-row log-likelihood changes by less.
    max_iter : int, default=1000
        Maximum EM iterations (online EM: passes over the data).
    random_state : int, numpy RNG or JAX key, optional
        Seeds EM's random initial ``W`` and ``sample``.
    em_algorithm : {"batch", "online"}, default="batch"
        Exact EM or online EM (:mod:`lateo.algorithms.online_em`); ``fit``'s
        ``algorithm`` overrides it for one call.
    batch_size : int, default=1024
        Rows per online-EM minibatch.
    step_size : schedule, optional
        Online EM's ``gamma_k`` (``None``: 1 for 20 steps, then ``(k - 20)^-0.6``).
    dtype : {"float64", "float32"}, default="float64"
    progress : {"auto", True, False}, default="auto"

    Attributes
    ----------
    components_ : ndarray (q, D)
        Orthonormal principal axes (rows), as scikit-learn's ``PCA``.
    explained_variance_ : ndarray (q,)
        Variance of the fitted model along each axis, ``s_j^2 + sigma^2``
        (maximum likelihood: eigenvalues of the ``1/n`` covariance).
    noise_variance_ : float
        ``sigma^2``.
    mean_ : ndarray (D,)
    loadings_ : ndarray (D, q)
        ``W = components_^T diag(explained_variance_ - sigma^2)^{1/2}`` (the
        rotation ``R = I``); ``transform`` returns ``E[z | x]`` in this basis.
    n_iter_, converged_, lower_bound_, lower_bounds_, n_features_in_
        EM's iterations, convergence, last and per-iteration mean log-likelihood
        (the closed form: 1, True, its mean log-likelihood).
    """

    _estimator_type = "transformer"

    def __init__(self, n_components=1, *, method="auto", tol=1e-8, max_iter=1000, random_state=None,
                 em_algorithm="batch", batch_size=1024, step_size=None, dtype="float64", progress="auto"):
        self._store_init_args(locals())

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True  # NaN are missing values (EM); the closed form rejects them
        return tags

    # ------------------------------------------------------------------ fit
    def _validate(self, n_samples, n_features) -> None:
        check_option(self.method, name="method", options=METHODS)
        check_int(self.n_components, name="n_components", low=1)
        if self.n_components >= n_features:
            raise ValueError(f"n_components must be < n_features = {n_features} (at least one discarded "
                             f"direction estimates the noise variance), got n_components={self.n_components}.")
        if n_samples is not None and n_samples < self.n_components + 2:
            raise ValueError(f"X has n_samples={n_samples}, but PPCA with n_components={self.n_components} needs "
                             f"at least n_components + 2 = {self.n_components + 2} rows to estimate the noise variance.")
        check_float(self.tol, name="tol")
        check_int(self.max_iter, name="max_iter", low=1)
        check_progress(self.progress)

    def fit(self, X, y=None, *, algorithm=None, batch_size=None, client=None):
        """Fit the model; returns ``self``.

        ``X`` (n_samples, n_features) may hold NaN (missing values) unless
        ``method="closed_form"``; it may also be a stream of chunks (see
        :meth:`lateo.GaussianMixture.fit`). ``algorithm`` ("batch"/"online")
        and ``batch_size`` override ``em_algorithm`` and ``batch_size``.

        A Dask array or Dask DataFrame is fitted by distributed EM
        (``method`` "auto" or "em") on the workers of ``client`` (default:
        the active ``dask.distributed`` Client); see
        :mod:`lateo.algorithms.distributed`.
        """
        del y
        check_option(self.method, name="method", options=METHODS)
        algorithm, batch_size, _ = self._online_options(algorithm, batch_size)
        if distributed.is_dask_input(X):
            if self.method == "closed_form" or algorithm != "batch":
                raise ValueError("Dask input is fitted by distributed exact EM: use method='em' (or 'auto') and "
                                 "algorithm='batch'.")
            return distributed.fit_rows(self, X, client=client, names=feature_names(X))
        names = feature_names(X)
        stream = online_em.as_stream(X)
        if self.method == "closed_form" and (stream is not None or algorithm == "online"):
            raise ValueError("method='closed_form' needs the whole data in memory and em_algorithm='batch'; "
                             "use method='em' (or 'auto') for online EM or a stream of chunks.")
        if stream is not None or algorithm == "online":
            return self._fit_rows(X, algorithm, batch_size, names)
        X = check_rows(X, allow_nan=True)
        self._validate(*X.shape)
        missing = bool(np.isnan(X).any())
        if missing and self.method == "closed_form":
            raise ValueError(f"X contains {int(np.isnan(X).sum())} NaN value(s), but method='closed_form' does not "
                             "accept missing values; use method='em' (EM with missing values) or impute them.")
        self.__dict__.pop("_online_", None)
        if self.method == "closed_form" or (self.method == "auto" and not missing):
            return self._fit_closed_form(X, names)
        return self._fit_em(X, names)

    def _fit_closed_form(self, X, names):
        W, mean, sigma2, _ = closed_form(X, self.n_components)
        self._store_params(W, mean, sigma2, names)
        self.n_iter_, self.converged_ = 1, True  # one eigen-decomposition
        self.lower_bound_ = self.score(X)
        self.lower_bounds_ = np.asarray([self.lower_bound_])
        return self

    def _fit_em(self, X, names):
        dtype = resolve_dtype(self.dtype)
        key, init_key, loop_key = jax.random.split(check_random_key(self.random_state), 3)
        params0, shift, _ = self._online_init(X, init_key, dtype)
        blocks = make_blocks(X, self._block_size(X.shape), shift=shift, dtype=dtype)
        model = PPCAEM()
        state = loop.init(model, params0, blocks, None, loop_key)
        result = loop.run(model, state, blocks, None, max_iter=self.max_iter, tol=self.tol,
                          progress=self.progress, description="PPCA")
        if not result.converged:
            warnings.warn("PPCA EM did not converge; increase max_iter or tol.", ConvergenceWarning, stacklevel=3)
        self._online_store(result.state.params, shift, result.history, result.converged, result.n_iter, names)
        return self

    def _block_size(self, shape) -> int:
        q = self.n_components
        return choose_block_size(shape[0], 3 * shape[1] * (q + 2) + (q + 1) ** 2)

    # ------------------------------------------------------- online hooks
    def _online_model(self):
        d = getattr(self, "_online_features", 2)
        return PPCAEM(), 3 * d * (self.n_components + 2) + (self.n_components + 1) ** 2

    def _online_check_chunk(self, chunk, index):
        if self.method == "closed_form":
            raise ValueError("method='closed_form' cannot fit by online EM or from a stream; use method='em'.")
        name = "X" if index is None else f"chunk {index} of X"
        rows = check_rows(chunk, name=name, allow_nan=True)
        self._online_features = rows.shape[1]
        return rows

    def _online_init(self, rows, key, dtype):
        """Mean = column means of the observed values; ``sigma^2`` = their mean variance; ``W`` random."""
        self._validate(rows.shape[0], rows.shape[1])
        empty = np.flatnonzero(np.all(np.isnan(rows), axis=0))
        if empty.size:
            raise ValueError(f"columns {empty.tolist()} of X have no observed value; drop them before fitting.")
        shift = np.nanmean(rows, axis=0)
        var = float(np.mean(np.nanvar(rows, axis=0))) or 1.0
        W = jax.random.normal(key, (rows.shape[1], self.n_components), dtype) * np.sqrt(var)
        return PPCAParams(W, jnp.zeros(rows.shape[1], dtype), jnp.asarray(var, dtype)), shift, None

    def _online_store(self, params, shift, history, converged, n_iter, names):
        params = jax.device_get(params)
        self._store_params(np.asarray(params.W, np.float64), np.asarray(params.mean, np.float64) + shift,
                           float(params.noise_variance), names)
        self.n_iter_, self.converged_ = int(n_iter), bool(converged)
        self.lower_bounds_ = np.asarray(history, np.float64)
        self.lower_bound_ = float(self.lower_bounds_[-1]) if len(self.lower_bounds_) else -np.inf

    def _store_params(self, W, mean, sigma2, names):
        """Canonical form: ``W = U diag(s)`` from its SVD, signs so each axis' largest entry is positive."""
        U, s, _ = np.linalg.svd(W, full_matrices=False)
        signs = np.sign(U[np.argmax(np.abs(U), axis=0), np.arange(U.shape[1])])
        U = U * np.where(signs == 0, 1.0, signs)
        self.components_ = U.T.copy()
        self.noise_variance_ = float(sigma2)
        self.explained_variance_ = s**2 + self.noise_variance_
        self.loadings_ = U * s
        self.mean_ = np.asarray(mean, np.float64)
        self.n_components_ = int(U.shape[1])
        self.n_features_in_ = int(U.shape[0])
        if names is not None:
            self.feature_names_in_ = names

    # ------------------------------------------------------------ queries
    def _params(self):
        check_is_fitted(self, "components_")
        dtype = resolve_dtype(self.dtype)
        return PPCAParams(jnp.asarray(self.loadings_, dtype), jnp.zeros(self.n_features_in_, dtype),
                          jnp.asarray(self.noise_variance_, dtype))

    def _score_transform(self, X):
        check_is_fitted(self, "components_")
        X = check_rows(X, allow_nan=True, n_features=self.n_features_in_)
        blocks = make_blocks(X, self._block_size(X.shape), shift=self.mean_, dtype=resolve_dtype(self.dtype))
        log_lik, ez = score_and_transform(self._params(), blocks)
        n = X.shape[0]
        return np.asarray(log_lik[:n], np.float64), np.asarray(ez[:n], np.float64)

    def score_samples(self, X):
        """``log N(x_O | mu_O, C_OO)`` per row, ``C = W W^T + sigma^2 I`` (observed coordinates ``O``)."""
        return self._score_transform(X)[0]

    def score(self, X, y=None):
        """Mean per-row log-likelihood."""
        return float(np.mean(self.score_samples(X)))

    def transform(self, X):
        """Posterior mean ``E[z | x_O] = M^{-1} W_O^T (x_O - mu_O)``, (n_samples, q)."""
        return self._score_transform(X)[1]

    def fit_transform(self, X, y=None, **fit_params):
        """``fit(X)`` then ``transform(X)``."""
        return self.fit(X, y, **fit_params).transform(X)

    def inverse_transform(self, Z):
        """``W z + mu`` for each row of ``Z`` (n_samples, q)."""
        check_is_fitted(self, "components_")
        Z = check_array(Z, name="Z", n_features=self.n_components_, estimator="PPCA.inverse_transform")
        return Z @ self.loadings_.T + self.mean_

    def get_covariance(self):
        """Model covariance ``C = W W^T + sigma^2 I`` (scikit-learn's name)."""
        check_is_fitted(self, "components_")
        return self.loadings_ @ self.loadings_.T + self.noise_variance_ * np.eye(self.n_features_in_)

    def get_precision(self):
        """``C^{-1}``."""
        return np.linalg.inv(self.get_covariance())

    def sample(self, n_samples=1, random_state=None):
        """Draw ``n_samples`` rows ``W z + mu + sigma eps`` (``random_state`` defaults to the estimator's)."""
        check_is_fitted(self, "components_")
        n_samples = check_int(n_samples, name="n_samples", low=1)
        key = check_random_key(self.random_state if random_state is None else random_state)
        kz, ke = jax.random.split(key)
        z = np.asarray(jax.random.normal(kz, (n_samples, self.n_components_)), np.float64)
        eps = np.asarray(jax.random.normal(ke, (n_samples, self.n_features_in_)), np.float64)
        return z @ self.loadings_.T + self.mean_ + np.sqrt(self.noise_variance_) * eps


__all__ = ["PPCA"]
