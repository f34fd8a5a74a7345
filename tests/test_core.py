"""The engine: statistics pytrees, schedules, row blocks and the statistics loop."""

from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lateo.core import (
    BurnInThenDecay,
    Constant,
    PowerDecay,
    block_sum,
    choose_block_size,
    init,
    make_blocks,
    run,
    stats_add,
    stats_interpolate,
    stats_scale,
)
from lateo.models._mixture_em import GaussianMixtureEM, MixtureHyper, MixtureParams, e_step


class Sums(NamedTuple):
    count: jax.Array
    total: jax.Array


def test_stats_add_scale_interpolate():
    a = Sums(jnp.asarray(2.0), jnp.asarray([1.0, 2.0]))
    b = Sums(jnp.asarray(3.0), jnp.asarray([4.0, 6.0]))
    np.testing.assert_allclose(stats_add(a, b).total, [5.0, 8.0])
    np.testing.assert_allclose(stats_scale(a, 10.0).count, 20.0)
    mid = stats_interpolate(a, b, 0.25)
    np.testing.assert_allclose(mid.total, [1.75, 3.0])
    np.testing.assert_allclose(stats_interpolate(a, b, 1.0).total, b.total)


def test_schedules():
    np.testing.assert_allclose(Constant()(jnp.arange(1, 4)), 1.0)
    np.testing.assert_allclose(PowerDecay(alpha=1.0)(jnp.arange(1, 5)), 1.0 / np.arange(1, 5))
    np.testing.assert_allclose(PowerDecay(alpha=0.6, offset=2.0)(1), 3.0**-0.6)
    burn = BurnInThenDecay(burn_in=3, alpha=0.7)(jnp.arange(1, 7))
    np.testing.assert_allclose(burn, [1, 1, 1, 1, 2**-0.7, 3**-0.7])
    for bad in (0.5, 1.2):
        with pytest.raises(ValueError, match="alpha"):
            PowerDecay(alpha=bad)
    with pytest.raises(ValueError, match="burn_in"):
        BurnInThenDecay(burn_in=-1)
    assert hash(PowerDecay(0.7)) == hash(PowerDecay(0.7))  # static-argument friendly


@dataclass(frozen=True)
class NoisyMean:
    """Toy model: S_hat is one N(mu, 1) draw; theta = S. With gamma_k = 1/k the
    loop's S_k is exactly the running mean of the draws (Robbins-Monro)."""

    def expected_stats(self, key, params, data, hyper):
        draw = data + jax.random.normal(key, ())
        return Sums(jnp.asarray(1.0), draw), -jnp.abs(params.total - data)

    def m_step(self, stats, hyper, previous):
        return stats

    def has_converged(self, old, new, change, tol):
        return jnp.asarray(False)


def test_loop_with_decaying_gamma_is_a_running_mean():
    model = NoisyMean()
    key = jax.random.key(0)
    params0 = Sums(jnp.asarray(0.0), jnp.asarray(0.0))
    state = init(model, params0, jnp.asarray(3.0), None, key)
    result = run(model, state, jnp.asarray(3.0), None, max_iter=400, tol=0.0, schedule=PowerDecay(alpha=1.0), progress=False)
    # replay the draws to get the exact running mean
    draws, k = [], key
    for _ in range(400):
        k, sub = jax.random.split(k)
        draws.append(3.0 + float(jax.random.normal(sub, ())))
    np.testing.assert_allclose(float(result.state.params.total), np.mean(draws), rtol=1e-12)
    assert result.n_iter == 400 and not result.converged and result.history.shape == (400,)


def test_loop_resumes_exactly_across_calls():
    """Chunking is invisible: 7 + 13 iterations equal 20 in one call."""
    model = NoisyMean()
    state = init(model, Sums(jnp.asarray(0.0), jnp.asarray(0.0)), jnp.asarray(1.0), None, jax.random.key(1))
    kw = dict(tol=0.0, schedule=PowerDecay(alpha=0.7), progress=False)
    once = run(model, state, jnp.asarray(1.0), None, max_iter=20, **kw)
    part = run(model, state, jnp.asarray(1.0), None, max_iter=7, **kw)
    rest = run(model, part.state, jnp.asarray(1.0), None, max_iter=13, **kw)
    np.testing.assert_array_equal(np.concatenate([part.history, rest.history]), once.history)
    np.testing.assert_array_equal(np.asarray(rest.state.params.total), np.asarray(once.state.params.total))


