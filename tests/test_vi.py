"""ADVI (lateo.vi) on the O-ring posterior against lateo's MCMC; ELBO estimators; transforms; KL divergences."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, stats

from lateo import mcmc, vi
from lateo.datasets import load_challenger_orings
from lateo.inference.vi import advi, estimators as elbo_mod, families, kl, transforms

PRIOR_SD = 100.0
MLE = jnp.array([15.0429, -0.23216])  # the published GLM fit (test_logistic.py): a starting point


# ----------------------------------------------------------------------------- the O-ring posterior


X_, Y_ = load_challenger_orings(as_frame=False)
TEMP, FAIL = jnp.asarray(X_[:, 0]), jnp.asarray(Y_, jnp.float64)
TBAR = float(X_[:, 0].mean())


def logdensity_raw(theta):
    """Log posterior of (alpha, beta), logit p = alpha + beta * temperature, N(0, 100^2) priors."""
    eta = theta[0] + theta[1] * TEMP
    return jnp.sum(FAIL * eta - jnp.logaddexp(0.0, eta)) - 0.5 * jnp.sum(theta**2) / PRIOR_SD**2


def to_raw(theta_c):
    """(alpha_c, beta) -> (alpha, beta) with alpha = alpha_c - beta * mean temperature (a unit-Jacobian shear)."""
    return jnp.stack([theta_c[..., 0] - theta_c[..., 1] * TBAR, theta_c[..., 1]], axis=-1)


def logdensity_centred(theta_c):
    """The same posterior in centred coordinates: logit p = alpha_c + beta * (temperature - mean)."""
    return logdensity_raw(to_raw(theta_c))


@pytest.fixture(scope="module")
def reference():
    """MALA draws of (alpha, beta): 4 chains x 2000 after 1000 warm-up (MALA compiles 3x faster than HMC here).

    Bulk ESS ~2,800, so the Monte Carlo error of the means is < 1%, far inside the 10% tolerance.
    """
    res = mcmc.sample(logdensity_raw, MLE, kernel="mala", num_warmup=1000, num_samples=2000, num_chains=4, key=1,
                      progress=False, warn=False)  # fmt: skip
    assert np.min(np.asarray(res.summary()["ess_bulk"])) > 1000
    return np.asarray(res.samples).reshape(-1, 2)


@pytest.fixture(scope="module")
def meanfield():
    """Mean-field ADVI in centred coordinates, where the posterior correlation is weak (0.3)."""
    return vi.fit(logdensity_centred, jnp.zeros(2), family="meanfield", num_steps=10_000, key=0, progress=False)


@pytest.fixture(scope="module")
def fullrank():
    """Full-rank ADVI in the raw coordinates, where alpha and beta are correlated at -0.998."""
    return vi.fit(logdensity_raw, MLE, family="fullrank", num_steps=10_000, key=0, progress=False)


def test_meanfield_means_within_10_percent_of_mcmc(meanfield, reference):
    mean_c = np.asarray(meanfield.mean)
    ref_c = np.column_stack([reference[:, 0] + reference[:, 1] * TBAR, reference[:, 1]]).mean(0)
    np.testing.assert_allclose(mean_c, ref_c, rtol=0.10)
    np.testing.assert_allclose(np.asarray(to_raw(jnp.asarray(mean_c))), reference.mean(0), rtol=0.10)
    assert np.allclose(meanfield.correlation, np.eye(2))  # mean-field: no correlation by construction


def test_fullrank_captures_alpha_beta_correlation(fullrank, reference):
    rho_mcmc = np.corrcoef(reference.T)[0, 1]
    rho_vi = fullrank.correlation[0, 1]
    assert np.sign(rho_vi) == np.sign(rho_mcmc) == -1
    assert abs(rho_vi - rho_mcmc) < 0.1, (rho_vi, rho_mcmc)
    np.testing.assert_allclose(np.asarray(fullrank.mean), reference.mean(0), rtol=0.10)
    np.testing.assert_allclose(fullrank.std, reference.std(0), rtol=0.25)  # reverse KL: under-dispersed, not far


def _blocks(trace, n_blocks):
    blocks = np.array_split(trace, n_blocks)
    means = np.array([b.mean() for b in blocks])
    ses = np.array([b.std(ddof=1) / np.sqrt(len(b)) for b in blocks])
    return means, ses


@pytest.mark.parametrize("which", ["meanfield", "fullrank"])
def test_elbo_trace_non_decreasing_on_average(which, request):
    trace = request.getfixturevalue(which).elbo
    assert trace.shape == (10_000,) and np.all(np.isfinite(trace))
    means, ses = _blocks(trace, 10)
    assert means[-1] > means[0] + 4 * np.hypot(ses[0], ses[-1])
    # every block's mean is at least the previous one's, up to 4 standard errors of Monte Carlo noise
    drops = means[:-1] - means[1:]
    assert np.all(drops < 4 * np.hypot(ses[:-1], ses[1:])), (means, ses)
    rolling = np.convolve(trace, np.ones(500) / 500, mode="valid")
    assert np.argmax(rolling) > len(rolling) // 2  # the best stretch is in the second half


def _gradients(problem, params, estimator, n):
    """``n`` independent one-draw gradient estimates, flattened: (n, n_params)."""
    def one(key):
        _, g = elbo_mod.elbo_grad(problem, params, key, estimator=estimator)
        return jnp.concatenate([jnp.ravel(x) for x in jax.tree_util.tree_leaves(g)])

    return np.asarray(jax.jit(jax.vmap(one))(jax.random.split(jax.random.key(7), n)))


def test_stl_lowers_gradient_variance_near_the_optimum(fullrank):
    """Roeder et al. (2017): near the optimum the STL gradient's variance is far below the standard one's.

    Both estimators use the same 4,000 noise draws at the fitted parameters. With
    D_i = ||g_i - mean g||^2 (the total variance is E D), the paired difference of D
    between the estimators must exceed 5 standard errors, the variance must drop by half
    at least, and both gradients must have the same mean (both are unbiased).
    """
    problem = elbo_mod.Problem(logdensity_raw, fullrank.problem.layout, families.FullRank(), "stl", 1, False)
    params = jax.tree_util.tree_map(jnp.asarray, fullrank.params)
    g_std = _gradients(problem, params, "standard", 4000)
    g_stl = _gradients(problem, params, "stl", 4000)
    d_std = np.sum((g_std - g_std.mean(0)) ** 2, 1)
    d_stl = np.sum((g_stl - g_stl.mean(0)) ** 2, 1)
    diff = d_std - d_stl
    assert diff.mean() > 5 * diff.std(ddof=1) / np.sqrt(len(diff))
    assert d_stl.mean() < 0.5 * d_std.mean(), (d_stl.mean(), d_std.mean())
    se = np.sqrt(g_std.var(0) / len(g_std) + g_stl.var(0) / len(g_stl))
    assert np.all(np.abs(g_std.mean(0) - g_stl.mean(0)) < 5 * se + 1e-12)


def test_estimators_share_their_expectation(fullrank):
    """standard, STL, analytic entropy and the KL form with a split-off prior estimate the same ELBO."""
    layout, fam = fullrank.problem.layout, families.FullRank()
    params = jax.tree_util.tree_map(jnp.asarray, fullrank.params)
    key, n = jax.random.key(3), 200_000
    problems = {e: elbo_mod.Problem(logdensity_raw, layout, fam, e, n, False) for e in ("standard", "stl", "analytic")}

    def loglik(theta):
        return logdensity_raw(theta) + 0.5 * jnp.sum(theta**2) / PRIOR_SD**2

    with_prior = elbo_mod.Problem(loglik, layout, fam, "stl", n, True)

    @jax.jit
    def estimates(params):
        values = {e: elbo_mod.elbo(p, params, key) for e, p in problems.items()}
        values["split"] = elbo_mod.elbo(with_prior, params, key, (jnp.zeros(2), jnp.full(2, PRIOR_SD)))
        u = problems["stl"].draws(params, key)
        return values, u, fam.log_prob(params, u)

    values, u, log_q = jax.tree_util.tree_map(np.asarray, estimates(params))
    assert values["standard"] == pytest.approx(values["stl"], rel=1e-12)  # same value, different gradient
    # standard - analytic = mean(-log q(u_s)) - H[q]: Monte Carlo error of the entropy term only
    assert abs(values["analytic"] - values["standard"]) < 5 * log_q.std() / np.sqrt(n)
    # analytic - split = mean(log prior(u_s)) - E_q[log prior] + the prior's constant, absent from logdensity_raw
    normaliser = 2 * (np.log(PRIOR_SD) + 0.5 * np.log(2 * np.pi))
    log_prior = -0.5 * np.sum(u**2, 1) / PRIOR_SD**2
    assert abs(values["split"] - (values["analytic"] - normaliser)) < 5 * log_prior.std() / np.sqrt(n)


def test_lowrank_with_split_prior_matches_mcmc(reference):
    """Low-rank family (rank 1) and the KL-form ELBO: likelihood by Monte Carlo, KL to the prior in closed form."""
    def loglik(theta_c):
        theta = to_raw(theta_c)
        eta = theta[0] + theta[1] * TEMP
        return jnp.sum(FAIL * eta - jnp.logaddexp(0.0, eta))

    # N(0, 100^2) on the centred coordinates: a (slightly) different prior, negligible next to the likelihood
    post = vi.fit(loglik, jnp.zeros(2), family="lowrank", rank=1, num_steps=10_000, key=0, progress=False,
                  prior=(0.0, PRIOR_SD))  # fmt: skip
    ref_c = np.column_stack([reference[:, 0] + reference[:, 1] * TBAR, reference[:, 1]])
    np.testing.assert_allclose(np.asarray(post.mean), ref_c.mean(0), rtol=0.10)
    assert abs(post.correlation[0, 1] - np.corrcoef(ref_c.T)[0, 1]) < 0.1


def test_posterior_object(meanfield):
    draws = meanfield.sample(1, 500)
    assert draws.shape == (500, 2)
    np.testing.assert_array_equal(draws, meanfield.sample(1, 500))  # same key, same draws
    assert meanfield.covariance.shape == (2, 2) and np.all(meanfield.std > 0)
    assert meanfield.kl(meanfield) == pytest.approx(0.0, abs=1e-12)
    idata = meanfield.to_arviz(num_samples=300)
    assert idata.posterior["x"].shape == (1, 300, 2)
    assert "meanfield" in repr(meanfield)


def test_fit_compiles_once_and_is_reproducible(meanfield):
    size = advi._run_chunk._cache_size()
    again = vi.fit(logdensity_centred, jnp.zeros(2), family="meanfield", num_steps=10_000, key=0, progress=False)
    np.testing.assert_array_equal(again.elbo, meanfield.elbo)
    short = vi.fit(logdensity_centred, jnp.ones(2), family="meanfield", num_steps=advi.CHUNK + 7, key=5,
                   learning_rate=0.05, progress=True)  # fmt: skip  (two chunks, with the progress bar)
    assert advi._run_chunk._cache_size() == size  # other steps, key, learning rate and init: no recompilation
    assert short.elbo.shape == (advi.CHUNK + 7,) and np.all(np.isfinite(short.elbo))


# ----------------------------------------------------------------------------- constraints


def _constrained_target(p):
    """sigma ~ LogNormal(0, 0.3^2) (Gaussian in log space) and w ~ Dirichlet(20, 30, 50), independent."""
    log_sigma = jnp.log(p["sigma"])
    lp_sigma = -0.5 * (log_sigma / 0.3) ** 2 - log_sigma
    lp_w = jnp.sum((jnp.array([20.0, 30.0, 50.0]) - 1) * jnp.log(p["w"]))
    return lp_sigma + lp_w


def test_constrained_fit_recovers_lognormal_and_dirichlet():
    init = {"sigma": 2.0, "w": jnp.array([0.5, 0.25, 0.25])}
    post = vi.fit(_constrained_target, init, family="fullrank", num_steps=5000, key=0, progress=False,
                  constraints={"sigma": "positive", "w": "simplex"})  # fmt: skip
    names = post.coordinate_names
    i = names.index("sigma")
    # in log space sigma's posterior is exactly N(0, 0.3^2): the Gaussian family contains it
    assert abs(post.loc[i]) < 0.02 and abs(post.std[i] - 0.3) < 0.02
    assert post.mean["sigma"] == pytest.approx(np.exp(0.5 * post.covariance[i, i] + post.loc[i]))
    np.testing.assert_allclose(post.mean["w"], [0.2, 0.3, 0.5], atol=0.01)
    draws = post.sample(0, 1000)
    assert draws["w"].shape == (1000, 3) and np.allclose(draws["w"].sum(1), 1) and np.all(draws["sigma"] > 0)


TRANSFORM_CASES = [
    ("positive", jnp.array([-1.3, 0.2, 2.5])),
    ("softplus", jnp.array([-4.0, 0.1, 3.0])),
    ("unit_interval", jnp.array([-2.0, 0.0, 1.7])),
    ("simplex", jnp.array([0.4, -1.2, 2.0, 0.3])),
    ("real", jnp.array([0.5, -0.5])),
]


@pytest.mark.parametrize("name, u", TRANSFORM_CASES)
def test_transform_round_trip_and_log_det(name, u):
    t = transforms.TRANSFORMS[name]
    free = (lambda v: t.forward(v)[:-1]) if name == "simplex" else t.forward  # simplex: the first K - 1 are free

    @jax.jit
    def check(u):
        x = t.forward(u)
        return x, t.inverse(x), t.log_det_jacobian(u), jax.jacfwd(free)(u)

    x, back, log_det, jac = check(u)
    assert t.in_support(np.asarray(x))
    np.testing.assert_allclose(back, u, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(log_det, np.linalg.slogdet(np.asarray(jac))[1], rtol=1e-10, atol=1e-12)


def test_stick_breaking_centre_and_batch():
    t = transforms.StickBreaking()
    np.testing.assert_allclose(jax.jit(t.forward)(jnp.zeros(4)), np.full(5, 0.2), atol=1e-14)
    u = jax.random.normal(jax.random.key(0), (3, 2))
    x = jax.jit(t.forward)(u)
    assert x.shape == (3, 3)
    np.testing.assert_allclose(x.sum(-1), 1.0, atol=1e-14)
    np.testing.assert_allclose(jax.jit(t.inverse)(x), u, atol=1e-10)


# ----------------------------------------------------------------------------- KL divergences


def test_kl_normal_against_quadrature_and_monte_carlo():
    mq, sq, mp, sp = 0.3, 0.7, -0.5, 1.6
    q, p = stats.norm(mq, sq), stats.norm(mp, sp)
    quad, _ = integrate.quad(lambda x: q.pdf(x) * (q.logpdf(x) - p.logpdf(x)), -np.inf, np.inf)
    assert float(kl.kl_normal(mq, sq, mp, sp)) == pytest.approx(quad, rel=1e-9)
    x = q.rvs(size=400_000, random_state=np.random.default_rng(0))
    ratio = q.logpdf(x) - p.logpdf(x)
    assert abs(float(kl.kl_normal(mq, sq, mp, sp)) - ratio.mean()) < 5 * ratio.std() / np.sqrt(len(x))
    assert float(kl.kl_normal(mq, sq, mq, sq)) == 0.0


def _kl_mvn_brute(mq, cq, mp, cp):
    """Seed 004's formula term by term, with explicit inverses and determinants."""
    ip = np.linalg.inv(cp)
    d = mq - mp
    return 0.5 * (np.log(np.linalg.det(cp) / np.linalg.det(cq)) - len(mq) + np.trace(ip @ cq) + d @ ip @ d)


