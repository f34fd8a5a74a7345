"""Hidden Markov model estimators with hmmlearn's API.

``GaussianHMM`` here; the discrete, Poisson and Gaussian-mixture emissions
live beside it. All share :class:`lateo.models._hmm_base.BaseHMM` (the
fit loop, scoring, decoding, sampling) and the Baum-Welch model of
:mod:`lateo.models._hmm_em`; the Gaussian maths is the one of
:mod:`lateo.families.gaussian`, shared with the mixtures (seed 004,
lectures 1-3).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from .._validation import check_float, check_option
from ..core.blocks import choose_block_size, make_blocks
from ..families import gaussian
from . import _kmeans_lloyd
from ._hmm_base import BaseHMM
from ._mixture_init import build_prior


def _check_finite(seqs):
    for i, s in enumerate(seqs):
        if s.dtype.kind not in "biuf":
            raise ValueError(f"sequence {i} of X must hold numbers, got dtype {s.dtype}.")
        if not np.all(np.isfinite(s)):
            raise ValueError(f"sequence {i} of X contains NaN or infinite values; remove or impute them.")
    return [np.asarray(s, np.float64) for s in seqs]


def kmeans_centers(key, X, n_clusters: int, dtype, n_init: int = 10):
    """k-means++/Lloyd centres of the rows of ``X`` (already centred), the
    shared initialisation of every Gaussian-type HMM."""
    if X.shape[0] < n_clusters:
        raise ValueError(f"X has {X.shape[0]} observations, fewer than n_components={n_clusters}; "
                         "a Gaussian HMM needs at least one observation per state.")
    blocks = make_blocks(X, choose_block_size(X.shape[0], X.shape[1] + 3 * n_clusters), dtype=dtype)
    return _kmeans_lloyd.kmeans_fit(key, blocks, n_clusters, n_init=n_init).centers


def covariance_of_data(X, covariance_type: str, n_states: int, min_covar: float):
    """hmmlearn's initial covariances: ``cov(X) + min_covar I`` in the layout of the type."""
    dim = X.shape[1]
    cv = np.atleast_2d(np.cov(X, rowvar=False)) if X.shape[0] > 1 else np.zeros((dim, dim))
    cv = cv + min_covar * np.eye(dim)
    return {
        "full": np.tile(cv, (n_states, 1, 1)),
        "tied": cv,
        "diag": np.tile(np.diag(cv), (n_states, 1)),
        "spherical": np.full(n_states, np.diag(cv).mean()),
    }[covariance_type]


def covariance_shape(covariance_type: str, n_states: int, dim: int):
    return {"full": (n_states, dim, dim), "tied": (dim, dim), "diag": (n_states, dim), "spherical": (n_states,)}[covariance_type]


