r"""Fast single-precision random draws for samplers' inner loops.

On CPU, JAX lowers its Threefry-2x32 generator as a rolled loop of five
blocks of four rounds, which XLA cannot fuse with the code that consumes the
bits; with the double-precision inverse error function of
:func:`jax.random.normal`, drawing the proposals was the largest cost of an
SAEM sweep. Here the same Threefry-2x32 function (Salmon et al. 2011, the
20-round variant JAX uses, bit for bit: ``tests/test_core_rng.py``) is written
out unrolled, so the whole draw fuses into one loop, and the bits become
single-precision uniforms and normals (half the bits, a cheaper inverse error
function).

Precision: a Metropolis proposal only needs to be symmetric, and an
acceptance test only needs a uniform; 24-bit uniforms and single-precision
normals (cast to the caller's dtype) are ample for both. These draws are not
a replacement for :mod:`jax.random` where double-precision tails matter.

Keys of another implementation than Threefry fall back to :mod:`jax.random`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from .fusion import materialize_bounded

_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
_PARITY = np.uint32(0x1BD11BDA)


def _rotate_left(x, r: int):
    return (x << np.uint32(r)) | (x >> np.uint32(32 - r))


def threefry2x32(k1, k2, x1, x2):
    """Threefry-2x32 with 20 rounds (Salmon et al. 2011), unrolled: ``(k1, k2)`` key words, ``(x1, x2)`` counters."""
    ks = (k1, k2, k1 ^ k2 ^ _PARITY)
    x0, x1 = x1 + ks[0], x2 + ks[1]
    for block in range(5):
        for r in _ROTATIONS[block % 2]:
            x0 = x0 + x1
            x1 = _rotate_left(x1, r) ^ x0
        x0 = x0 + ks[(block + 1) % 3]
        x1 = x1 + ks[(block + 2) % 3] + np.uint32(block + 1)
    return x0, x1


def _is_threefry(key) -> bool:
    return jnp.issubdtype(key.dtype, jax.dtypes.prng_key) and "threefry" in str(jax.random.key_impl(key))


def _wrap(key, a, b):
    """Keys of ``key``'s implementation from the two words ``a`` and ``b``."""
    return jax.random.wrap_key_data(jnp.stack([a, b], axis=-1), impl=jax.random.key_impl(key))


def _unrolled(key) -> bool:
    return _is_threefry(key) and jax.config.jax_threefry_partitionable


def split(key, num: int = 2):
    """``jax.random.split(key, num)``, bit for bit, with the unrolled generator (JAX's own runs a
    loop of separate kernels on CPU: eight of them were a fifth of an SAEM iteration's fixed cost)."""
    if not _unrolled(key):
        return jax.random.split(key, num)
    words = jax.random.key_data(key)
    counter = lax.iota(jnp.uint32, num)
    return _wrap(key, *threefry2x32(words[0], words[1], jnp.zeros_like(counter), counter))


def fold_in(key, data):
    """``jax.random.fold_in(key, data)``, bit for bit, with the unrolled generator (see :func:`split`)."""
    if not _unrolled(key):
        return jax.random.fold_in(key, data)
    words = jax.random.key_data(key)
    return _wrap(key, *threefry2x32(words[0], words[1], jnp.uint32(0), jnp.asarray(data).astype(jnp.uint32)))


def random_bits(key, size: int):
    """``size`` pseudo-random ``uint32`` words from a Threefry ``key`` (counters ``0 .. size/2``).

    The two output words of counter ``c`` are words ``2c`` and ``2c + 1``: interleaved, so an
    ``(n, 2)`` draw (an SAEM proposal of two individual parameters) is one elementwise loop; the
    concatenation of the halves lowered to per-element index arithmetic there, 5x slower.
    """
    words = jax.random.key_data(key).reshape(-1)
    half = (size + 1) // 2
    counter = lax.iota(jnp.uint32, half)
    a, b = threefry2x32(words[0], words[1], counter, jnp.zeros_like(counter))
    return jnp.stack([a, b], axis=-1).reshape(-1)[:size]


def _unit_float32(bits):
    r"""Uniforms on the open interval ``(0, 1)`` from the top 23 bits: :math:`(b + 1/2)\,2^{-23}`.

    Every value ``b + 1/2 < 2^23`` is exact in single precision, so the draws lie in
    ``[2^-24, 1 - 2^-24]``: never 0 or 1 (finite logarithms and inverse error functions). An
    integer-to-float conversion rather than a bit cast into the mantissa: XLA:CPU fuses a
    conversion with the generator, not a bit cast (5x faster, measured in an SAEM sweep).
    """
    return ((bits >> np.uint32(9)).astype(jnp.float32) + np.float32(0.5)) * np.float32(2.0**-23)


def uniform(key, shape, dtype=jnp.float32):
    """Uniforms on ``(0, 1)`` (never 0, so their logarithm is finite), drawn in single precision."""
    shape = tuple(shape)
    if not _is_threefry(key):
        tiny = jnp.finfo(jnp.float32).tiny
        return jax.random.uniform(key, shape, jnp.float32, minval=tiny).astype(dtype)
    return _unit_float32(random_bits(key, int(np.prod(shape, dtype=int)))).reshape(shape).astype(dtype)


def log_uniform(key, shape, dtype=jnp.float32):
    """Logarithms of uniforms on ``(0, 1)``, computed in single precision (the test of a
    Metropolis acceptance, :math:`\\log u < \\log r`; a double-precision logarithm cost 5x more)."""
    return jnp.log(uniform(key, shape, jnp.float32)).astype(dtype)


def normal(key, shape, dtype=jnp.float32):
    r"""Standard normals :math:`\sqrt 2\,\mathrm{erf}^{-1}(2u - 1)`, drawn in single precision."""
    shape = tuple(shape)
    if not _is_threefry(key):
        return jax.random.normal(key, shape, jnp.float32).astype(dtype)
    u = _unit_float32(random_bits(key, int(np.prod(shape, dtype=int))))
    # |2u - 1| <= 1 - 2^-23, exactly; materialised, or the inverse error function's polynomial
    # is recomputed in each of the draws' consumers (the model at every visit among them)
    z = materialize_bounded(np.float32(np.sqrt(2.0)) * lax.erf_inv(2.0 * u - 1.0), 64.0)  # |z| < 5.5
    return z.reshape(shape).astype(dtype)