def test_kl_mvn_against_formula_and_monte_carlo():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(3, 3)), rng.normal(size=(3, 3))
    cq, cp = a @ a.T + 0.5 * np.eye(3), b @ b.T + 0.5 * np.eye(3)
    mq, mp = rng.normal(size=3), rng.normal(size=3)
    value = float(kl.kl_mvn(mq, cq, mp, cp))
    assert value == pytest.approx(_kl_mvn_brute(mq, cq, mp, cp), rel=1e-10)
    assert float(kl.kl_mvn_tril(mq, np.linalg.cholesky(cq), mp, np.linalg.cholesky(cp))) == pytest.approx(value, rel=1e-12)
    x = rng.multivariate_normal(mq, cq, size=400_000)
    ratio = stats.multivariate_normal(mq, cq).logpdf(x) - stats.multivariate_normal(mp, cp).logpdf(x)
    assert abs(value - ratio.mean()) < 5 * ratio.std() / np.sqrt(len(x))
    assert float(kl.kl_mvn(mq, cq, mq, cq)) == pytest.approx(0.0, abs=1e-12)
    # diagonal case = sum of univariate ones = full formula with diagonal matrices
    sq, sp = np.array([0.5, 1.0, 2.0]), np.array([1.5, 0.7, 1.0])
    diag = float(kl.kl_diag_normal(mq, sq, mp, sp))
    assert diag == pytest.approx(_kl_mvn_brute(mq, np.diag(sq**2), mp, np.diag(sp**2)), rel=1e-10)
    # batched
    batch = kl.kl_mvn(np.stack([mq, mp]), np.stack([cq, cp]), mp, cp)
    np.testing.assert_allclose(batch, [value, 0.0], atol=1e-12)


