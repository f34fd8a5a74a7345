"""Sufficient-statistics pytrees: sums and counts that add.

Every EM-like algorithm in lateo moves a pytree ``S`` of sufficient statistics
(DESIGN.md section 1, seeds 000 and 004): sums such as ``sum_i r_ik x_i`` and
counts such as ``sum_i r_ik``, never means, so that statistics of disjoint
blocks, minibatches or partitions simply add. The helpers below act leaf by
leaf on any pytree (typically a NamedTuple of arrays).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def stats_add(a, b):
    """Leafwise sum ``a + b`` of two statistics pytrees of the same structure."""
    return jax.tree.map(jnp.add, a, b)


def stats_scale(s, factor):
    """Leafwise ``factor * s``; e.g. scale minibatch sums to the data size."""
    return jax.tree.map(lambda leaf: leaf * factor, s)


def stats_interpolate(s, s_hat, gamma):
    """The stochastic-approximation update ``S + gamma (S_hat - S)``.

    With ``gamma = 1`` this is exact EM's ``S = S_hat``; with a Robbins-Monro
    ``gamma_k`` it is online EM (Cappe & Moulines 2009) or the SAEM update of
    seed 000.
    """
    return jax.tree.map(lambda old, new: old + gamma * (new - old), s, s_hat)


def stats_zeros_like(s):
    """A statistics pytree of zeros with the structure, shapes and dtypes of ``s``.

    ``s`` may hold ``jax.ShapeDtypeStruct`` leaves (from ``jax.eval_shape``).
    """
    return jax.tree.map(lambda leaf: jnp.zeros(leaf.shape, leaf.dtype), s)
