r"""Unconstraining bijections for ADVI (Kucukelbir et al. 2017, sec. 2.3).

ADVI fits a Gaussian on :math:`\mathbb{R}^d`, so every constrained parameter
:math:`x = T(u)` is written as a smooth bijection of an unconstrained
:math:`u`. By the change of variables, the density of :math:`u` is

.. math:: \log p_u(u) = \log p_x(T(u)) + \log \lvert \det J_T(u) \rvert,

and the ELBO is maximised over :math:`q(u)` with this target.

==================  =======================  =====================================================
name                :math:`x = T(u)`         :math:`\log|\det J_T(u)|`
==================  =======================  =====================================================
``"real"``          :math:`u`                :math:`0`
``"positive"``      :math:`e^u`              :math:`\sum u`
``"softplus"``      :math:`\log(1 + e^u)`    :math:`\sum \log \sigma(u)`
``"unit_interval"`` :math:`\sigma(u)`        :math:`\sum \log \sigma(u) + \log \sigma(-u)`
``"simplex"``       stick-breaking           see :class:`StickBreaking`
==================  =======================  =====================================================

``"simplex"`` acts on the last axis of a leaf: a ``(..., K)`` simplex has a
``(..., K - 1)`` unconstrained image. Every transform maps a leaf of shape
``shape`` to ``unconstrained_shape(shape)`` and back.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np


@dataclass(frozen=True)
class Identity:
    """``"real"``: no constraint."""

    name = "real"

    def forward(self, u):
        return u

    def inverse(self, x):
        return x

    def log_det_jacobian(self, u):
        return jnp.zeros((), u.dtype)

    def unconstrained_shape(self, shape):
        return tuple(shape)

    def in_support(self, x) -> bool:
        return bool(np.all(np.isfinite(x)))


@dataclass(frozen=True)
class Exp:
    r"""``"positive"``: :math:`x = e^u`, :math:`\log|J| = \sum_i u_i`."""

    name = "positive"

    def forward(self, u):
        return jnp.exp(u)

    def inverse(self, x):
        return jnp.log(x)

    def log_det_jacobian(self, u):
        return jnp.sum(u)

    def unconstrained_shape(self, shape):
        return tuple(shape)

    def in_support(self, x) -> bool:
        return bool(np.all(np.isfinite(x)) and np.all(np.asarray(x) > 0))


@dataclass(frozen=True)
class Softplus:
    r"""``"softplus"``: :math:`x = \log(1 + e^u)`, :math:`dx/du = \sigma(u)`.

    Lighter-tailed than ``exp`` for large :math:`u` (linear growth), which
    keeps the ELBO's Monte Carlo estimate stable when a scale is weakly
    identified. The inverse is :math:`u = x + \log(1 - e^{-x})`.
    """

    name = "softplus"

    def forward(self, u):
        return jax.nn.softplus(u)

    def inverse(self, x):
        return x + jnp.log(-jnp.expm1(-x))

    def log_det_jacobian(self, u):
        return jnp.sum(jax.nn.log_sigmoid(u))

    def unconstrained_shape(self, shape):
        return tuple(shape)

    def in_support(self, x) -> bool:
        return bool(np.all(np.isfinite(x)) and np.all(np.asarray(x) > 0))


@dataclass(frozen=True)
class Sigmoid:
    r"""``"unit_interval"``: :math:`x = \sigma(u) \in (0, 1)`,
    :math:`\log|J| = \sum_i \log\sigma(u_i) + \log\sigma(-u_i)`."""

    name = "unit_interval"

    def forward(self, u):
        return jax.nn.sigmoid(u)

    def inverse(self, x):
        return jnp.log(x) - jnp.log1p(-x)

    def log_det_jacobian(self, u):
        return jnp.sum(jax.nn.log_sigmoid(u) + jax.nn.log_sigmoid(-u))

    def unconstrained_shape(self, shape):
        return tuple(shape)

    def in_support(self, x) -> bool:
        x = np.asarray(x)
        return bool(np.all(np.isfinite(x)) and np.all((x > 0) & (x < 1)))


@dataclass(frozen=True)
class StickBreaking:
    r"""``"simplex"``: stick-breaking map from :math:`\mathbb{R}^{K-1}` onto the open simplex.

    As in Stan (Stan Reference Manual, "Unit simplex"): for
    :math:`k = 1, \dots, K-1`,

    .. math::
        z_k = \sigma\big(u_k - \log(K - k)\big), \qquad
        x_k = \Big(1 - \sum_{j<k} x_j\Big) z_k, \qquad
        x_K = 1 - \sum_{j<K} x_j .

    The offset :math:`\log(K-k)` maps :math:`u = 0` to the uniform simplex
    point :math:`x = (1/K, \dots, 1/K)`. The Jacobian of
    :math:`u \mapsto x_{1:K-1}` is lower triangular, with diagonal
    :math:`\partial x_k / \partial u_k = (1 - \sum_{j<k} x_j) z_k (1 - z_k)`, so

    .. math::
        \log|\det J| = \sum_{k=1}^{K-1} \Big[\log z_k + \log(1 - z_k)
        + \log\Big(1 - \sum_{j<k} x_j\Big)\Big].

    Acts on the last axis; leading axes are batch axes.
    """

    name = "simplex"

    @staticmethod
    def _offsets(km1, dtype):
        return jnp.log(jnp.arange(km1, 0, -1, dtype=dtype))  # log(K - k), k = 1..K-1

    def _parts(self, u):
        z = jax.nn.sigmoid(u - self._offsets(u.shape[-1], u.dtype))
        # remaining stick before step k: prod_{j<k} (1 - z_j), computed in log space
        log1mz = jax.nn.log_sigmoid(-(u - self._offsets(u.shape[-1], u.dtype)))
        log_rest = jnp.cumsum(log1mz, axis=-1) - log1mz  # exclusive cumulative sum
        return z, log1mz, log_rest

    def forward(self, u):
        z, log1mz, log_rest = self._parts(u)
        head = jnp.exp(log_rest) * z
        last = jnp.exp(jnp.sum(log1mz, axis=-1, keepdims=True))
        return jnp.concatenate([head, last], axis=-1)

    def inverse(self, x):
        km1 = x.shape[-1] - 1
        rest = 1.0 - (jnp.cumsum(x[..., :-1], axis=-1) - x[..., :-1])  # 1 - sum_{j<k} x_j
        z = x[..., :-1] / rest
        return jnp.log(z) - jnp.log1p(-z) + self._offsets(km1, x.dtype)

    def log_det_jacobian(self, u):
        shifted = u - self._offsets(u.shape[-1], u.dtype)
        _, _, log_rest = self._parts(u)
        return jnp.sum(jax.nn.log_sigmoid(shifted) + jax.nn.log_sigmoid(-shifted) + log_rest)

    def unconstrained_shape(self, shape):
        if len(shape) == 0 or shape[-1] < 2:
            raise ValueError(
                f"a 'simplex' parameter needs a last axis of length K >= 2 (its K probabilities), got shape {shape}."
            )
        return tuple(shape[:-1]) + (shape[-1] - 1,)

    def in_support(self, x) -> bool:
        x = np.asarray(x)
        return bool(np.all(np.isfinite(x)) and np.all(x > 0) and np.allclose(x.sum(-1), 1.0, atol=1e-8))


TRANSFORMS = {t.name: t for t in (Identity(), Exp(), Softplus(), Sigmoid(), StickBreaking())}
"""The named transforms accepted in ``constraints``."""


def get_transform(spec, where: str = "constraints"):
    """A transform from its name (see the module table) or a transform object, or a clear error."""
    if isinstance(spec, str) and spec in TRANSFORMS:
        return TRANSFORMS[spec]
    if spec is None:
        return TRANSFORMS["real"]
    needed = ("forward", "inverse", "log_det_jacobian", "unconstrained_shape", "in_support")
    if not isinstance(spec, str) and all(hasattr(spec, m) for m in needed):
        return spec
    raise ValueError(
        f"{where}: unknown constraint {spec!r}; use one of {sorted(TRANSFORMS)} "
        "(or an object with forward/inverse/log_det_jacobian/unconstrained_shape/in_support)."
    )


@dataclass(frozen=True)
class Layout:
    """How a constrained pytree maps to one flat unconstrained vector (hashable, a jit static argument).

    Attributes
    ----------
    treedef : jax.tree_util.PyTreeDef
        Structure of the position pytree.
    shapes : tuple of tuple
        Constrained shape of every leaf.
    transforms : tuple
        The transform of every leaf.
    """

    treedef: object
    shapes: tuple
    transforms: tuple

    @property
    def sizes(self) -> tuple:
        return tuple(math.prod(t.unconstrained_shape(s)) for s, t in zip(self.shapes, self.transforms))

    @property
    def dim(self) -> int:
        return int(sum(self.sizes))

    def unflatten_unconstrained(self, flat):
        """Flat ``(d,)`` vector -> list of unconstrained leaves."""
        out, start = [], 0
        for shape, t, size in zip(self.shapes, self.transforms, self.sizes):
            out.append(flat[start : start + size].reshape(t.unconstrained_shape(shape)))
            start += size
        return out

    def constrain(self, flat):
        """``T(u)`` as a pytree, and :math:`\\log|\\det J_T(u)|`, for one flat ``(d,)`` vector."""
        leaves = self.unflatten_unconstrained(flat)
        xs = [t.forward(u) for t, u in zip(self.transforms, leaves)]
        ldj = sum((t.log_det_jacobian(u) for t, u in zip(self.transforms, leaves)), jnp.zeros((), flat.dtype))
        return jax.tree_util.tree_unflatten(self.treedef, xs), ldj

    def unconstrain(self, tree):
        """The flat unconstrained vector ``T^{-1}(x)`` of a constrained pytree."""
        leaves = self.treedef.flatten_up_to(tree)
        parts = [jnp.ravel(t.inverse(jnp.asarray(x))) for t, x in zip(self.transforms, leaves)]
        return jnp.concatenate(parts)

    def names(self) -> list:
        """A readable name per leaf (``"sigma"``, ``"[0]"``, ``"x"`` for a bare array)."""
        dummy = jax.tree_util.tree_unflatten(self.treedef, list(range(len(self.shapes))))
        paths = jax.tree_util.tree_flatten_with_path(dummy)[0]
        return [jax.tree_util.keystr(p).strip("[]'\"") or "x" for p, _ in paths]


def make_layout(init, constraints) -> Layout:
    """The :class:`Layout` of ``init`` under ``constraints``, checking that ``init`` is in the support.

    Parameters
    ----------
    init : pytree of arrays
        A point in the constrained space.
    constraints : None, str, transform or mapping
        ``None``: every leaf is real. A single name or transform: applied to
        every leaf. A mapping ``{top-level key: name or transform}`` (for a
        dict ``init``; integer keys index a tuple/list ``init``): applied to
        every leaf under that key; keys not named are real.
    """
    leaves, treedef = jax.tree_util.tree_flatten(init)
    shapes = tuple(tuple(np.shape(x)) for x in leaves)
    if constraints is None or isinstance(constraints, str) or not hasattr(constraints, "items"):
        transforms = (get_transform(constraints),) * len(leaves)
    else:
        transforms = _per_leaf(init, constraints)
    for name, shape, t, x in zip(Layout(treedef, shapes, transforms).names(), shapes, transforms, leaves):
        t.unconstrained_shape(shape)
        if not t.in_support(np.asarray(x)):
            raise ValueError(
                f"init[{name!r}] = {np.asarray(x)!r} is outside the support of its constraint {t.name!r}; "
                "pass a starting point inside it (positive values for 'positive'/'softplus', probabilities "
                "summing to 1 for 'simplex', finite values for 'real')."
            )
    return Layout(treedef, shapes, transforms)


def _top_key(entry):
    """The top-level key named by the first entry of a pytree path."""
    for attr in ("key", "idx", "name"):
        if hasattr(entry, attr):
            return getattr(entry, attr)
    return None


def _per_leaf(init, constraints) -> tuple:
    """One transform per leaf (in JAX's flattening order) from ``{top-level key: constraint}``."""
    paths = [p for p, _ in jax.tree_util.tree_flatten_with_path(init)[0]]
    keys = [_top_key(p[0]) if p else None for p in paths]
    if not isinstance(init, (dict, tuple, list)):
        raise ValueError(
            "constraints given as a mapping need a dict, tuple or list init whose top-level keys they name; "
            f"got init of type {type(init).__name__}. Pass a single constraint name instead."
        )
    unknown = [k for k in constraints if k not in keys]
    if unknown:
        raise ValueError(f"constraints names keys {unknown} that are not top-level keys of init {sorted(set(keys), key=str)}.")
    marks = {k: get_transform(v, f"constraints[{k!r}]") for k, v in constraints.items()}
    return tuple(marks.get(k, TRANSFORMS["real"]) for k in keys)