def test_gaussian_entropy():
    rng = np.random.default_rng(2)
    a = rng.normal(size=(3, 3))
    cov = a @ a.T + np.eye(3)
    assert float(kl.gaussian_entropy_tril(np.linalg.cholesky(cov))) == pytest.approx(
        stats.multivariate_normal(np.zeros(3), cov).entropy(), rel=1e-12)


def test_kl_uniform_against_quadrature():
    a1, b1, a2, b2 = 0.2, 0.9, -1.0, 2.0
    quad, _ = integrate.quad(lambda x: np.log((1 / (b1 - a1)) / (1 / (b2 - a2))) / (b1 - a1), a1, b1)
    assert float(kl.kl_uniform(a1, b1, a2, b2)) == pytest.approx(quad, rel=1e-12)
    assert float(kl.kl_uniform(a1, b1, a2, b2)) == pytest.approx(np.log(3.0 / 0.7))
    assert float(kl.kl_uniform(0.0, 1.0, 0.0, 1.0)) == 0.0
    assert np.isinf(kl.kl_uniform(-2.0, 0.5, -1.0, 2.0))  # q puts mass where p has none
    assert np.isinf(kl.kl_uniform(0.0, 3.0, -1.0, 2.0))
    assert np.isfinite(kl.kl_uniform(-1.0, 2.0, -1.0, 2.0))
    # p wider than q in the other order is infinite: KL is not symmetric
    assert np.isinf(kl.kl_uniform(a2, b2, a1, b1))
    np.testing.assert_allclose(kl.kl_uniform(jnp.array([0.0, 0.0]), jnp.array([1.0, 4.0]), 0.0, 2.0),
                               [np.log(2.0), np.inf])  # fmt: skip


