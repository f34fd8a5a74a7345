"""lateo.core.rng: the unrolled Threefry equals JAX's, and the draws have the right distribution."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.extend.random import threefry2x32_p
from scipy import stats

from lateo.core import rng


def test_threefry_is_bit_identical_to_jax():
    words = jax.random.key_data(jax.random.key(123))
    x1 = jnp.arange(1000, dtype=jnp.uint32) * np.uint32(2654435761)
    x2 = jnp.arange(1000, dtype=jnp.uint32)[::-1]
    ours = jax.jit(rng.threefry2x32)(words[0], words[1], x1, x2)
    theirs = threefry2x32_p.bind(words[0], words[1], x1, x2)
    for a, b in zip(ours, theirs):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize("impl", ["threefry2x32", "rbg"])
def test_uniform_and_normal_distributions(impl):
    key = jax.random.key(7, impl=impl)
    k1, k2 = jax.random.split(key)
    n = 200_000
    u = np.asarray(rng.uniform(k1, (n // 4, 4), jnp.float64)).ravel()
    z = np.asarray(rng.normal(k2, (n,), jnp.float64))
    assert u.min() > 0 and u.max() < 1 and np.isfinite(np.log(u)).all()
    assert stats.kstest(u, "uniform").pvalue > 1e-3
    assert stats.kstest(z, "norm").pvalue > 1e-3
    # moments within 5 standard errors
    assert abs(z.mean()) < 5 / np.sqrt(n)
    assert abs(z.var() - 1) < 5 * np.sqrt(2 / n)
    assert abs(np.mean(z**3)) < 5 * np.sqrt(15 / n)
    # odd sizes, and independent streams from split keys
    assert rng.normal(k1, (3, 5)).shape == (3, 5)
    a, b = (np.asarray(rng.normal(k, (n,))) for k in jax.random.split(k2))
    assert abs(np.corrcoef(a, b)[0, 1]) < 5 / np.sqrt(n)
    # consecutive counters are not correlated either
    assert abs(np.corrcoef(z[:-1], z[1:])[0, 1]) < 5 / np.sqrt(n)


def test_extreme_bits_map_inside_the_open_interval():
    """The smallest and largest 32-bit words give uniforms 2^-24 and 1 - 2^-24 exactly, and
    finite normals (no clamp needed)."""
    bits = jnp.array([0, 511, 2**32 - 1], dtype=jnp.uint32)
    u = np.asarray(jax.jit(rng._unit_float32)(bits), np.float64)
    np.testing.assert_array_equal(u, [2.0**-24, 2.0**-24, 1 - 2.0**-24])
    z = np.sqrt(2.0) * np.asarray(jax.lax.erf_inv(2.0 * jnp.asarray(u, jnp.float32) - 1.0))
    assert np.isfinite(z).all() and z[0] < -5 and z[-1] > 5


@pytest.mark.parametrize("seed", [0, 123, 2**31 + 5])
def test_split_and_fold_in_are_bit_identical_to_jax(seed):
    key = jax.random.key(seed)
    for n in (1, 2, 3, 7):
        ours = jax.jit(lambda k, n=n: rng.split(k, n))(key)
        np.testing.assert_array_equal(jax.random.key_data(ours), jax.random.key_data(jax.random.split(key, n)))
    for data in (0, 1, 17, 2**32 - 1):
        ours = jax.jit(rng.fold_in)(key, jnp.uint32(data))
        np.testing.assert_array_equal(jax.random.key_data(ours), jax.random.key_data(jax.random.fold_in(key, data)))
    # a traced int32 loop counter, and keys batched by vmap
    np.testing.assert_array_equal(jax.random.key_data(jax.jit(rng.fold_in)(key, jnp.int32(5))),
                                  jax.random.key_data(jax.random.fold_in(key, 5)))
    keys = jax.random.split(key, 4)
    np.testing.assert_array_equal(jax.random.key_data(jax.vmap(lambda k: rng.split(k, 3))(keys)),
                                  jax.random.key_data(jax.vmap(lambda k: jax.random.split(k, 3))(keys)))
    # other implementations fall back to jax.random
    rbg = jax.random.key(seed, impl="rbg")
    np.testing.assert_array_equal(jax.random.key_data(rng.split(rbg, 3)), jax.random.key_data(jax.random.split(rbg, 3)))


def test_log_uniform_is_the_log_of_a_uniform():
    n = 100_000
    for key in (jax.random.key(3), jax.random.key(3, impl="rbg")):
        log_u = np.asarray(rng.log_uniform(key, (n,), jnp.float64))
        assert log_u.dtype == np.float64 and np.isfinite(log_u).all() and log_u.max() < 0
        assert stats.kstest(np.exp(log_u), "uniform").pvalue > 1e-3
    # the same bits as uniform(): log_uniform(k) == log(uniform(k)) to single precision
    key = jax.random.key(4)
    np.testing.assert_allclose(np.asarray(rng.log_uniform(key, (1000,))), np.log(np.asarray(rng.uniform(key, (1000,)))),
                               rtol=1e-6)
