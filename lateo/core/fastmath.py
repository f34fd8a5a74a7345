r"""Double-precision elementary functions that vectorise on XLA:CPU.

XLA:CPU evaluates a double-precision ``exp`` at about 2 ns an element, 4x its
single-precision one; in the logistic progression model the exponential is
most of the cost of evaluating the model at every visit, three times per SAEM
iteration. :func:`exp` is plain arithmetic (a range reduction and a
polynomial), which the compiler vectorises and fuses with its consumers, at
the same accuracy as XLA's (within 2 ulp of numpy's ``exp`` over the whole
double range, ``tests/test_core_fastmath.py``). Other dtypes use ``jnp.exp``.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax import lax

_LOG2E = 1.0 / math.log(2.0)
# ln 2 split (Cody & Waite 1980): LN2_HI has trailing zero bits, so k * LN2_HI is exact for |k| < 2^11
_LN2_HI = 6.93147180369123816490e-01
_LN2_LO = 1.90821492927058770002e-10
_TAYLOR = tuple(1.0 / math.factorial(n) for n in range(13))  # |r| <= ln2 / 2: remainder < 2e-16 relative


def _pow2(k):
    """:math:`2^k` for integer-valued float64 ``k`` in the exponent range of normal numbers.

    Without a float-to-integer conversion (not vectorised on AVX2): the bits of the double
    :math:`2^{52} + k + 1023` end with the integer :math:`k + 1023`, which a shift by 52 moves into
    the exponent field, pushing the rest out."""
    bits = lax.bitcast_convert_type(k + (2.0**52 + 1023.0), jnp.int64)
    return lax.bitcast_convert_type(bits << 52, jnp.float64)


@jax.custom_jvp
def exp(x):
    r""":math:`e^x`: :math:`x = k \ln 2 + r`, :math:`|r| \le \tfrac12 \ln 2`, :math:`e^x = 2^k e^r` with
    :math:`e^r` by its degree-12 Taylor polynomial (Horner). :math:`2^k` is applied as two factors,
    so overflow gives ``inf`` and underflow 0 (or a subnormal where the CPU keeps them), as
    ``jnp.exp``; NaN propagates through the polynomial."""
    x = jnp.asarray(x)
    if x.dtype != jnp.float64:
        return jnp.exp(x)
    x_clipped = jnp.clip(x, -750.0, 710.0)  # beyond: 0 and inf, reached through the scaling
    k = jnp.round(x_clipped * _LOG2E)
    r = (x_clipped - k * _LN2_HI) - k * _LN2_LO
    p = jnp.full_like(r, _TAYLOR[12])
    for coefficient in _TAYLOR[11::-1]:
        p = p * r + coefficient
    half = jnp.floor(0.5 * k)
    return p * _pow2(half) * _pow2(k - half)  # NaN: p is NaN


@exp.defjvp
def _exp_jvp(primals, tangents):
    """:math:`d e^x = e^x dx`: the derivative from the value, not through the polynomial."""
    value = exp(primals[0])
    return value, value * tangents[0]


@jax.custom_jvp
def sigmoid(x):
    r"""The logistic function :math:`1 / (1 + e^{-x})` with :func:`exp`."""
    x = jnp.asarray(x)
    if x.dtype != jnp.float64:
        return lax.logistic(x)
    return 1.0 / (1.0 + exp(-x))


@sigmoid.defjvp
def _sigmoid_jvp(primals, tangents):
    r""":math:`d\sigma = \sigma (1 - \sigma) dx`."""
    value = sigmoid(primals[0])
    return value, value * (1.0 - value) * tangents[0]


__all__ = ["exp", "sigmoid"]
