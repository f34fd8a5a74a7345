"""lateo.core.fastmath and lateo.core.fusion: vectorisable exp, and identities that only steer the compiler."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lateo.core import fastmath
from lateo.core.fusion import materialize, materialize_bounded


def _ulps(got, ref):
    return np.abs(got - ref) / np.spacing(np.abs(ref))


def test_exp_is_as_accurate_as_jnp_exp_over_the_double_range():
    x = np.concatenate([np.linspace(-760.0, 720.0, 300_001), np.random.default_rng(0).normal(0.0, 5.0, 100_000),
                        np.linspace(-1e-8, 1e-8, 1001)])  # fmt: skip
    ours = np.asarray(jax.jit(fastmath.exp)(x))
    xla = np.asarray(jax.jit(jnp.exp)(x))
    with np.errstate(over="ignore"):
        ref = np.exp(x)
    normal = np.isfinite(ref) & (ref >= np.finfo(float).tiny)
    assert _ulps(ours[normal], ref[normal]).max() <= 2.0
    assert _ulps(ours[normal], ref[normal]).mean() <= _ulps(xla[normal], ref[normal]).mean() + 0.05
    # outside the normal range it does what XLA's exp does (overflow to inf, flush to zero)
    np.testing.assert_array_equal(ours[~normal], xla[~normal])


def test_exp_special_values_and_other_dtypes():
    x = jnp.array([np.inf, -np.inf, np.nan, 0.0, -0.0, 709.78, 709.79, 1.0])
    out = np.asarray(jax.jit(fastmath.exp)(x))
    assert out[0] == np.inf and out[1] == 0.0 and np.isnan(out[2]) and out[3] == 1.0 and out[4] == 1.0
    assert np.isfinite(out[5]) and out[6] == np.inf and out[7] == np.exp(1.0)
    x32 = jnp.linspace(-3, 3, 11, dtype=jnp.float32)
    assert fastmath.exp(x32).dtype == jnp.float32
    np.testing.assert_array_equal(np.asarray(fastmath.exp(x32)), np.asarray(jnp.exp(x32)))


def test_sigmoid_matches_the_logistic_function():
    x = np.linspace(-800.0, 800.0, 20_001)
    ours = np.asarray(jax.jit(fastmath.sigmoid)(x))
    ref = np.asarray(jax.jit(jax.nn.sigmoid)(x))
    np.testing.assert_allclose(ours, ref, rtol=4e-16, atol=0)
    assert ours[0] == 0.0 and ours[-1] == 1.0
    assert jax.grad(fastmath.sigmoid)(0.0) == pytest.approx(0.25, abs=1e-15)


@pytest.mark.parametrize("dtype", [jnp.float64, jnp.float32, jnp.int32])
def test_materialize_is_the_identity(dtype):
    x = jnp.array([1.5, -2.0, 0.0, 7.25], dtype) if dtype != jnp.int32 else jnp.array([1, -2, 0, 7], dtype)
    out = jax.jit(materialize)(x)
    assert out.dtype == x.dtype
    np.testing.assert_array_equal(np.asarray(out), np.asarray(x))
    special = jnp.array([np.inf, -np.inf, np.nan, 1e308, -1e-300])
    np.testing.assert_array_equal(np.asarray(jax.jit(materialize)(special)), np.asarray(special))


def test_materialize_bounded_is_the_identity_inside_the_bound():
    x = jnp.asarray(np.random.default_rng(1).normal(0.0, 2.0, 1000).clip(-63.9, 63.9))
    np.testing.assert_array_equal(np.asarray(jax.jit(lambda v: materialize_bounded(v, 64.0))(x)), np.asarray(x))
