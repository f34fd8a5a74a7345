"""GMMHMM: hidden Markov model with Gaussian-mixture emissions (hmmlearn's API).

Each state emits from its own mixture of ``n_mix`` Gaussians; Baum-Welch
treats the (state, component) pair as the latent variable (Rabiner 1989,
section IV-A; seed 004, lectures 2-3). The maths is
:mod:`lateo.families.gaussian_mixture`, itself the Gaussian family of the
mixtures applied to the ``K * n_mix`` pairs; the estimator shares the fit
loop, scoring, decoding and sampling of
:class:`lateo.models._hmm_base.BaseHMM`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from .._validation import check_float, check_int, check_option
from ..families import gaussian
from ..families import gaussian_mixture as gm
from ..families.conjugate import NormalInverseWishart
from ._hmm_base import BaseHMM, check_stochastic
from .hmm import _check_finite, covariance_of_data, kmeans_centers
from .hmm_discrete import broadcast_prior


def covars_shape(covariance_type: str, n_states: int, n_mix: int, dim: int):
    """hmmlearn's GMMHMM ``covars_`` shape (tied: one matrix per state)."""
    return {"full": (n_states, n_mix, dim, dim), "diag": (n_states, n_mix, dim), "spherical": (n_states, n_mix),
            "tied": (n_states, dim, dim)}[covariance_type]


def ml_covars_priors(covariance_type: str, n_mix: int, dim: int):
    """``(covars_prior, covars_weight)`` that make hmmlearn's GMMHMM M-step maximum likelihood.

    hmmlearn's own defaults are these except for ``spherical``, where it
    uses ``-(n_mix + 2) / 2`` (ML needs ``-(n_features + 2) / 2``).
    """
    return {"full": (0.0, -(dim + 2.0)), "tied": (0.0, -(n_mix + dim + 1.0)), "diag": (-1.5, 0.0),
            "spherical": (-(dim + 2.0) / 2.0, 0.0)}[covariance_type]


def conjugate_prior(covariance_type, means_prior, means_weight, covars_prior, covars_weight, dim):
    """hmmlearn's prior arrays (broadcast to its shapes) as a per-pair
    :class:`~lateo.families.conjugate.NormalInverseWishart` (``nu = 2 alpha``,
    ``Psi = 2 beta`` for diag; ``nu = 2 alpha / D``, ``psi = 2 beta / D`` for
    spherical; ``Psi = covars_prior^T`` for full and tied)."""
    if covariance_type == "diag":
        return NormalInverseWishart(means_prior, means_weight, 2.0 * covars_prior, 2.0 * covars_weight)
    if covariance_type == "spherical":
        return NormalInverseWishart(means_prior, means_weight, 2.0 * covars_prior / dim, 2.0 * covars_weight / dim)
    return NormalInverseWishart(means_prior, means_weight, covars_weight, np.swapaxes(covars_prior, -1, -2))


