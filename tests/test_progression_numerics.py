"""Numerical pieces of the progression models' inference: small batched solves, chi-square draws."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from lateo.models.progression._inference import chi_square, solve_small


@pytest.mark.parametrize("d", [1, 2, 3, 5, 7])
def test_solve_small_matches_lapack(d):
    rng = np.random.default_rng(d)
    a = rng.normal(size=(64, d, d))
    b = rng.normal(size=(64, d))
    if d > 1:  # a zero leading pivot: needs the row exchange
        a[0] = np.eye(d)[::-1]
    x = np.asarray(jax.jit(solve_small)(a, b))
    np.testing.assert_allclose(x, np.linalg.solve(a, b[..., None])[..., 0], rtol=1e-10, atol=1e-10)
    # differentiable like jnp.linalg.solve (the Laplace scores differentiate through the Newton step)
    g = jax.grad(lambda m: jnp.sum(solve_small(m, b[:4])))(jnp.asarray(a[:4]))
    g_ref = jax.grad(lambda m: jnp.sum(jnp.linalg.solve(m, b[:4, :, None])))(jnp.asarray(a[:4]))
    np.testing.assert_allclose(np.asarray(g), np.asarray(g_ref), rtol=1e-8, atol=1e-8)


def test_solve_small_singular_gives_non_finite_values():
    x = np.asarray(solve_small(jnp.zeros((1, 2, 2)), jnp.ones((1, 2))))
    assert not np.isfinite(x).any()


@pytest.mark.parametrize("df", [4.0, 2.0, 3.0])
def test_chi_square_draws(df):
    n = 100_000
    x = np.asarray(chi_square(jax.random.key(int(df)), df, (n // 4, 4), jnp.float64)).ravel()
    assert x.min() > 0 and np.isfinite(x).all()
    assert stats.kstest(x, "chi2", args=(df,)).pvalue > 1e-3
    assert abs(x.mean() - df) < 5 * np.sqrt(2 * df / n)
