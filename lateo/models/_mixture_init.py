"""Initial parameters and priors for Gaussian mixtures (the estimator's helpers).

Initial responsibilities follow scikit-learn's ``init_params``: ``"kmeans"``
(labels of one k-means run), ``"k-means++"`` and ``"random_from_data"``
(one-hot at K chosen rows: means at those rows, covariances
``reg_covar``), ``"random"`` (uniform random, normalised per row). The
initial parameters are the maximum-likelihood M-step of those
responsibilities; user-given ``weights_init``, ``means_init`` and
``precisions_init`` then override them.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from ..core.blocks import Blocks, to_block_rows
from ..families import conjugate, gaussian
from . import _kmeans_lloyd as _kmeans

from ._mixture_em import (
    MixtureHyper,
    MixtureParams,
    m_step,
    stats_from_labels,
    stats_from_points,
    stats_from_random_resp,
)

INIT_METHODS = ("k-means++", "kmeans", "random", "random_from_data")
PRIOR_KEYS = ("weight_concentration", "mean", "mean_precision", "degrees_of_freedom", "scale")

_ml_m_step = jax.jit(m_step, static_argnames=("covariance_type",))


def _precision_shape(covariance_type, k, d):
    return {"full": (k, d, d), "tied": (d, d), "diag": (k, d), "spherical": (k,)}[covariance_type]


def _as_array(value, name, shape):
    try:
        arr = np.array(value, dtype=np.float64)  # a copy: the caller's array is never touched
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be an array of numbers ({exc}).") from exc
    if arr.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {arr.shape}.")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite values.")
    return arr


def _check_weights(w, k):
    w = _as_array(w, "weights_init", (k,))
    if np.any(w < 0) or np.any(w > 1):
        raise ValueError(f"weights_init must lie in [0, 1], got min={w.min():.5g}, max={w.max():.5g}.")
    if not np.isclose(w.sum(), 1.0, rtol=0, atol=1e-6):
        raise ValueError(f"weights_init must sum to 1, got sum(weights_init) = {w.sum():.5f}; normalise it with w / w.sum().")
    return w


def _check_precisions(p, covariance_type, k, d):
    p = _as_array(p, "precisions_init", _precision_shape(covariance_type, k, d))
    if covariance_type in ("diag", "spherical"):
        if np.any(p <= 0):
            raise ValueError(f"precisions_init must be positive for covariance_type={covariance_type!r}.")
        return p
    mats = p.reshape(-1, d, d)
    if not np.allclose(mats, np.swapaxes(mats, -1, -2)):
        raise ValueError(f"precisions_init must be symmetric for covariance_type={covariance_type!r}.")
    if np.any(np.linalg.eigvalsh(mats) <= 0):
        raise ValueError(f"precisions_init must be positive definite for covariance_type={covariance_type!r}.")
    return p


def check_user_init(est, n_features, dtype):
    """Validated copies of ``weights_init``, ``means_init``, ``precisions_init``."""
    k, ct = est.n_components, est.covariance_type
    w = None if est.weights_init is None else _check_weights(est.weights_init, k)
    m = None if est.means_init is None else _as_array(est.means_init, "means_init", (k, n_features))
    p = None if est.precisions_init is None else _check_precisions(est.precisions_init, ct, k, n_features)
    return w, m, p


def _precision_cholesky_from_precisions(p, covariance_type):
    if gaussian.uses_vech(covariance_type):
        return np.linalg.cholesky(p)  # lower L with P = L L^T, as scikit-learn does
    return np.sqrt(p)


def _resp_stats(est, key, blocks: Blocks):
    """Statistics of the initial responsibilities chosen by ``init_params``."""
    k, ct, method = est.n_components, est.covariance_type, est.init_params
    if method == "kmeans":
        labels = _kmeans.kmeans_fit(key, blocks, k, n_init=1)[1]
        return stats_from_labels(blocks, to_block_rows(np.asarray(labels, np.int32), blocks), k, ct)
    if method == "random":
        return stats_from_random_resp(key, blocks, k, ct)
    if method == "k-means++":
        points = _kmeans.kmeans_plusplus(key, blocks, k)[0]
    else:
        points = _kmeans.random_rows(key, blocks, k)
    return stats_from_points(points, ct)


def initial_params(est, key, blocks: Blocks, user_init, shift, hyper: MixtureHyper) -> MixtureParams:
    """Initial mixture parameters (centred coordinates) for one restart."""
    w, m, p = user_init
    dtype = blocks.X.dtype
    ct = est.covariance_type
    if w is not None and m is not None and p is not None:  # nothing left to initialise
        dim = blocks.X.shape[-1]
        k = est.n_components
        stats = stats_from_points(jnp.zeros((k, dim), dtype), ct)
    else:
        stats = _resp_stats(est, key, blocks)
    params = _ml_m_step(stats, MixtureHyper(hyper.reg_covar, None), covariance_type=ct)
    weights = params.weights / jnp.sum(params.weights) if w is None else jnp.asarray(w, dtype)
    means = params.means if m is None else jnp.asarray(m - shift, dtype)
    cov, prec_chol = params.covariances, params.precisions_cholesky
    if p is not None:
        prec_chol = jnp.asarray(_precision_cholesky_from_precisions(p, ct), dtype)
        cov = gaussian.covariances_from_precisions_cholesky(prec_chol, ct)
    return MixtureParams(weights, means, cov, prec_chol)


def build_prior(prior, X, shift, n_components, covariance_type, dtype):
    """The conjugate prior in centred coordinates, or ``None`` for maximum likelihood."""
    if prior is None:
        return None
    if isinstance(prior, str):
        if prior != "default":
            raise ValueError(f"prior must be None, 'default' or a dict of hyper-parameters, got {prior!r}.")
        overrides = {}
    elif isinstance(prior, dict):
        unknown = set(prior) - set(PRIOR_KEYS)
        if unknown:
            raise ValueError(f"prior has unknown keys {sorted(unknown)}; valid keys are {list(PRIOR_KEYS)}.")
        overrides = dict(prior)
    else:
        raise ValueError(f"prior must be None, 'default' or a dict of hyper-parameters, got {type(prior).__name__}.")
    d = X.shape[1]
    cov = np.atleast_2d(np.cov(X, rowvar=False, bias=True))
    cov[np.diag_indices(d)] = np.maximum(np.diag(cov), 1e-10)
    values = conjugate.default_prior_arrays(jnp.asarray(cov), n_components, covariance_type)
    if "mean" in overrides:
        overrides["mean"] = _as_array(overrides["mean"], "prior['mean']", (d,)) - shift
    values.update(overrides)
    return _check_prior(values, n_components, d, covariance_type, dtype)


def _check_prior(values, k, d, covariance_type, dtype) -> conjugate.MixturePrior:
    alpha = np.broadcast_to(np.asarray(values["weight_concentration"], np.float64), (k,))
    if np.any(alpha < 1):
        raise ValueError("prior['weight_concentration'] must be >= 1 so that the MAP weights exist.")
    kappa = float(values["mean_precision"])
    if kappa <= 0:
        raise ValueError(f"prior['mean_precision'] must be > 0, got {kappa}.")
    nu = float(values["degrees_of_freedom"])
    low = d - 1 if gaussian.uses_vech(covariance_type) else 0
    if nu <= low:
        raise ValueError(f"prior['degrees_of_freedom'] must be > {low} for covariance_type={covariance_type!r}, got {nu}.")
    scale_shape = {"full": (d, d), "tied": (d, d), "diag": (d,), "spherical": ()}[covariance_type]
    scale = _as_array(values["scale"], "prior['scale']", scale_shape)
    if (scale_shape == (d, d) and np.any(np.linalg.eigvalsh(scale) <= 0)) or (scale_shape != (d, d) and np.any(scale <= 0)):
        raise ValueError("prior['scale'] must be positive (definite).")
    mean = _as_array(values["mean"], "prior['mean']", (d,))
    as_j = partial(jnp.asarray, dtype=dtype)
    niw = conjugate.NormalInverseWishart(as_j(mean), as_j(kappa), as_j(nu), as_j(scale))
    return conjugate.MixturePrior(as_j(alpha), niw)
