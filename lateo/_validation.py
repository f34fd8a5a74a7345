"""Input validation at the estimator boundary (DESIGN.md convention 8).

Errors name the argument, what was expected, what was received and the fix.
Nothing here modifies the caller's data: arrays are read and, where needed,
copied.
"""

from __future__ import annotations

import numbers

import jax
import numpy as np
from scipy import sparse as sp_sparse


def check_array(
    X, *, name: str = "X", min_samples: int = 1, n_features: int | None = None, estimator: str = "the model"
) -> np.ndarray:
    """Return ``X`` as a finite 2-D float64 numpy array, or raise.

    Accepts numpy arrays, nested lists and pandas DataFrames (numeric
    columns). Integer and boolean input is converted to float64. Raises
    ``TypeError`` for sparse matrices and non-numeric entries,
    ``ValueError`` for everything else (messages follow scikit-learn's
    wording where its conformance checks look for it).
    """
    if hasattr(X, "to_numpy") and hasattr(X, "columns"):
        X = X.to_numpy()
    if sp_sparse.issparse(X):
        raise TypeError(f"Sparse data is not supported for {name}; convert it to a dense array with {name}.toarray().")
    try:
        arr = np.asarray(X)
    except Exception as exc:  # ragged lists and the like
        raise ValueError(f"{name} must be a 2-D array of numbers; could not convert it ({exc}).") from exc
    if arr.dtype.kind == "c":
        raise ValueError(f"{name} contains complex values: Complex data not supported; pass real numbers.")
    if arr.dtype.kind not in "biuf":
        try:
            arr = arr.astype(np.float64)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"{name} must contain numbers only; converting dtype {arr.dtype} failed: {exc}.") from exc
    if arr.ndim != 2:
        hint = " Reshape your data with X.reshape(-1, 1) for a single feature or X.reshape(1, -1) for a single sample."
        raise ValueError(f"{name} must be a 2-D array of shape (n_samples, n_features); got {arr.ndim}-D with shape {arr.shape}.{hint}")
    if arr.shape[0] == 0:
        raise ValueError(f"{name} is empty: found array with 0 sample(s) (shape={arr.shape}) while a minimum of 1 is required.")
    if arr.shape[1] == 0:
        raise ValueError(f"{name} is empty: 0 feature(s) (shape={arr.shape}) while a minimum of 1 is required.")
    arr = np.asarray(arr, dtype=np.float64)
    if not np.all(np.isfinite(arr)):
        bad = int(np.sum(~np.isfinite(arr)))
        raise ValueError(f"{name} contains {bad} NaN or infinite value(s); remove or impute them before fitting.")
    if arr.shape[0] < min_samples:
        raise ValueError(f"{name} has n_samples={arr.shape[0]}, but at least {min_samples} are needed (one per component).")
    if n_features is not None and arr.shape[1] != n_features:
        raise ValueError(
            f"{name} has {arr.shape[1]} features, but {estimator} is expecting {n_features} features as input "
            "(the number it was fitted with)."
        )
    return arr


def check_int(value, *, name: str, low: int, high: int | None = None) -> int:
    """An integer in ``[low, high]``, or a clear ``ValueError``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer, got {value!r} of type {type(value).__name__}.")
    if value < low or (high is not None and value > high):
        span = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ValueError(f"{name} must be {span}, got {value}.")
    return int(value)


def check_float(value, *, name: str, low: float = 0.0, inclusive: bool = True, finite: bool = True) -> float:
    """A real number ``>= low`` (or ``> low``), finite unless ``finite=False``
    (NaN never passes), or a clear ``ValueError``."""
    bad_type = isinstance(value, bool) or not isinstance(value, numbers.Real)
    if bad_type or np.isnan(value) or (finite and not np.isfinite(value)):
        kind = "a finite number" if finite else "a number"
        raise ValueError(f"{name} must be {kind}, got {value!r}.")
    if value < low or (not inclusive and value == low):
        op = ">=" if inclusive else ">"
        raise ValueError(f"{name} must be {op} {low}, got {value}.")
    return float(value)


def check_option(value, *, name: str, options) -> str:
    """One of ``options``, or a ``ValueError`` listing them."""
    if not isinstance(value, str) or value not in options:
        raise ValueError(f"{name} must be one of {sorted(options)}, got {value!r}.")
    return value


def check_random_key(random_state) -> jax.Array:
    """Map ``random_state`` to a JAX PRNG key (DESIGN.md convention 4).

    ``None`` draws fresh entropy; an int gives the same key every time; a
    numpy ``RandomState``/``Generator`` is advanced by one draw; a JAX key is
    used as is.
    """
    if random_state is None:
        seed = int(np.random.default_rng().integers(2**31 - 1))
    elif isinstance(random_state, (numbers.Integral, np.integer)) and not isinstance(random_state, bool):
        seed = int(random_state)
        if seed < 0:
            raise ValueError(f"random_state must be a non-negative integer, got {seed}.")
    elif isinstance(random_state, np.random.RandomState):
        seed = int(random_state.randint(2**31 - 1))
    elif isinstance(random_state, np.random.Generator):
        seed = int(random_state.integers(2**31 - 1))
    elif isinstance(random_state, jax.Array):
        return random_state
    else:
        raise ValueError(
            f"random_state must be None, an int, a numpy RandomState/Generator or a JAX key; got {random_state!r}."
        )
    return jax.random.key(seed % (2**32))
