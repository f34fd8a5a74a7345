r"""Control over what XLA computes once: :func:`materialize`.

XLA fuses an elementwise producer into each of its consumers, recomputing it
there. That is free for a cheap producer with one consumer, but a sampler's
per-subject quantities (a log acceptance ratio, a draw's inverse error
function) feed several consumers each: the new draws, the acceptance
probabilities, the subjects' carried terms, the model evaluated at every visit.
Recomputed in each, they made up most of an SAEM iteration on CPU.
``jax.lax.optimization_barrier`` does not help there: XLA:CPU removes it
before fusion.

Two ways to compute a value once:

* :func:`materialize` writes it through a reduction, a fusion root that the CPU
  compiler does not duplicate into its consumers: the sum of ``x`` and a zero,
  which is ``x`` exactly. Costs one more pass over ``x``.
* :func:`materialize_bounded`, for values known to be bounded, ends their
  computation with a floating-point remainder by the bound, an identity there.
  XLA counts a remainder as expensive and does not duplicate an expensive
  operation into several consumers; it stays in the producer's loop, so it
  costs almost nothing (the normal draws of :mod:`lateo.core.rng`).
"""

from __future__ import annotations

import jax.numpy as jnp
from jax import lax


def materialize(x):
    """``x``, computed once into a buffer that its consumers read (bitwise ``x``, but ``-0.0`` becomes ``0.0``).

    Use it on an expensive elementwise intermediate with several consumers (see the module
    docstring); elsewhere it only adds a pass over ``x``.
    """
    x = jnp.asarray(x)
    return jnp.sum(jnp.stack([x, jnp.zeros_like(x)]), axis=0, dtype=x.dtype)


def materialize_bounded(x, bound: float):
    """``x`` (floating, with ``|x| < bound``: exactly ``x``), computed once: see the module docstring."""
    x = jnp.asarray(x)
    return lax.rem(x, jnp.asarray(bound, x.dtype))