# ----------------------------------------------------------------------------- bad input


def _ld(theta):
    return -0.5 * jnp.sum(theta**2)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"family": "gaussian"}, "family must be one of"),
        ({"init": jnp.array([0.0, jnp.nan])}, "init must hold finite"),
        ({"family": "lowrank", "rank": 0}, "rank must be an integer >= 1"),
        ({"family": "lowrank", "rank": 2}, "rank must be an integer >= 1 and < the dimension 2"),
        ({"family": "meanfield", "rank": 1}, "rank is only used by family='lowrank'"),
        ({"num_steps": 0}, "num_steps must be >= 1"),
        ({"num_samples": 0}, "num_samples must be >= 1"),
        ({"estimator": "reinforce"}, "estimator must be one of"),
        ({"learning_rate": -1.0}, "learning_rate must be > 0"),
        ({"init_scale": 0.0}, "init_scale must be > 0"),
        ({"constraints": "positive"}, "outside the support of its constraint 'positive'"),
        ({"constraints": "banana"}, "unknown constraint 'banana'"),
        ({"init": {"a": 1.0}, "constraints": {"b": "positive"}, "logdensity": lambda p: -p["a"]}, "not top-level keys"),
        ({"init": {"w": jnp.array([0.5, 0.6])}, "constraints": {"w": "simplex"}, "logdensity": lambda p: 0.0},
         "outside the support of its constraint 'simplex'"),
        ({"init": {"w": jnp.array([1.0])}, "constraints": {"w": "simplex"}, "logdensity": lambda p: 0.0}, "K >= 2"),
        ({"prior": (0.0, -1.0)}, "scale > 0"),
        ({"prior": 3.0}, "prior must be a pair"),
        ({"optimizer": "adam"}, "optimizer must be an optax"),
        ({"logdensity": lambda t: jnp.where(t[0] > 5, 0.0, -jnp.inf)}, "log-density is -inf at init"),
        ({"progress": "yes"}, "progress must be"),
    ],
)
def test_bad_input(kwargs, match):
    kwargs = {"logdensity": _ld, "init": jnp.array([-1.0, 0.5]), "num_steps": 1, "progress": False, **kwargs}
    with pytest.raises(ValueError, match=match):
        vi.fit(**kwargs)


def test_logdensity_must_be_callable():
    with pytest.raises(TypeError, match="logdensity must be a callable"):
        vi.fit(3.0, jnp.zeros(2))
