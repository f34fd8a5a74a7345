"""``KMeans``: k-means clustering with scikit-learn's API.

The estimator validates, centres and blocks the data, then calls the pure
functions of :mod:`lateo.models._kmeans_lloyd` (Lloyd's algorithm on the
core statistics loop, k-means++ seeding).
"""

from __future__ import annotations

import warnings

import jax.numpy as jnp
import numpy as np

from .._config import resolve_dtype
from .._validation import check_array, check_float, check_int, check_option, check_random_key
from ..algorithms import distributed
from ..core.blocks import choose_block_size, make_blocks
from ..core.progress import check_progress
from ..exceptions import ConvergenceWarning
from ._base import ParamsMixin, check_is_fitted, feature_names
from ._kmeans_lloyd import _INITS, center_distances, kmeans_fit, kmeans_plusplus, labels_inertia

__all__ = ["KMeans", "kmeans_fit", "kmeans_plusplus"]


class KMeans(ParamsMixin):
    """k-means clustering (Lloyd's algorithm, k-means++ seeding).

    Minimises the inertia ``sum_i ||x_i - c_{z_i}||^2`` (Lloyd 1982) from
    k-means++ seeds (Arthur & Vassilvitskii 2007); results match
    scikit-learn's ``KMeans(algorithm="lloyd")`` from the same initial
    centers.

    Parameters
    ----------
    n_clusters : int, default=8
    init : {"k-means++", "random"} or array (n_clusters, n_features), default="k-means++"
        Greedy k-means++, ``K`` distinct random rows, or the initial centers
        (then only one run is made, whatever ``n_init``).
    n_init : int, default=1
        Runs from different seeds; the lowest inertia is kept.
    max_iter : int, default=300
    tol : float, default=1e-4
        Stop when the summed squared center shift is at most ``tol`` times
        the mean per-feature variance of ``X``.
    random_state : None, int, numpy RandomState/Generator or JAX key
    dtype : {"float64", "float32"}, default="float64"
    progress : {"auto", True, False}, default="auto"

    Notes
    -----
    ``fit`` also accepts a 2-D Dask array or a Dask DataFrame of numeric
    columns: Lloyd's iterations then run on a ``dask.distributed`` cluster
    (:func:`lateo.algorithms.distributed.fit_kmeans`), with only centers and
    per-cluster statistics travelling.

    Attributes
    ----------
    cluster_centers_ : ndarray (n_clusters, n_features)
    labels_ : ndarray (n_samples,) of int32
    inertia_ : float
    n_iter_ : int
    n_features_in_ : int
    """

    _estimator_type = "clusterer"

    def __init__(self, n_clusters=8, *, init="k-means++", n_init=1, max_iter=300, tol=1e-4,
                 random_state=None, dtype="float64", progress="auto"):
        self._store_init_args(locals())

    def _check_init(self, n_features: int):
        if isinstance(self.init, str):
            return check_option(self.init, name="init", options=_INITS)
        init = check_array(self.init, name="init")
        if init.shape != (self.n_clusters, n_features):
            raise ValueError(f"init must be 'k-means++', 'random' or an array of shape (n_clusters, n_features) "
                             f"= {(self.n_clusters, n_features)}; got an array of shape {init.shape}.")
        return init

    def _check_params(self, n_samples: int, n_features: int):
        check_int(self.n_clusters, name="n_clusters", low=1)
        if self.n_clusters > n_samples:
            raise ValueError(f"n_clusters={self.n_clusters} must be <= n_samples={n_samples}; pass fewer clusters "
                             "or more data.")
        check_int(self.n_init, name="n_init", low=1)
        check_int(self.max_iter, name="max_iter", low=1)
        check_float(self.tol, name="tol", low=0.0)
        check_progress(self.progress)
        return self._check_init(n_features), resolve_dtype(self.dtype)

    def _runs(self, init, mean, stacklevel: int = 3):
        """``(init, n_init)``: explicit centers are shifted by ``mean`` and run once (with a warning)."""
        if isinstance(init, str):
            return init, self.n_init
        if self.n_init != 1:
            warnings.warn(f"Explicit initial centers passed: performing one run instead of n_init={self.n_init}.",
                          UserWarning, stacklevel=stacklevel)
        return init - mean, 1

    def _store_fit(self, res, mean, n_features: int, names, stacklevel: int = 3):
        """Store a :class:`~lateo.models._kmeans_lloyd.KMeansResult` (centers shifted back by ``mean``)."""
        self.cluster_centers_ = np.asarray(res.centers, dtype=np.float64) + mean
        self.labels_, self.inertia_, self.n_iter_ = res.labels, res.inertia, res.n_iter
        self.n_features_in_ = n_features
        if names is not None:
            self.feature_names_in_ = names
        distinct = np.unique(res.labels).size
        if distinct < self.n_clusters:
            warnings.warn(f"Number of distinct clusters ({distinct}) found smaller than n_clusters "
                          f"({self.n_clusters}). Possibly due to duplicate points in X.", ConvergenceWarning,
                          stacklevel=stacklevel)
        return self

    def fit(self, X, y=None, *, client=None):
        """Compute k-means clustering of ``X``; returns ``self``.

        Parameters
        ----------
        X : array-like (n_samples, n_features), Dask array or Dask DataFrame
            Training data. A 2-D Dask array or a Dask DataFrame of numeric
            columns (known chunk sizes) is clustered by distributed Lloyd
            iterations on the workers of ``client``, seeded from a sample
            pulled to the client (the whole data, in order, up to the Dask
            config key ``lateo.distributed.sample-rows`` rows: then the fit
            equals the single-process one); ``labels_`` is gathered to the
            client. See :func:`lateo.algorithms.distributed.fit_kmeans`.
        y : ignored
        client : distributed.Client, optional
            For Dask input only; default: the active ``dask.distributed``
            Client.

        Returns
        -------
        self : KMeans
        """
        del y
        names = feature_names(X)
        if distributed.is_dask_input(X):
            return distributed.fit_kmeans(self, X, client=client, names=names)
        X = check_array(X)
        init, dtype = self._check_params(*X.shape)
        key = check_random_key(self.random_state)
        mean = X.mean(axis=0)
        init, n_init = self._runs(init, mean)
        blocks = make_blocks(X, self._block_size(X.shape[0], X.shape[1]), shift=mean, dtype=dtype)
        res = kmeans_fit(key, blocks, self.n_clusters, init=init, max_iter=self.max_iter, tol=self.tol,
                         n_init=n_init, progress=self.progress)
        return self._store_fit(res, mean, X.shape[1], names)

    def _floats_per_row(self, n_features: int) -> int:
        """Working floats per row of a block (sizes the blocks)."""
        trials = 2 + int(np.log(self.n_clusters))
        return max(n_features + 2 * self.n_clusters, trials * (n_features + 1),
                   self.n_clusters * (n_features + 1)) + 2

    def _block_size(self, n_samples: int, n_features: int) -> int:
        return choose_block_size(n_samples, self._floats_per_row(n_features))

    def _blocks(self, X):
        """Validate new data and block it around the centers' mean."""
        check_is_fitted(self, "cluster_centers_")
        X = check_array(X, n_features=self.n_features_in_, estimator=type(self).__name__)
        shift = self.cluster_centers_.mean(axis=0)
        blocks = make_blocks(X, self._block_size(*X.shape), shift=shift, dtype=resolve_dtype(self.dtype))
        return blocks, jnp.asarray(self.cluster_centers_ - shift, blocks.X.dtype), X.shape[0]

    def predict(self, X):
        """Index of the nearest center for each row of ``X``."""
        blocks, centers, n = self._blocks(X)
        return np.asarray(labels_inertia(blocks, centers)[0][:n]).astype(np.int32)

    def fit_predict(self, X, y=None):
        """Fit, then return ``labels_``."""
        return self.fit(X).labels_

    def transform(self, X):
        """Euclidean distances of each row of ``X`` to each center, (n_samples, n_clusters)."""
        blocks, centers, n = self._blocks(X)
        return np.asarray(center_distances(blocks, centers)[:n], dtype=np.float64)

    def fit_transform(self, X, y=None):
        """Fit, then return ``transform(X)``."""
        return self.fit(X).transform(X)

    def score(self, X, y=None):
        """Negative inertia of ``X`` with respect to the fitted centers."""
        blocks, centers, _ = self._blocks(X)
        return -float(labels_inertia(blocks, centers)[1])
