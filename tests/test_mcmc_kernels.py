"""MCMC kernels and driver: invariance on known targets within Monte Carlo error,
acceptance adaptation, support constraints, shapes, determinism and input errors.

Tolerances are 4 Monte Carlo standard errors, estimated by batch means
(20 batches per chain, pooled over chains); seeds are fixed. Compilation
dominates the runtime, so each (kernel, target) pair is sampled once per
module and shared by the tests.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lateo import mcmc
from lateo.inference.mcmc import driver

KERNELS = ["rwm", "mala", "hmc", "nuts"]

# A 10-D Gaussian with unequal scales and a correlated 2-D block (coordinates 0, 1; rho = 0.8).
MU10 = np.linspace(-2.0, 2.0, 10)
SD10 = np.array([1.0, 1.5, 0.5, 2.0, 1.0, 0.7, 1.2, 0.8, 1.0, 1.5])
RHO = 0.8
COV10 = np.diag(SD10**2)
COV10[0, 1] = COV10[1, 0] = RHO * SD10[0] * SD10[1]
PREC10 = jnp.asarray(np.linalg.inv(COV10))

MU1, SD1 = 3.0, 2.0


def gauss10(x):
    d = x - MU10
    return -0.5 * d @ PREC10 @ d


def gauss1(x):
    return -0.5 * ((x - MU1) / SD1) ** 2


def half_normal(x):
    """N(0, 1) restricted to x > 0: -inf on (-1, 0], NaN below -1 (both must be rejected)."""
    return jnp.where(x > 0, -0.5 * x**2, jnp.where(x > -1.0, -jnp.inf, jnp.nan))


def mcse(f, n_batches=20):
    """Batch-means MCSE of the mean of ``f`` (chains, draws), batches pooled over chains."""
    chains, draws = f.shape
    b = draws // n_batches
    means = f[:, : b * n_batches].reshape(chains * n_batches, b).mean(axis=1)
    return means.std(ddof=1) / np.sqrt(means.size)


def assert_within_mcse(f, truth, label):
    est, se = f.mean(), mcse(f)
    assert abs(est - truth) < 4 * se, f"{label}: estimate {est:.4f}, truth {truth:.4f}, 4 MCSE = {4 * se:.4f}"


@functools.cache
def run(kernel, target):
    """One long run per (kernel, target), shared by the tests (sampling is cheap, compiling is not)."""
    logdensity, init, key = {"gauss10": (gauss10, jnp.zeros(10), 0), "gauss1": (gauss1, jnp.zeros(()), 1)}[target]
    return mcmc.sample(logdensity, init, kernel=kernel, key=key, num_warmup=5000, num_samples=20000, progress=False)


@pytest.fixture(params=KERNELS)
def run10(request):
    return request.param, run(request.param, "gauss10")


@pytest.fixture(params=KERNELS)
def run1(request):
    return request.param, run(request.param, "gauss1")


def test_invariance_gaussian_10d(run10):
    kernel, res = run10
    x = res.samples
    assert x.shape == (4, 20000, 10)
    for j in range(10):
        assert_within_mcse(x[..., j], MU10[j], f"{kernel} mean[{j}]")
        assert_within_mcse((x[..., j] - MU10[j]) ** 2, SD10[j] ** 2, f"{kernel} var[{j}]")
    cross = (x[..., 0] - MU10[0]) * (x[..., 1] - MU10[1])
    assert_within_mcse(cross, COV10[0, 1], f"{kernel} cov[0, 1]")


def test_invariance_gaussian_1d(run1):
    kernel, res = run1
    x = res.samples
    assert x.shape == (4, 20000)
    assert_within_mcse(x, MU1, f"{kernel} mean")
    assert_within_mcse((x - MU1) ** 2, SD1**2, f"{kernel} var")


TARGETS = {"rwm": (0.234, 0.44), "mala": (0.574, 0.574), "hmc": (0.8, 0.8), "nuts": (0.8, 0.8)}  # (d = 10, d = 1)


def test_acceptance_adapts_10d(run10):
    """Warm-up and frozen-kernel acceptance within 0.05 of the target (RWM 0.234, MALA 0.574, HMC 0.8)."""
    kernel, res = run10
    target = TARGETS[kernel][0]
    assert abs(res.warmup_acceptance_rate.mean() - target) < 0.05
    assert abs(res.acceptance_rate.mean() - target) < 0.05


def test_acceptance_adapts_1d(run1):
    """As above in one dimension, where RWM aims at 0.44."""
    kernel, res = run1
    target = TARGETS[kernel][1]
    assert abs(res.warmup_acceptance_rate.mean() - target) < 0.05
    assert abs(res.acceptance_rate.mean() - target) < 0.05


def test_haario_scale_from_warmup_moments():
    """The RWM proposal is sigma * chol(C_hat + eps I), C_hat the covariance of the collected draws."""
    rng = np.random.default_rng(2)
    xs = rng.multivariate_normal(MU10, COV10, size=200)
    state = mcmc.adaptation_init(2.38 / np.sqrt(10), 10)
    np.testing.assert_allclose(mcmc.haario_scale(state), 2.38 / np.sqrt(10) * np.eye(10))  # identity at first
    for i, x in enumerate(xs):
        state = mcmc.adaptation_update(state, jnp.asarray(x), 0.234, 0.234, i >= 50)  # acceptance on target
    assert int(state.count) == 150 and int(state.iteration) == 200
    assert float(state.log_scale) == pytest.approx(np.log(2.38 / np.sqrt(10)))
    chol = np.asarray(mcmc.haario_scale(state))
    expected = (2.38**2 / 10) * (np.cov(xs[50:].T) + 1e-6 * np.eye(10))
    np.testing.assert_allclose(chol @ chol.T, expected, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(mcmc.adapted_inverse_mass(state), np.diag(expected) * 10 / 2.38**2, rtol=1e-10)


def test_warmup_windows_follow_stan():
    assert mcmc.warmup_windows(1000) == (75, 950, [100, 150, 250, 450, 950])
    assert mcmc.warmup_windows(100) == (15, 90, [90])
    assert mcmc.warmup_windows(10) == (10, 10, [])
    for n in (150, 151, 333, 5000, 10**6):
        start, stop, ends = mcmc.warmup_windows(n)
        assert ends[-1] == stop == n - 50 and start == 75 and ends == sorted(ends) and len(ends) <= 32


def test_end_window_regularises_and_restarts():
    rng = np.random.default_rng(4)
    xs = rng.multivariate_normal(MU10, COV10, size=100)
    state = mcmc.adaptation_init(0.5, 10)
    for x in xs:
        state = mcmc.adaptation_update(state, jnp.asarray(x), 0.9, 0.8, True)
    closed = mcmc.end_window(state)
    n = 100
    expected = n / (n + 5) * np.cov(xs.T) + 1e-3 * 5 / (n + 5) * np.eye(10)
    np.testing.assert_allclose(closed.metric, expected, rtol=1e-10)
    assert int(closed.count) == 0 and int(closed.iteration) == 0 and float(closed.log_scale) == float(state.log_scale)
    few = mcmc.end_window(mcmc.adaptation_update(mcmc.adaptation_init(0.5, 10), jnp.ones(10), 0.9, 0.8, True))
    np.testing.assert_array_equal(few.metric, np.eye(10))  # too few draws: the metric is kept


def test_pooled_moments_equal_moments_of_all_draws():
    rng = np.random.default_rng(3)
    xs = rng.normal(size=(3, 40, 2)) + np.arange(3.0)[:, None, None]  # chains with different means

    def moments(x):
        state = mcmc.adaptation_init(1.0, 2)
        for i in range(x.shape[0]):
            state = mcmc.adaptation_update(state, x[i], 0.5, 0.5, i >= 10)
        return mcmc.pool_moments(state, "c")

    pooled = jax.jit(jax.vmap(moments, axis_name="c"))(jnp.asarray(xs))
    all_draws = xs[:, 10:].reshape(-1, 2)
    assert int(pooled.count[0]) == 90
    np.testing.assert_allclose(pooled.mean[1], all_draws.mean(0), rtol=1e-12)
    np.testing.assert_allclose(pooled.m2[2] / 89, np.cov(all_draws.T), rtol=1e-10)


def test_adapted_kernel_params(run10):
    """The frozen metric is the (pooled, windowed) warm-up covariance: dense below dimension 200."""
    kernel, res = run10
    if kernel == "rwm":
        scale = res.kernel_params["scale"]
        assert scale.shape == (4, 10, 10)
        assert np.allclose(np.triu(scale[0], 1), 0.0)
        cov = scale[0] @ scale[0].T
    elif kernel == "mala":
        assert res.kernel_params["step_size"].shape == (4,)
        tril = res.kernel_params["scale_tril"]
        assert tril.shape == (4, 10, 10)
        cov = tril[0] @ tril[0].T
    else:
        cov = res.kernel_params["inverse_mass_matrix"][0]
        assert res.kernel_params["inverse_mass_matrix"].shape == (4, 10, 10)
    # Up to RWM's global factor, the metric's correlation matrix is the target's, within ~4 standard errors
    # 1/sqrt(n_eff) of a correlation estimated from the last window (n_eff ~ 100 for RWM's slowly mixing
    # warm-up draws in d = 10, ~ 2500 for the gradient kernels).
    sd = np.sqrt(np.diag(cov))
    atol = 0.4 if kernel == "rwm" else 0.08
    np.testing.assert_allclose(cov / np.outer(sd, sd), COV10 / np.outer(SD10, SD10), atol=atol)
    if kernel != "rwm":
        np.testing.assert_allclose(np.diag(cov), SD10**2, rtol=0.2)


@pytest.mark.parametrize("kernel", ["rwm", "hmc"])
def test_half_normal_support(kernel):
    res = mcmc.sample(half_normal, jnp.ones(()), kernel=kernel, key=3, num_warmup=2000, num_samples=20000, progress=False)
    x = res.samples
    assert np.all(x > 0)
    assert np.all(np.isfinite(res.log_density))
    assert_within_mcse(x, np.sqrt(2 / np.pi), f"{kernel} half-normal mean")
    assert_within_mcse(x**2, 1.0, f"{kernel} half-normal second moment")


def test_hmc_default_beats_rwm():
    """The default kernel (HMC) has a much larger effective sample size per draw than adaptive RWM."""
    assert driver.DEFAULT_KERNEL == "hmc"
    ess = {}
    for kernel in ("rwm", "hmc"):
        x = run(kernel, "gauss10").samples
        ess[kernel] = min(x[..., j].var() / mcse(x[..., j]) ** 2 for j in range(10))
    assert ess["hmc"] > 5 * ess["rwm"], ess


# ----------------------------------------------------------------------------- kernels and adaptation as functions


def test_rwm_step_diagonal_equals_cholesky_and_rejects_nan():
    def std_normal(x):
        return -0.5 * jnp.sum(x**2)

    state = mcmc.rwm_init(jnp.ones(3), std_normal)
    key = jax.random.key(5)
    sd = jnp.array([0.5, 1.0, 2.0])
    s1, i1 = mcmc.rwm_step(key, state, std_normal, sd)
    s2, i2 = mcmc.rwm_step(key, state, std_normal, jnp.diag(sd))
    np.testing.assert_allclose(s1.position, s2.position)
    assert float(i1.acceptance_probability) == pytest.approx(float(i2.acceptance_probability))
    nan_state = mcmc.rwm_init(jnp.ones(3), lambda x: jnp.nan * jnp.sum(x))
    assert nan_state.logdensity == -jnp.inf
    s3, i3 = mcmc.rwm_step(key, state, lambda x: jnp.nan * jnp.sum(x), sd)
    assert not bool(i3.is_accepted) and float(i3.acceptance_probability) == 0.0
    np.testing.assert_array_equal(s3.position, state.position)


def test_robbins_monro_and_welford():
    log_s = jnp.asarray(0.3)
    out = mcmc.robbins_monro_update(log_s, 4, 0.5, 0.234)
    assert float(out) == pytest.approx(0.3 + 4 ** (-0.6) * (0.5 - 0.234))
    rng = np.random.default_rng(0)
    xs = rng.normal(size=(50, 3))
    count, mean, m2 = jnp.zeros((), jnp.int32), jnp.zeros(3), jnp.zeros((3, 3))
    for x in xs:
        count, mean, m2 = mcmc.welford_update(count, mean, m2, jnp.asarray(x))
    np.testing.assert_allclose(mean, xs.mean(0), rtol=1e-12)
    np.testing.assert_allclose(m2 / (count - 1), np.cov(xs.T), rtol=1e-10)


# ----------------------------------------------------------------------------- driver


def tree_logdensity(p):
    return -0.5 * p["a"] ** 2 - 0.5 * jnp.sum((p["b"] - 1.0) ** 2)


TREE_INIT = {"a": 0.0, "b": np.zeros(3)}


def test_pytree_shapes_determinism_and_single_compilation():
    kw = {"kernel": "hmc", "num_warmup": 60, "num_chains": 3, "progress": False}
    r1 = mcmc.sample(tree_logdensity, TREE_INIT, key=7, num_samples=40, **kw)
    assert r1.samples["a"].shape == (3, 40)
    assert r1.samples["b"].shape == (3, 40, 3)
    assert r1.log_density.shape == (3, 40)
    assert r1.acceptance_rate.shape == r1.warmup_acceptance_rate.shape == (3,)
    assert r1.kernel_params["step_size"].shape == (3,)
    assert r1.kernel_params["inverse_mass_matrix"].shape == (3, 4, 4)
    cache = driver._run_chunk._cache_size()
    r2 = mcmc.sample(tree_logdensity, TREE_INIT, key=7, num_samples=40, **kw)
    for leaf1, leaf2 in zip(jax.tree_util.tree_leaves(r1.samples), jax.tree_util.tree_leaves(r2.samples)):
        np.testing.assert_array_equal(leaf1, leaf2)
    r3 = mcmc.sample(tree_logdensity, TREE_INIT, key=8, num_samples=2 * driver.CHUNK + 7, **kw)
    assert r3.samples["b"].shape == (3, 2 * driver.CHUNK + 7, 3)
    assert not np.array_equal(r3.samples["a"][:, :40], r1.samples["a"])
    assert driver._run_chunk._cache_size() == cache  # other lengths and keys: no recompilation


def test_summary_and_trace_plot():
    r3 = mcmc.sample(tree_logdensity, TREE_INIT, kernel="hmc", key=8, num_warmup=60, num_samples=80, num_chains=3,
                     progress=False)  # fmt: skip
    table = r3.summary()
    assert list(table.index) == ["a", "b[0]", "b[1]", "b[2]"]
    assert table.loc["b[1]", "mean"] == pytest.approx(r3.samples["b"][..., 1].mean())
    import matplotlib

    matplotlib.use("Agg")
    fig = r3.plot_trace()
    assert len(fig.axes) == 8
    matplotlib.pyplot.close(fig)


def test_per_chain_init_without_warmup():
    init = {"a": np.arange(3.0), "b": np.zeros((3, 3))}
    res = mcmc.sample(
        tree_logdensity, init, kernel="hmc", key=jax.random.key(0), num_warmup=0, num_samples=40, num_chains=3,
        per_chain_init=True, progress=False,
    )  # fmt: skip
    assert res.samples["b"].shape == (3, 40, 3)
    assert np.all(np.isnan(res.warmup_acceptance_rate))
    np.testing.assert_array_equal(res.kernel_params["inverse_mass_matrix"], np.broadcast_to(np.eye(4), (3, 4, 4)))
    assert np.all(np.isfinite(res.log_density))


def test_non_callable_logdensity():
    with pytest.raises(TypeError, match="logdensity must be a callable"):
        mcmc.sample("not a function", TREE_INIT)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"init": {"a": np.nan, "b": np.zeros(3)}}, "init contains NaN or infinite"),
        ({"init": {"a": np.inf, "b": np.zeros(3)}}, "init contains NaN or infinite"),
        ({"logdensity": lambda p: jnp.nan * p["a"]}, "log-density is nan"),
        ({"logdensity": lambda p: jnp.where(p["a"] < 5.0, -jnp.inf, 0.0)}, "log-density is -inf"),
        ({"num_chains": 0}, "num_chains must be >= 1"),
        ({"num_samples": 0}, "num_samples must be >= 1"),
        ({"kernel": "slice"}, "kernel must be one of"),
        ({"target_accept": 1.5}, "target_accept must be in"),
        ({"per_chain_init": True}, "leading axis of length num_chains=4"),
        ({"init": {"a": np.zeros(3), "b": np.zeros((3, 3))}, "per_chain_init": True}, "num_chains=4"),
    ],
)
def test_bad_inputs(kwargs, match):
    args = {"logdensity": tree_logdensity, "init": TREE_INIT, **kwargs}
    with pytest.raises(ValueError, match=match):
        mcmc.sample(args.pop("logdensity"), args.pop("init"), key=0, progress=False, **args)


def test_to_arviz_and_convergence_check():
    """The draws convert to ArviZ unchanged, and ArviZ's diagnostics agree with lateo's."""
    import warnings

    import arviz

    from lateo.mcmc import rhat, sample

    def logdensity(p):
        return -0.5 * jnp.sum(p["b"] ** 2) - 0.5 * p["a"] ** 2

    result = sample(logdensity, {"a": jnp.asarray(0.0), "b": jnp.zeros(2)}, kernel="rwm", num_warmup=300,
                    num_samples=400, num_chains=2, key=5, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        idata = result.to_arviz()
    np.testing.assert_array_equal(idata.posterior["b"].values, result.samples["b"])
    np.testing.assert_allclose(float(arviz.rhat(idata.posterior["a"].values)), rhat(result.samples["a"]), rtol=1e-8)
    assert idata.sample_stats["lp"].shape == (2, 400)
    with pytest.warns(UserWarning, match="ess_bulk"):
        assert result.check_convergence(ess_threshold=1e9) is False