class GaussianHMM(BaseHMM):
    """Hidden Markov model with Gaussian emissions (Baum-Welch on the statistics loop).

    Parameters
    ----------
    n_components : int, default=1
        Number of hidden states ``K``.
    covariance_type : {"diag", "full", "tied", "spherical"}, default="diag"
    min_covar : float, default=1e-3
        Added to the data covariance that initialises ``covars_``.
    reg_covar : float, default=1e-6
        Added to the covariance diagonals at every M-step (use 0 for plain
        maximum likelihood, as hmmlearn with ``covars_prior=0``).
    startprob_prior, transmat_prior : float or array, default=1.0
        Dirichlet concentrations (1 = maximum likelihood; zeros stay zero).
    prior : None, "default" or dict, default=None
        Normal-inverse-Wishart prior on the state means and covariances for
        MAP-EM (keys as in :class:`lateo.GaussianMixture`).
    algorithm : {"viterbi", "map"}, default="viterbi"
        Decoder used by ``predict``.
    random_state : int, numpy RNG or JAX key, optional
    n_iter : int, default=10
        Maximum Baum-Welch iterations.
    tol : float, default=1e-2
        Stop when the total log-likelihood gains less than ``tol``.
    params, init_params : str, default="stmc"
        Letters of the parameters to update / to initialise: "s" start
        probabilities, "t" transitions, "m" means, "c" covariances. Set the
        attributes (``startprob_``, ``transmat_``, ``means_``, ``covars_``)
        before ``fit`` and leave their letters out of ``init_params`` to
        start from them; leave letters out of ``params`` to freeze them.
    implementation : {"auto", "log", "scaling", "parallel"}, default="auto"
        How the forward-backward and Viterbi passes run.
        "log" and "scaling" are hmmlearn's names. Both run lateo's
        sequential engine: the scaled recursions, with an exact log-space
        fallback when a normaliser underflows (:mod:`lateo.inference.hmm`).
        "parallel" runs the parallel-in-time associative scans (depth
        ``O(log T)``). "auto" runs the sequential engine on the CPU and the
        parallel scans for sequences of at least
        ``lateo.inference.hmm.PARALLEL_MIN_STEPS`` (2048) steps on a GPU or
        TPU. All four give the same results to rounding.
    dtype : {"float64", "float32"}, default="float64"
    progress : {"auto", True, False}, default="auto"
    em_algorithm : {"batch", "online"}, default="batch"
        Baum-Welch or online EM over minibatches of sequences
        (:mod:`lateo.models._hmm_online`); ``fit(..., algorithm=...)``
        overrides it for one call (``algorithm`` above is the decoder).
    batch_size : int, default=16
        Sequences per online-EM minibatch.
    step_size : schedule, optional
        Online EM's ``gamma_k`` (``None``: 1 for 20 steps, then ``(k - 20)^-0.6``).

    Attributes
    ----------
    startprob_ (K,), transmat_ (K, K), means_ (K, D), covars_ (K, D, D)
        ``covars_`` is returned as full matrices whatever the type (as
        hmmlearn); it can be set in the type's own shape.
    converged_, n_iter_, lower_bounds_ (total log-likelihood per iteration)
    """

    _emission_letters = "mc"
    _center = True

    def __init__(
        self,
        n_components=1,
        *,
        covariance_type="diag",
        min_covar=1e-3,
        reg_covar=1e-6,
        startprob_prior=1.0,
        transmat_prior=1.0,
        prior=None,
        algorithm="viterbi",
        random_state=None,
        n_iter=10,
        tol=1e-2,
        params="stmc",
        init_params="stmc",
        implementation="auto",
        dtype="float64",
        progress="auto",
        em_algorithm="batch",
        batch_size=16,
        step_size=None,
    ):
        self._store_init_args(locals())

    @property
    def covars_(self):
        """Covariances as full (K, D, D) matrices (hmmlearn's ``covars_``)."""
        covs = self._covars_
        k, d = self.n_components, self.means_.shape[1]
        return np.asarray(gaussian.full_covariances(jnp.asarray(covs), self.covariance_type, k, d))

    @covars_.setter
    def covars_(self, value):
        self._covars_ = np.array(value, dtype=np.float64)

    def _validate_hyperparameters(self):
        super()._validate_hyperparameters()
        check_option(self.covariance_type, name="covariance_type", options=gaussian.COVARIANCE_TYPES)
        check_float(self.min_covar, name="min_covar")
        check_float(self.reg_covar, name="reg_covar")

    def _family(self):
        return gaussian.GaussianFamily(self.covariance_type)

    def _check_sequences(self, seqs):
        return _check_finite(seqs)

    def _emission_hyper(self, X, dtype):
        prior = None
        if self.prior is not None:
            prior = build_prior(self.prior, X, X.mean(axis=0), self.n_components, self.covariance_type, dtype).components
        return gaussian.GaussianHyper(jnp.asarray(self.reg_covar, dtype), prior)

    def _given_covariances(self, dim):
        shape = covariance_shape(self.covariance_type, self.n_components, dim)
        covs = getattr(self, "_covars_", None)
        if covs is None:
            raise ValueError("init_params lacks 'c', so covars_ must be set before fit.")
        if covs.shape != shape:
            raise ValueError(f"covars_ must have shape {shape} for covariance_type={self.covariance_type!r}, got {covs.shape}.")
        if self.covariance_type in ("full", "tied") and np.any(np.linalg.eigvalsh(covs.reshape(-1, dim, dim)) <= 0):
            raise ValueError("covars_ must be symmetric positive definite.")
        if self.covariance_type in ("diag", "spherical") and np.any(covs <= 0):
            raise ValueError("covars_ must be positive.")
        return covs

    def _initial_emission(self, key, X, shift, dtype):
        k, dim = self.n_components, X.shape[1]
        if "m" in self.init_params:
            means = kmeans_centers(key, X - shift, k, dtype)
        else:
            given = np.array(getattr(self, "means_", None), dtype=np.float64)
            if given.shape != (k, dim):
                raise ValueError(f"init_params lacks 'm', so means_ must be set with shape {(k, dim)}; got {given.shape}.")
            means = jnp.asarray(given - shift, dtype)
        if "c" in self.init_params:
            covs = covariance_of_data(X, self.covariance_type, k, self.min_covar)
        else:
            covs = self._given_covariances(dim)
        covs = jnp.asarray(covs, dtype)
        return gaussian.GaussianComponents(means, covs, gaussian.precisions_cholesky(covs, self.covariance_type))

    def _store_emission(self, emission, shift):
        self.means_ = np.asarray(emission.means, np.float64) + shift
        self._covars_ = np.asarray(emission.covariances, np.float64)

    def _scoring_shift(self):
        return self.means_.mean(axis=0)

    def _emission_from_attributes(self, shift, dtype):
        covs = jnp.asarray(self._covars_, dtype)
        return gaussian.GaussianComponents(jnp.asarray(self.means_ - shift, dtype), covs,
                                           gaussian.precisions_cholesky(covs, self.covariance_type))

    def _n_emission_parameters(self) -> int:
        k, dim = self.means_.shape
        count = 0
        if "m" in self.params:
            count += k * dim
        if "c" in self.params:
            count += gaussian.n_covariance_parameters(self.covariance_type, k, dim)
        return count


__all__ = ["GaussianHMM"]
