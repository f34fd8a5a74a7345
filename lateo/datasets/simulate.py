"""Simulators: draw data from latent-variable models with known parameters.

Simulated data with known parameters is how lateo proves recovery
(DESIGN.md section 4): fit the model to ``X`` and compare the estimates with
the parameters that generated it.
"""

from __future__ import annotations

import numbers

import numpy as np

__all__ = ["make_gaussian_mixture"]

_COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")
# Random parameters: component standard deviations are drawn in this range,
# and weights from a symmetric Dirichlet with this concentration.
_SD_RANGE = (0.5, 1.5)
_DIRICHLET_ALPHA = 5.0
_MAX_TRIES = 1000


def make_gaussian_mixture(
    n_samples,
    *,
    weights=None,
    means=None,
    covariances=None,
    n_components=3,
    n_features=2,
    covariance_type="full",
    separation=3.0,
    random_state=None,
    return_params=False,
):
    r"""Draw samples from a Gaussian mixture.

    The model is :math:`z_i \sim \mathrm{Categorical}(w)`,
    :math:`x_i \mid z_i = k \sim \mathcal{N}(\mu_k, \Sigma_k)`.

    Parameters that are not given are drawn at random: weights from a
    symmetric Dirichlet(5), covariances with standard deviations in
    [0.5, 1.5] (random orientation for ``"full"``/``"tied"``), and means
    placed so that every two are at least ``separation`` times the largest
    component standard deviation apart.

    Parameters
    ----------
    n_samples : int
        Number of samples, >= 1.
    weights : array-like of shape (n_components,), optional
        Mixture weights: non-negative, summing to 1.
    means : array-like of shape (n_components, n_features), optional
        Component means.
    covariances : array-like, optional
        Component covariances, shaped by ``covariance_type`` as in
        scikit-learn: ``"full"`` (n_components, n_features, n_features),
        ``"tied"`` (n_features, n_features), ``"diag"``
        (n_components, n_features) variances, ``"spherical"``
        (n_components,) variances.
    n_components : int, default=3
        Number of components when no given parameter fixes it. Parameters
        that are given take precedence; they must agree with each other.
    n_features : int, default=2
        Number of features when no given parameter fixes it.
    covariance_type : {"full", "tied", "diag", "spherical"}, default="full"
        Structure of the covariances (given or drawn).
    separation : float, default=3.0
        For random means: minimum distance between two means, in units of
        the largest component standard deviation. Must be > 0.
    random_state : None, int, numpy Generator or RandomState
        Seed; the same seed gives the same data.
    return_params : bool, default=False
        Also return the parameters used, as a dict with keys ``weights``,
        ``means``, ``covariances`` and ``covariance_type``.

    Returns
    -------
    X : ndarray of shape (n_samples, n_features), float64
        The samples.
    y : ndarray of shape (n_samples,), int64
        The component of each sample.
    params : dict
        Only with ``return_params=True``.

    Examples
    --------
    >>> X, y = make_gaussian_mixture(500, n_components=2, random_state=0)
    >>> X.shape, y.shape
    ((500, 2), (500,))
    """
    n_samples = _check_count(n_samples, "n_samples")
    if covariance_type not in _COVARIANCE_TYPES:
        raise ValueError(f"covariance_type must be one of {list(_COVARIANCE_TYPES)}, got {covariance_type!r}.")
    if isinstance(separation, bool) or not isinstance(separation, numbers.Real) or not separation > 0:
        raise ValueError(f"separation must be a number > 0, got {separation!r}.")
    rng = _rng(random_state)
    weights, means, covariances = _as_arrays(weights, means, covariances)
    k, d = _infer_shape(weights, means, covariances, covariance_type, n_components, n_features)
    if weights is None:
        weights = rng.dirichlet(np.full(k, _DIRICHLET_ALPHA))
    _check_weights(weights)
    if covariances is None:
        covariances = _random_covariances(rng, k, d, covariance_type)
    chol = _cholesky_factors(covariances, covariance_type, k, d)
    if means is None:
        scale = float(max(np.linalg.norm(c, ord=2) for c in chol))  # largest sd
        means = _random_means(rng, k, d, separation * scale)
    y = rng.choice(k, size=n_samples, p=weights).astype(np.int64)
    X = np.empty((n_samples, d))
    for j in range(k):
        idx = np.flatnonzero(y == j)
        X[idx] = means[j] + rng.standard_normal((idx.size, d)) @ chol[j].T
    if return_params:
        params = {"weights": weights, "means": means, "covariances": covariances, "covariance_type": covariance_type}
        return X, y, params
    return X, y


def _check_count(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}.")
    return int(value)


def _rng(random_state) -> np.random.Generator:
    if isinstance(random_state, np.random.RandomState):
        return np.random.default_rng(random_state.randint(2**31 - 1))
    try:
        return np.random.default_rng(random_state)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"random_state must be None, a non-negative int or a numpy Generator/RandomState; got {random_state!r}."
        ) from exc


def _as_arrays(weights, means, covariances):
    out = []
    for name, value in (("weights", weights), ("means", means), ("covariances", covariances)):
        if value is None:
            out.append(None)
            continue
        try:
            arr = np.array(value, dtype=np.float64)  # a copy: the caller's array is never touched
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{name} must be an array of numbers ({exc}).") from exc
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{name} contains NaN or infinite values.")
        out.append(arr)
    return tuple(out)


