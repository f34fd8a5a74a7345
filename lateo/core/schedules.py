"""Step-size schedules ``gamma_k`` for the statistics update.

``S_{k+1} = S_k + gamma_k (S_hat_k - S_k)``. Stochastic approximation needs
``sum gamma_k = inf`` and ``sum gamma_k^2 < inf`` (seed 000; Delyon, Lavielle
& Moulines 1999), which ``k^-alpha`` with ``1/2 < alpha <= 1`` satisfies.

Schedules are frozen dataclasses, hashable by value, so a jitted loop that
takes one as a static argument compiles once per schedule *value*.
Iterations ``k`` count from 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax.numpy as jnp


def _check_alpha(alpha: float) -> None:
    if not 0.5 < alpha <= 1.0:
        raise ValueError(
            f"alpha must lie in (0.5, 1] so that sum(gamma) diverges and "
            f"sum(gamma^2) converges; got alpha={alpha!r}."
        )


@dataclass(frozen=True)
class Constant:
    """``gamma_k = 1``: exact EM (the new statistics replace the old)."""

    exact = True

    def __call__(self, k):
        return jnp.ones_like(jnp.asarray(k, dtype=float))


@dataclass(frozen=True)
class PowerDecay:
    """``gamma_k = (k + offset)^-alpha`` (Robbins-Monro), ``1/2 < alpha <= 1``.

    ``offset >= 0`` delays the decay: ``gamma_1 = (1 + offset)^-alpha``.
    """

    alpha: float = 0.6
    offset: float = 0.0
    exact = False

    def __post_init__(self):
        _check_alpha(self.alpha)
        if self.offset < 0:
            raise ValueError(f"offset must be >= 0, got {self.offset!r}.")

    def __call__(self, k):
        k = jnp.asarray(k, dtype=float)
        return (k + self.offset) ** (-self.alpha)


@dataclass(frozen=True)
class BurnInThenDecay:
    """``gamma_k = 1`` for ``k <= burn_in``, then ``(k - burn_in)^-alpha``.

    The MCMC-SAEM schedule of seed 000: memoryless updates while the chain
    travels to the bulk of the posterior, then averaging.
    """

    burn_in: int
    alpha: float = 0.8
    exact = False

    def __post_init__(self):
        _check_alpha(self.alpha)
        if self.burn_in < 0:
            raise ValueError(f"burn_in must be >= 0, got {self.burn_in!r}.")

    def __call__(self, k):
        return burn_in_then_decay(k, self.burn_in, self.alpha)


def burn_in_then_decay(k, burn_in, alpha):
    """``1`` for ``k <= burn_in``, then ``(k - burn_in)^-alpha``; ``burn_in`` may be a traced array."""
    k = jnp.asarray(k, dtype=jnp.result_type(float))
    after = jnp.maximum(k - burn_in, 1.0)
    return jnp.where(k <= burn_in, 1.0, after ** (-alpha))
