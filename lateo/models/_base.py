"""What every lateo estimator shares: scikit-learn's parameter protocol.

``get_params``/``set_params`` read the keyword arguments of ``__init__``, which
store their values unchanged (scikit-learn's convention, so ``clone`` and
grid searches work); validation happens in ``fit``.
"""

from __future__ import annotations

import inspect

import numpy as np

from ..exceptions import NotFittedError


class ParamsMixin:
    """``get_params``/``set_params``/``__repr__`` from the ``__init__`` signature.

    ``_estimator_type`` ("density_estimator", "clusterer", ...) feeds
    ``__sklearn_tags__``, which scikit-learn's ``check_estimator`` and
    meta-estimators read; scikit-learn itself stays an optional dependency.
    """

    _estimator_type: str | None = None

    def __sklearn_tags__(self):
        from sklearn.utils import InputTags, Tags, TargetTags, TransformerTags

        transformer = TransformerTags(preserves_dtype=["float64"]) if hasattr(self, "transform") else None
        return Tags(
            estimator_type=self._estimator_type,
            target_tags=TargetTags(required=False),
            transformer_tags=transformer,
            input_tags=InputTags(),
        )

    @classmethod
    def _param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return sorted(p.name for p in sig.parameters.values() if p.name != "self" and p.kind != p.VAR_KEYWORD)

    def _store_init_args(self, values: dict) -> None:
        """Store every ``__init__`` argument unchanged (call with ``locals()``)."""
        for name in self._param_names():
            setattr(self, name, values[name])

    def get_params(self, deep: bool = True) -> dict:
        """Hyper-parameters as a dict (``deep`` is accepted for scikit-learn)."""
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params):
        """Set hyper-parameters by name; unknown names raise ``ValueError``."""
        valid = set(self._param_names())
        for name, value in params.items():
            if name not in valid:
                raise ValueError(f"Invalid parameter {name!r} for {type(self).__name__}; valid parameters are {sorted(valid)}.")
            setattr(self, name, value)
        return self

    def __repr__(self) -> str:
        sig = inspect.signature(type(self).__init__)
        changed = []
        for name in self._param_names():
            default = sig.parameters[name].default
            value = getattr(self, name)
            same = value is default or (not hasattr(value, "shape") and _safe_equal(value, default))
            if not same:
                changed.append(f"{name}={value!r}")
        return f"{type(self).__name__}({', '.join(changed)})"


def feature_names(X):
    """Column names of a DataFrame whose columns are all strings, else ``None``
    (scikit-learn's ``feature_names_in_`` rule)."""
    columns = getattr(X, "columns", None)
    if columns is None or not all(isinstance(c, str) for c in columns):
        return None
    return np.asarray(list(columns), dtype=object)


def _safe_equal(a, b) -> bool:
    try:
        return bool(a == b)
    except Exception:
        return False


def check_is_fitted(estimator, attribute: str) -> None:
    """Raise ``NotFittedError`` unless ``estimator`` has ``attribute``."""
    if not hasattr(estimator, attribute):
        raise NotFittedError(
            f"This {type(estimator).__name__} instance is not fitted yet; call 'fit' with appropriate arguments first."
        )