def _expected_cov_shape(covariance_type: str, k, d) -> tuple:
    return {"full": (k, d, d), "tied": (d, d), "diag": (k, d), "spherical": (k,)}[covariance_type]


def _infer_shape(weights, means, covariances, covariance_type, n_components, n_features):
    """Number of components and features, from the given parameters first."""
    if weights is not None and weights.ndim != 1:
        raise ValueError(f"weights must be 1-D of shape (n_components,), got shape {weights.shape}.")
    if means is not None and means.ndim != 2:
        raise ValueError(f"means must be 2-D of shape (n_components, n_features), got shape {means.shape}.")
    cov_ndim = len(_expected_cov_shape(covariance_type, 0, 0))
    if covariances is not None and covariances.ndim != cov_ndim:
        expected = _expected_cov_shape(covariance_type, "n_components", "n_features")
        raise ValueError(
            f"covariances for covariance_type={covariance_type!r} must have shape {expected}, "
            f"got shape {covariances.shape}."
        )
    ks, ds = {}, {}
    if weights is not None:
        ks["weights"] = weights.shape[0]
    if means is not None:
        ks["means"], ds["means"] = means.shape
    if covariances is not None:
        shape = covariances.shape
        if covariance_type != "tied":
            ks["covariances"] = shape[0]
        if covariance_type in ("full", "diag"):
            ds["covariances"] = shape[-1]
        elif covariance_type == "tied":
            ds["covariances"] = shape[0]
    for what, found in (("n_components", ks), ("n_features", ds)):
        if len(set(found.values())) > 1:
            detail = ", ".join(f"{name} gives {value}" for name, value in found.items())
            raise ValueError(f"The given parameters disagree on {what}: {detail}.")
    k = next(iter(ks.values())) if ks else _check_count(n_components, "n_components")
    d = next(iter(ds.values())) if ds else _check_count(n_features, "n_features")
    if covariances is not None and covariances.shape != _expected_cov_shape(covariance_type, k, d):
        raise ValueError(
            f"covariances must have shape {_expected_cov_shape(covariance_type, k, d)} for "
            f"covariance_type={covariance_type!r} with {k} components and {d} features; got {covariances.shape}."
        )
    if k < 1 or d < 1:
        raise ValueError(f"Need at least one component and one feature, got {k} and {d}.")
    return k, d


def _check_weights(weights: np.ndarray) -> None:
    if np.any(weights < 0):
        raise ValueError(f"weights must be non-negative, got {weights}.")
    if not np.isclose(weights.sum(), 1.0, rtol=0, atol=1e-8):
        raise ValueError(f"weights must sum to 1, got sum {weights.sum()!r}; divide them by their sum.")


def _random_rotation(rng: np.random.Generator, d: int) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((d, d)))
    return q * np.sign(np.diag(r))


def _random_covariances(rng: np.random.Generator, k: int, d: int, covariance_type: str) -> np.ndarray:
    def full():
        q = _random_rotation(rng, d)
        return (q * rng.uniform(*_SD_RANGE, size=d) ** 2) @ q.T

    if covariance_type == "full":
        return np.stack([full() for _ in range(k)])
    if covariance_type == "tied":
        return full()
    if covariance_type == "diag":
        return rng.uniform(*_SD_RANGE, size=(k, d)) ** 2
    return rng.uniform(*_SD_RANGE, size=k) ** 2


def _cholesky_factors(covariances: np.ndarray, covariance_type: str, k: int, d: int) -> np.ndarray:
    """Lower Cholesky factors, shape (k, d, d); ValueError if not positive definite."""
    if covariance_type in ("diag", "spherical"):
        if np.any(covariances <= 0):
            raise ValueError(f"covariances ({covariance_type} variances) must be > 0.")
        variances = np.broadcast_to(covariances.reshape(k, -1), (k, d))
        return np.stack([np.diag(np.sqrt(v)) for v in variances])
    full = np.broadcast_to(covariances, (k, d, d))
    out = np.empty((k, d, d))
    for j in range(k):
        if not np.allclose(full[j], full[j].T, rtol=1e-10, atol=1e-12):
            raise ValueError(f"covariances[{j}] is not symmetric.")
        try:
            out[j] = np.linalg.cholesky(full[j])
        except np.linalg.LinAlgError:
            raise ValueError(f"covariances[{j}] is not positive definite.") from None
    return out


def _random_means(rng: np.random.Generator, k: int, d: int, min_distance: float) -> np.ndarray:
    """Means in a box, every pair at least ``min_distance`` apart (rejection sampling)."""
    half_width = min_distance * max(1.0, k ** (1.0 / d))
    means = np.empty((0, d))
    tries = 0
    while means.shape[0] < k:
        candidate = rng.uniform(-half_width, half_width, size=d)
        if means.shape[0] == 0 or np.min(np.linalg.norm(means - candidate, axis=1)) >= min_distance:
            means = np.vstack([means, candidate])
            continue
        tries += 1
        if tries % _MAX_TRIES == 0:  # crowded: enlarge the box
            half_width *= 1.5
    return means