def _gmm_setup(X, block_size):
    blocks = make_blocks(X, block_size)
    rng = np.random.default_rng(0)
    params = MixtureParams(
        jnp.asarray([0.4, 0.6]), jnp.asarray(rng.normal(size=(2, 2))), jnp.asarray(np.stack([np.eye(2)] * 2)),
        jnp.asarray(np.stack([np.eye(2)] * 2)),
    )
    return blocks, params


def test_block_statistics_add_up_to_full_statistics():
    """Sums over blocks of any size equal the one-block statistics; partitions add."""
    X = np.random.default_rng(5).normal(size=(300, 2))
    full_blocks, params = _gmm_setup(X, 512)
    full, ll = e_step(params, full_blocks, "full")
    for size in (64, 128):
        stats, ll_b = e_step(params, make_blocks(X, size), "full")
        for a, b in zip(stats, full):
            np.testing.assert_allclose(a, b, rtol=1e-12)
        np.testing.assert_allclose(ll_b, ll, rtol=1e-12)
    first, _ = e_step(params, make_blocks(X[:120], 128), "full")
    second, _ = e_step(params, make_blocks(X[120:], 256), "full")
    for a, b in zip(stats_add(first, second), full):
        np.testing.assert_allclose(a, b, rtol=1e-12)


class _UnitGamma:
    """gamma = 1 through the generic interpolation path (not the exact shortcut)."""

    exact = False

    def __call__(self, k):
        return jnp.ones_like(jnp.asarray(k, dtype=float))

    def __hash__(self):
        return 0

    def __eq__(self, other):
        return isinstance(other, _UnitGamma)


def test_stochastic_update_with_unit_gamma_equals_exact_em():
    X = np.random.default_rng(6).normal(size=(300, 2))
    blocks, params = _gmm_setup(X, 512)
    model, hyper = GaussianMixtureEM("full"), MixtureHyper(jnp.asarray(1e-6))
    state = init(model, params, blocks, hyper, jax.random.key(0))
    exact = run(model, state, blocks, hyper, max_iter=30, tol=0.0, progress=False)
    generic = run(model, state, blocks, hyper, max_iter=30, tol=0.0, schedule=_UnitGamma(), progress=False)
    np.testing.assert_allclose(generic.history, exact.history, rtol=1e-12)
    np.testing.assert_allclose(generic.state.params.means, exact.state.params.means, rtol=1e-10)


def test_choose_block_size():
    assert choose_block_size(272, 10) == 512
    assert choose_block_size(10, 10) == 64
    big = choose_block_size(10**7, 100)
    assert big & (big - 1) == 0 and big * 100 * 8 <= 4 * 2**20


def test_make_blocks_pads_and_does_not_modify():
    X = np.arange(10.0).reshape(5, 2)
    keep = X.copy()
    blocks = make_blocks(X, 64, shift=np.array([1.0, 1.0]))
    np.testing.assert_array_equal(X, keep)
    assert blocks.X.shape == (1, 64, 2) and float(blocks.n_samples) == 5
    np.testing.assert_array_equal(np.asarray(blocks.weight[0, :6]), [1, 1, 1, 1, 1, 0])
    total = block_sum(lambda xb, wb: jnp.sum(xb * wb[:, None], axis=0), blocks)
    np.testing.assert_allclose(total, (X - 1).sum(0))


def test_progress_bar_reports_between_chunks(capsys):
    from lateo import GaussianMixture

    X = np.random.default_rng(0).normal(size=(300, 2))
    GaussianMixture(2, max_iter=20, tol=0.0, progress=True, random_state=0).fit(X)
    err = capsys.readouterr().err
    assert "GaussianMixture" in err and "20/20" in err


def test_progress_auto_is_quiet_off_a_terminal(capsys):
    from lateo.core import FitProgress

    with FitProgress(10, "quiet", enabled="auto") as bar:
        bar.update(10, -1.0)
    assert capsys.readouterr().err == ""
    with pytest.raises(ValueError, match="progress"):
        FitProgress(10, enabled="loud")