class GMMHMM(BaseHMM):
    """Hidden Markov model with Gaussian-mixture emissions (Baum-Welch on the statistics loop).

    Parameters
    ----------
    n_components : int, default=1
        Number of hidden states ``K``.
    n_mix : int, default=1
        Gaussian components per state ``M``.
    covariance_type : {"diag", "full", "tied", "spherical"}, default="diag"
        As hmmlearn's GMMHMM: ``tied`` shares one full covariance among the
        components *of each state*.
    min_covar : float, default=1e-3
        Added to the data covariance that initialises ``covars_``.
    reg_covar : float, default=1e-6
        Added to the covariance diagonals at every M-step (0 = hmmlearn).
    startprob_prior, transmat_prior : float or array, default=1.0
        Dirichlet concentrations (1 = maximum likelihood).
    weights_prior : float or array (K, M), default=1.0
        Dirichlet concentrations of each state's mixture weights.
    means_prior, means_weight : float or array, default=0.0
        Normal prior ``mu_km ~ N(means_prior, Sigma_km / means_weight)``
        (weight 0: none).
    covars_prior, covars_weight : float or array, optional
        hmmlearn's covariance prior: inverse-Wishart scale and degrees of
        freedom (full, tied) or inverse-gamma ``alpha``, ``beta`` (diag,
        spherical). None gives maximum likelihood
        (:func:`ml_covars_priors`).
    algorithm, random_state, n_iter, tol, implementation, dtype, progress
        As for :class:`lateo.models.hmm.GaussianHMM`.
    params, init_params : str, default="stmcw"
        Letters "s", "t", "m" (means), "c" (covariances), "w" (weights).
        Set ``weights_``, ``means_``, ``covars_`` before ``fit`` and leave
        their letters out of ``init_params`` to start from them.

    Attributes
    ----------
    startprob_ (K,), transmat_ (K, K), weights_ (K, M), means_ (K, M, D),
    covars_ (full (K, M, D, D), diag (K, M, D), spherical (K, M), tied (K, D, D)),
    converged_, n_iter_, lower_bounds_ (log-likelihood plus log-prior kernel)

    Notes
    -----
    Initialisation as hmmlearn: k-means of the data into ``K`` states, then
    k-means of each state's points into ``M`` component means (a state with
    fewer than ``M`` points draws its means from a Gaussian around the
    centroid), weights ``1/M``, covariances ``cov(X) + min_covar I``.

    Deviation from hmmlearn: its covariance update uses the scatter around
    the *previous* means; lateo's is the exact EM (MAP) update around the
    new ones, ``Sigma_hmmlearn = Sigma_lateo + (mu_new - mu_old)(mu_new -
    mu_old)^T`` at maximum likelihood (see
    :mod:`lateo.families.gaussian_mixture`).
    """

    _emission_letters = "mcw"
    _center = True

    def __init__(self, n_components=1, *, n_mix=1, covariance_type="diag", min_covar=1e-3, reg_covar=1e-6,
                 startprob_prior=1.0, transmat_prior=1.0, weights_prior=1.0, means_prior=0.0, means_weight=0.0,
                 covars_prior=None, covars_weight=None, algorithm="viterbi", random_state=None, n_iter=10, tol=1e-2,
                 params="stmcw", init_params="stmcw", implementation="auto", dtype="float64", progress="auto"):
        self._store_init_args(locals())

    def _validate_hyperparameters(self):
        super()._validate_hyperparameters()
        check_int(self.n_mix, name="n_mix", low=1)
        check_option(self.covariance_type, name="covariance_type", options=gaussian.COVARIANCE_TYPES)
        check_float(self.min_covar, name="min_covar")
        check_float(self.reg_covar, name="reg_covar")

    def _family(self):
        return gm.GaussianMixtureFamily(self.n_mix, self.covariance_type)

    def _check_sequences(self, seqs):
        return _check_finite(seqs)

    # ------------------------------------------------------------ start
    def _kmeans_means(self, key, Xc, dtype):
        """hmmlearn's start: k-means into states, then into components within each state."""
        k, m = self.n_components, self.n_mix
        k_main, k_rest = jax.random.split(key)
        centers = np.asarray(kmeans_centers(k_main, Xc, k, dtype))
        labels = np.argmin(((Xc[:, None, :] - centers[None]) ** 2).sum(-1), axis=1)
        cv = covariance_of_data(Xc, "full", 1, self.min_covar)[0]
        means = []
        for state, sub in enumerate(jax.random.split(k_rest, k)):
            members = Xc[labels == state]
            if members.shape[0] >= m:
                means.append(np.asarray(kmeans_centers(sub, members, m, dtype)))
            else:
                means.append(np.asarray(jax.random.multivariate_normal(sub, centers.mean(0), cv, (m,), dtype=dtype)))
        return np.stack(means)

    def _given_covars(self, dim):
        shape = covars_shape(self.covariance_type, self.n_components, self.n_mix, dim)
        if not hasattr(self, "covars_"):
            raise ValueError("init_params lacks 'c', so covars_ must be set before fit.")
        covs = np.array(self.covars_, dtype=np.float64)
        if covs.shape != shape:
            raise ValueError(f"covars_ must have shape {shape} for covariance_type={self.covariance_type!r} "
                             f"(hmmlearn's GMMHMM layout), got {covs.shape}.")
        if self.covariance_type in ("full", "tied"):
            mats = covs.reshape(-1, dim, dim)
            if not np.allclose(mats, np.swapaxes(mats, -1, -2)) or np.any(np.linalg.eigvalsh(mats) <= 0):
                raise ValueError("covars_ must hold symmetric positive-definite matrices.")
        elif not np.all(np.isfinite(covs)) or np.any(covs <= 0):
            raise ValueError("covars_ must be positive.")
        return covs

    def _given_means(self, dim):
        shape = (self.n_components, self.n_mix, dim)
        if not hasattr(self, "means_"):
            raise ValueError("init_params lacks 'm', so means_ must be set before fit.")
        means = np.array(self.means_, dtype=np.float64)
        if means.shape != shape:
            raise ValueError(f"means_ must have shape {shape} (n_components, n_mix, n_features), got {means.shape}.")
        return means

    def _initial_emission(self, key, X, shift, dtype):
        k, m, dim = self.n_components, self.n_mix, X.shape[1]
        self._prior_arrays(dim)  # validate the priors before the (compiled) k-means
        if "w" in self.init_params:
            weights = np.full((k, m), 1.0 / m)
        elif not hasattr(self, "weights_"):
            raise ValueError("init_params lacks 'w', so weights_ must be set before fit.")
        else:
            weights = check_stochastic(self.weights_, "weights_", (k, m))
        if "c" in self.init_params:
            base = "full" if self.covariance_type == "tied" else self.covariance_type
            n = k if self.covariance_type == "tied" else k * m
            covs = covariance_of_data(X, base, n, self.min_covar).reshape(covars_shape(self.covariance_type, k, m, dim))
        else:
            covs = self._given_covars(dim)
        means = self._kmeans_means(key, X - shift, dtype) if "m" in self.init_params else self._given_means(dim) - shift
        return self._params(weights, means, covs, dtype)

    def _params(self, weights, means, covs, dtype):
        covs = jnp.asarray(covs, dtype)
        prec = gaussian.precisions_cholesky(covs, gm.component_type(self.covariance_type))
        return gm.GaussianMixtureParams(jnp.asarray(weights, dtype), jnp.asarray(means, dtype), covs, prec)

    # ------------------------------------------------------------ priors
    def _covars_priors(self, dim):
        k, m, ctype = self.n_components, self.n_mix, self.covariance_type
        ml_prior, ml_weight = ml_covars_priors(ctype, m, dim)
        prior_shape = covars_shape(ctype, k, m, dim)
        weight_shape = {"full": (k, m), "tied": (k,), "diag": (k, m, dim), "spherical": (k, m)}[ctype]
        prior = broadcast_prior(ml_prior if self.covars_prior is None else self.covars_prior, prior_shape, "covars_prior")
        weight = broadcast_prior(ml_weight if self.covars_weight is None else self.covars_weight, weight_shape,
                            "covars_weight")
        is_ml = np.all(prior == ml_prior) and np.all(weight == ml_weight)
        return prior, weight, is_ml

    def _prior_arrays(self, dim):
        """hmmlearn's prior arrays broadcast to its shapes (validated), and whether they are ML."""
        k, m = self.n_components, self.n_mix
        weights_prior = broadcast_prior(self.weights_prior, (k, m), "weights_prior")
        means_prior = broadcast_prior(self.means_prior, (k, m, dim), "means_prior")
        means_weight = broadcast_prior(self.means_weight, (k, m), "means_weight")
        if np.any(means_weight < 0):
            raise ValueError("means_weight must be non-negative.")
        covars_prior, covars_weight, is_ml = self._covars_priors(dim)
        return weights_prior, means_prior, means_weight, covars_prior, covars_weight, is_ml and not means_weight.any()

    def _emission_hyper(self, X, dtype):
        dim = X.shape[1]
        weights_prior, means_prior, means_weight, covars_prior, covars_weight, is_ml = self._prior_arrays(dim)
        prior = None
        if not is_ml:
            shift = X.mean(axis=0)
            prior = conjugate_prior(self.covariance_type, means_prior - shift, means_weight, covars_prior,
                                    covars_weight, dim)
            prior = jax.tree.map(lambda a: jnp.asarray(a, dtype), prior)
        return gm.GaussianMixtureHyper(jnp.asarray(weights_prior, dtype), jnp.asarray(self.reg_covar, dtype), prior)

    # ------------------------------------------------------------ attributes
    def _store_emission(self, emission, shift):
        self.weights_ = np.asarray(emission.weights, np.float64)
        self.means_ = np.asarray(emission.means, np.float64) + shift
        self.covars_ = np.asarray(emission.covariances, np.float64)

    def _scoring_shift(self):
        return self.means_.reshape(-1, self.means_.shape[-1]).mean(axis=0)

    def _emission_from_attributes(self, shift, dtype):
        return self._params(self.weights_, self.means_ - shift, self.covars_, dtype)

    def _n_emission_parameters(self) -> int:
        k, m, dim = self.means_.shape
        count = {"m": k * m * dim, "w": k * (m - 1)}
        cov = {"full": k * m * dim * (dim + 1) // 2, "diag": k * m * dim, "spherical": k * m,
               "tied": k * dim * (dim + 1) // 2}[self.covariance_type]
        count["c"] = cov
        return sum(v for letter, v in count.items() if letter in self.params)


__all__ = ["GMMHMM", "conjugate_prior", "covars_shape", "ml_covars_priors"]
