"""Every kernel leaves its target invariant: Gaussians in d = 100 and with strong correlation, and a banana.

Means and second moments fall within 4 Monte Carlo standard errors of the
truth; the MCSE is the ESS-based one (Vehtari et al. 2021, as ArviZ), which
accounts for the autocorrelation of each chain. Seeds are fixed. Also:
Gibbs with exact conditionals and Metropolis-within-Gibbs, and ULA's known
discretisation bias.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lateo import mcmc
from lateo.inference.mcmc.diagnostics import mcse_mean

KERNELS = ["rwm", "mala", "hmc", "nuts"]

# d = 100: independent coordinates with unequal means and scales.
MU100 = np.linspace(-3.0, 3.0, 100)
SD100 = np.linspace(0.5, 2.0, 100)

# A strongly correlated 4-D Gaussian: AR(1) correlations rho^|i-j|, rho = 0.95, unequal scales.
RHO = 0.95
SDC = np.array([1.0, 3.0, 0.3, 2.0])
COVC = RHO ** np.abs(np.subtract.outer(np.arange(4), np.arange(4))) * np.outer(SDC, SDC)
PRECC = jnp.asarray(np.linalg.inv(COVC))

# The banana (twisted Gaussian; Haario, Saksman & Tamminen 1999): x1 ~ N(0, A^2),
# x2 = y + B (x1^2 - A^2) with y ~ N(0, 1). Mean 0, var x1 = A^2, var x2 = 1 + 2 B^2 A^4, cov = 0.
A, B = 2.0, 0.15
BANANA_VAR = np.array([A**2, 1 + 2 * B**2 * A**4])


def gauss100(x):
    return -0.5 * jnp.sum(((x - MU100) / SD100) ** 2)


def correlated(x):
    return -0.5 * x @ PRECC @ x


def banana(x):
    return -0.5 * (x[0] / A) ** 2 - 0.5 * (x[1] - B * (x[0] ** 2 - A**2)) ** 2


TARGETS = {
    # name: (log-density, dimension, mean, covariance, warm-up, draws)
    "gauss100": (gauss100, 100, MU100, np.diag(SD100**2), 4000, 10000),
    "correlated": (correlated, 4, np.zeros(4), COVC, 2000, 10000),
    "banana": (banana, 2, np.zeros(2), np.diag(BANANA_VAR), 2000, 20000),
}


@functools.cache
def run(kernel, target):
    fn, dim, _, _, warmup, draws = TARGETS[target]
    if kernel == "rwm":  # random-walk chains mix ~d times slower than gradient ones: give them more draws
        warmup, draws = 2 * warmup, 4 * draws
    elif kernel in ("hmc", "nuts") and dim > 10:  # nearly independent draws; NUTS trees are costly in d = 100
        warmup, draws = 1000, 2000
    return mcmc.sample(fn, jnp.zeros(dim), kernel=kernel, key=11, num_warmup=warmup, num_samples=draws,
                       progress=False, warn=False)  # fmt: skip


def assert_moments(x, mean, cov, label):
    """Means, variances and covariances within 4 MCSE of the truth, coordinate by coordinate."""
    dim = x.shape[-1]
    pairs = [(i, i) for i in range(dim)] + ([(i, i + 1) for i in range(dim - 1)] if dim <= 4 else [])
    for j in range(dim):
        est, se = x[..., j].mean(), mcse_mean(x[..., j])
        assert abs(est - mean[j]) < 4 * se, f"{label} mean[{j}]: {est:.4f} vs {mean[j]:.4f} (4 MCSE {4 * se:.4f})"
    for i, j in pairs:
        f = (x[..., i] - mean[i]) * (x[..., j] - mean[j])
        est, se = f.mean(), mcse_mean(f)
        assert abs(est - cov[i, j]) < 4 * se, f"{label} cov[{i},{j}]: {est:.4f} vs {cov[i, j]:.4f} (4 MCSE {4 * se:.4f})"


@pytest.mark.slow
@pytest.mark.parametrize("target", list(TARGETS))
@pytest.mark.parametrize("kernel", KERNELS)
def test_kernel_leaves_target_invariant(kernel, target):
    res = run(kernel, target)
    _, _, mean, cov, _, _ = TARGETS[target]
    assert_moments(res.samples, mean, cov, f"{kernel}/{target}")
    assert np.all(np.isfinite(res.log_density))


@pytest.mark.parametrize("kernel", ["rwm", "mala", "hmc"])
def test_acceptance_reaches_target_in_high_dimension(kernel):
    """Warm-up tunes the acceptance rate to 0.234 / 0.574 / 0.8 within 0.05 in d = 100."""
    target = {"rwm": 0.234, "mala": 0.574, "hmc": 0.8}[kernel]
    res = run(kernel, "gauss100")
    assert abs(res.warmup_acceptance_rate.mean() - target) < 0.05
    assert abs(res.acceptance_rate.mean() - target) < 0.05


# ----------------------------------------------------------------------------- ULA


SIGMA_ULA = 2.0


def gauss_ula(x):
    return -0.5 * (x / SIGMA_ULA) ** 2


def test_ula_has_its_known_discretisation_bias():
    r"""On N(0, s^2), ULA with step eps and preconditioner l^2 is the AR(1) chain
    x' = (1 - c) x + eps l z, c = eps^2 l^2 / (2 s^2), whose stationary variance is
    s^2 / (1 - c / 2): the draws match it within MCSE, and the bias over s^2 is detectable."""
    res = mcmc.sample(gauss_ula, 0.0, kernel="ula", key=5, num_warmup=2000, num_samples=50000, progress=False,
                      warn=False)  # fmt: skip
    x = res.samples
    eps = res.kernel_params["step_size"][:, None]
    tril = res.kernel_params["scale_tril"][:, 0, 0][:, None]
    c = eps**2 * tril**2 / (2 * SIGMA_ULA**2)
    biased = (SIGMA_ULA**2 / (1 - c / 2)).ravel()
    for chain in range(x.shape[0]):
        f = x[chain] ** 2
        se = mcse_mean(f[None])
        assert abs(f.mean() - biased[chain]) < 4 * se, (chain, f.mean(), biased[chain], se)
    assert np.all(biased > SIGMA_ULA**2 * 1.02)  # the bias is real, and > 4 MCSE of the pooled estimate
    assert (x**2).mean() - SIGMA_ULA**2 > 4 * mcse_mean(x**2)
    assert abs(x.mean()) < 4 * mcse_mean(x)  # the mean is unbiased on a symmetric target


# ----------------------------------------------------------------------------- Gibbs


RHO_G = 0.9


def bivariate(p):
    x, y = p["x"], p["y"]
    return -0.5 * (x**2 - 2 * RHO_G * x * y + y**2) / (1 - RHO_G**2)


def draw_x(key, p):
    """Exact full conditional x | y ~ N(rho y, 1 - rho^2)."""
    return RHO_G * p["y"] + np.sqrt(1 - RHO_G**2) * jax.random.normal(key, dtype=p["y"].dtype)


def draw_y(key, p):
    return RHO_G * p["x"] + np.sqrt(1 - RHO_G**2) * jax.random.normal(key, dtype=p["x"].dtype)


@pytest.mark.parametrize(
    "blocks",
    [{"x": draw_x, "y": draw_y}, {"x": "rwm", "y": draw_y}, {"x": "mala", "y": "rwm"}, {("x", "y"): "hmc"}],
    ids=["exact-gibbs", "mh-within-gibbs", "mala-rwm", "one-block"],
)
def test_gibbs_leaves_target_invariant(blocks):
    res = mcmc.sample(bivariate, {"x": 0.0, "y": 0.0}, kernel=mcmc.Gibbs(blocks), key=2, num_warmup=1000,
                      num_samples=10000, progress=False, warn=False)  # fmt: skip
    x = np.stack([res.samples["x"], res.samples["y"]], axis=-1)
    assert_moments(x, np.zeros(2), np.array([[1.0, RHO_G], [RHO_G, 1.0]]), f"gibbs {list(blocks.values())}")
    assert res.acceptance.shape == (4, 10000, len(blocks))
    for b, how in enumerate(blocks.values()):
        rate = res.acceptance[..., b].mean()
        if callable(how):
            assert rate == 1.0  # exact conditional draws are always accepted
        elif how == "rwm":
            assert abs(rate - 0.44) < 0.05  # one-dimensional block: 0.44
    kernel_blocks = {k for k, how in zip(mcmc.Gibbs(blocks).labels(), blocks.values()) if not callable(how)}
    assert set(res.kernel_params) == kernel_blocks


def test_gibbs_blocks_of_vectors_and_compilation_reuse():
    def logdensity(p):
        return -0.5 * jnp.sum(p["a"] ** 2) - 0.5 * jnp.sum((p["b"] - 2.0) ** 2 / 4.0)

    kernel = mcmc.Gibbs({"b": "mala", "a": "rwm"})  # any order; blocks of vectors
    res = mcmc.sample(logdensity, {"a": np.zeros(3), "b": np.zeros(2)}, kernel=kernel, key=0, num_warmup=1000,
                      num_samples=8000, progress=False, warn=False)  # fmt: skip
    assert res.samples["a"].shape == (4, 8000, 3) and res.samples["b"].shape == (4, 8000, 2)
    assert_moments(res.samples["b"], np.full(2, 2.0), 4.0 * np.eye(2), "b")
    assert_moments(res.samples["a"], np.zeros(3), np.eye(3), "a")
    assert res.kernel_params["a"]["scale"].shape == (4, 3, 3)
    assert res.kernel_params["b"]["scale_tril"].shape == (4, 2, 2)


@pytest.mark.parametrize(
    ("kernel", "init", "match"),
    [
        ({"x": "rwm"}, {"x": 0.0, "y": 0.0}, "missing \\['y'\\]"),
        ({"x": "rwm", "y": "rwm", "z": "rwm"}, {"x": 0.0, "y": 0.0}, "unknown \\['z'\\]"),
        ({"x": "slice", "y": "rwm"}, {"x": 0.0, "y": 0.0}, "must use one of the kernels"),
        ({"x": "rwm", "y": "rwm"}, jnp.zeros(2), "dict"),
        ({}, {"x": 0.0}, "non-empty mapping"),
    ],
)
def test_gibbs_bad_blocks(kernel, init, match):
    with pytest.raises(ValueError, match=match):
        mcmc.sample(bivariate, init, kernel=mcmc.Gibbs(kernel), num_samples=10, progress=False)
