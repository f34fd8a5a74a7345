"""ProgressionModel / MCMC-SAEM: recovery of known parameters from simulated cohorts, the SAEM schedule,
predictions aligned with the input, simulation, and bad input.

Fits are shared per module (compiling the SAEM loop dominates). Tolerances: individual parameters
by correlation with the truth; population parameters by their sampling spread at these sizes
(noise and random-effect standard deviations to 10-15 %, estimated from repeated simulations while
writing the tests); the reference time and the positions are only weakly identified jointly (the
likelihood is nearly flat along t0 -> t0 - d, p_k -> p_k - v_k d), so the tests check the
combination p_k - v_k t0 that the data pin down.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from lateo import ProgressionModel
from lateo.algorithms.saem import SAEM
from lateo.models.progression import _model as M
from lateo.models.progression import simulate_cohort

FEATURES = ["memory", "language", "motor"]
LINEAR = M.Theta(M.Population(np.asarray(70.0), np.array([10.0, 20.0, 5.0]), np.array([1.0, 2.0, 0.5])),
                 np.asarray(5.0), np.asarray(0.5), np.array([0.5, 1.0, 0.3]))  # fmt: skip
LOGISTIC = M.Theta(M.Population(np.asarray(70.0), np.log(np.array([1.0])), np.log(np.array([0.08]))),
                   np.asarray(2.5), np.asarray(0.5), np.array([0.01]))  # fmt: skip
LOGISTIC3 = M.Theta(M.Population(np.asarray(70.0), np.log(np.array([1.0, 2.0, 0.5])),
                                  np.log(np.array([0.08, 0.06, 0.1]))),
                    np.asarray(2.5), np.asarray(0.5), np.array([0.01, 0.015, 0.01]))  # fmt: skip
LINEAR1 = M.Theta(M.Population(np.asarray(70.0), np.array([10.0]), np.array([1.0])), np.asarray(5.0),
                  np.asarray(0.5), np.array([0.5]))  # fmt: skip
VISITS = np.arange(-3, 3) * 1.5  # 6 visits over 7.5 years
# Logistic cohorts are simulated so that almost no value falls outside (0, 1) (onsets within a few
# years, small noise): clipping them, as simulate does, makes the Gaussian model misspecified there,
# and its maximum-likelihood estimate then differs from the truth by many standard errors at N = 2,000.
SPECS = {  # name: (model, theta, features)
    "linear": ("linear", LINEAR, FEATURES),
    "logistic": ("logistic", LOGISTIC, ["score"]),
    "logistic3": ("logistic", LOGISTIC3, FEATURES),
    "linear1": ("linear", LINEAR1, ["score"]),
}


@functools.cache
def cohort(name, n, seed):
    kind, theta, features = SPECS[name]
    return simulate_cohort(kind, theta, n, VISITS, np.random.default_rng(seed), features)


@functools.cache
def fitted(name, n, seed=0):
    df, truth = cohort(name, n, seed)
    return ProgressionModel(SPECS[name][0], n_iter=800, random_state=seed, progress=False).fit(df), truth


@pytest.mark.parametrize("kind", ["linear", "logistic"])
def test_individual_parameters_recovered(kind):
    """N = 500 subjects with 6 visits: tau_i and xi_i correlate with the truth."""
    model, truth = fitted(kind, 500)
    est = model.individual_parameters_.loc[truth.index]
    assert np.corrcoef(est["tau"], truth["tau"])[0, 1] > 0.9
    assert np.corrcoef(est["xi"], truth["xi"])[0, 1] > 0.9
    np.testing.assert_allclose(est["alpha"], np.exp(est["xi"]))


def truth_vector(name):
    kind, theta, _ = SPECS[name]
    pop = jax.tree_util.tree_map(lambda x: np.asarray(x, float), theta.population)
    vec = np.array(M.theta_vector(M.Theta(pop, np.asarray(theta.tau_std), np.asarray(theta.xi_std),
                                          np.asarray(theta.noise_std))))  # fmt: skip
    if kind == "logistic":  # reported on the natural scale: g and v
        k = len(theta.noise_std)
        vec[1 : 1 + 2 * k] = np.exp(vec[1 : 1 + 2 * k])
    return vec


def effective_noise(name, n):
    """The residual spread around the true curves in the simulated data (clipping into (0, 1) shrinks it)."""
    kind, theta, features = SPECS[name]
    df, truth = cohort(name, n, 0)
    times = df["TIME"].to_numpy().reshape(n, -1)
    pop = jax.tree_util.tree_map(jnp.asarray, theta.population)
    curve = np.asarray(M.predict(kind, jnp.asarray(times), pop, jnp.asarray(truth["tau"].to_numpy()),
                                 jnp.asarray(truth["xi"].to_numpy())))  # fmt: skip
    return (df[features].to_numpy().reshape(curve.shape) - curve).reshape(-1, len(features)).std(axis=0)


def assert_within_three_se(name, n):
    model, _ = fitted(name, n)
    df, _ = cohort(name, n, 0)
    se = model.standard_errors(df)
    truth = truth_vector(name)
    k = len(model.features_)
    truth[-k:] = effective_noise(name, n)
    z = (model.params_.to_numpy() - truth) / se.to_numpy()
    assert np.all(np.isfinite(z)) and np.all(se > 0)
    assert np.all(np.abs(z) < 3.0), dict(zip(model.params_.index, np.round(z, 2)))
    return np.abs(model.params_.to_numpy() - truth)


@pytest.mark.parametrize("name", ["linear", "logistic", "logistic3"])
def test_population_parameters_within_three_standard_errors(name):
    """N = 500: every population parameter within 3 estimated standard errors of the truth.

    The standard errors come from the empirical Fisher information of the subjects' Laplace
    marginal scores; the noise is compared with the residual spread of the simulated data."""
    assert_within_three_se(name, 500)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["linear1", "logistic", "linear", "logistic3"])
def test_large_cohort_within_three_standard_errors_and_closer(name):
    """N = 2,000 (univariate and 3 features): within 3 standard errors at N = 2,000 and N = 100, and
    closer to the truth at N = 2,000 on average."""
    errors_large = assert_within_three_se(name, 2000)
    errors_small = assert_within_three_se(name, 100)
    assert np.mean(errors_large / (np.abs(truth_vector(name)) + 1e-3)) < np.mean(
        errors_small / (np.abs(truth_vector(name)) + 1e-3)
    )


def test_standard_errors_shrink_like_one_over_root_n():
    small, _ = fitted("linear", 100)
    large, _ = fitted("linear", 500)
    ratio = (small.standard_errors(cohort("linear", 100, 0)[0]) / large.standard_errors(cohort("linear", 500, 0)[0]))
    assert 1.6 < float(np.median(ratio)) < 3.2  # sqrt(5) = 2.24


def test_linear_identified_combination():
    """p_k - v_k t0 (the population line at time 0) and the noise are recovered to 5 %."""
    truth = LINEAR.population.position - LINEAR.population.speed * 70.0
    model, _ = fitted("linear", 500)
    est = model.position_.to_numpy() - model.speed_.to_numpy() * model.t0_
    np.testing.assert_allclose(est, truth, rtol=0.05)
    np.testing.assert_allclose(model.noise_std_.to_numpy(), LINEAR.noise_std, rtol=0.05)


def test_fit_attributes_traces_and_rhat():
    model, _ = fitted("linear", 500)
    assert list(model.params_.index) == M.theta_names(FEATURES)
    assert model.traces_.shape == (800, 2 * len(model.params_))
    assert model.objective_.shape == (800,) and np.all(np.isfinite(model.objective_))
    assert set(model.rhat_.index) == set(model.params_.index)
    assert 0.1 < model.acceptance_rate_["individual"] < 0.6  # the seed's 20-60 % band, tuned toward 0.3
    # the final parameters are the M-step of the chain-averaged statistics, hence of the per-chain traces
    last = model.traces_.iloc[-1].unstack("chain").mean(axis=1)
    np.testing.assert_allclose(last[model.params_.index.drop("t0")].to_numpy(), model.params_.drop("t0").to_numpy(),
                               rtol=0.2)  # fmt: skip


def test_predict_is_aligned_with_the_input_rows():
    model, _ = fitted("linear", 100)
    df, _ = cohort("linear", 100, 0)
    shuffled = df.sample(frac=1.0, random_state=1)
    shuffled.index = [f"row{i}" for i in shuffled.index]  # labels that name the original rows
    pred = model.predict(shuffled)
    assert list(pred.index) == list(shuffled.index) and list(pred.columns) == FEATURES
    direct = model.predict(df)
    np.testing.assert_allclose(pred.loc[[f"row{i}" for i in df.index]].to_numpy(), direct.to_numpy())
    resid = (df[FEATURES] - model.predict(df)).std()
    np.testing.assert_allclose(resid.to_numpy(), LINEAR.noise_std, rtol=0.2)
    grid = model.predict([0, 1], np.array([60.0, 70.0, 80.0]))
    assert grid.shape == (6, 5) and list(grid["ID"]) == [0, 0, 0, 1, 1, 1]
    with pytest.raises(ValueError, match="not in the training data"):
        model.predict(pd.DataFrame({"ID": [999], "TIME": [70.0], "memory": [1.0], "language": [1.0], "motor": [1.0]}))


def test_personalize_mode_and_mean_agree_with_the_fit():
    model, truth = fitted("linear", 100)
    df, _ = cohort("linear", 100, 0)
    subset = df[df["ID"] < 20]
    mode = model.personalize(subset)
    mean = model.personalize(subset, method="mean", n_samples=2000, random_state=0)
    assert list(mode.columns) == ["tau", "xi", "alpha", "tau_sd", "xi_sd"] and len(mode) == 20
    # nearly Gaussian posteriors: mode ~ mean within a fraction of a posterior sd, Laplace sd ~ posterior sd
    assert np.all(np.abs(mode["tau"] - mean["tau"]) < 0.3 * mean["tau_sd"] + 0.05)
    np.testing.assert_allclose(mode["tau_sd"], mean["tau_sd"], rtol=0.25)
    # the SAEM's own averages of the draws are posterior means too
    np.testing.assert_allclose(model.individual_parameters_.loc[mean.index, "tau"], mean["tau"], atol=0.3)
    new = subset.assign(ID=subset["ID"] + 1000)  # unseen subjects are personalized the same way
    # other starting points (zeros instead of the fitted values): the same mode up to Newton's tolerance
    np.testing.assert_allclose(model.personalize(new)["tau"].to_numpy(), mode["tau"].to_numpy(), atol=1e-6)


def test_loglikelihood_aic_bic():
    model, _ = fitted("linear", 100)
    df, _ = cohort("linear", 100, 0)
    ll, se = model.loglikelihood(df, random_state=0, return_se=True)
    assert np.isfinite(ll) and 0 < se < 1.0
    ll2 = model.loglikelihood(df, random_state=1, n_samples=4000)
    assert abs(ll - ll2) < 4 * se + 0.05
    p = len(model.params_)
    assert model.aic(df, random_state=0) == pytest.approx(-2 * ll + 2 * p)
    assert model.bic(df, random_state=0) == pytest.approx(-2 * ll + p * np.log(100))
    # the complete-data objective per observation is below the marginal log-likelihood per observation
    # at the end of the fit only up to the entropy of the latents: check the sign of the gap is sane
    assert np.isfinite(model.objective_[-1])


def test_importance_sampling_matches_quadrature():
    """For one subject, the IS log-likelihood equals a brute-force 2-D quadrature of p(y_i, z)."""
    from lateo.models.progression import _inference as I

    model, _ = fitted("linear", 100)
    df, _ = cohort("linear", 100, 0)
    one = df[df["ID"] == 3]
    ll = model.loglikelihood(one, n_samples=20000, random_state=0)
    _, data, theta, _ = model._fixed(one)
    tau = np.linspace(-25, 25, 801)
    xi = np.linspace(-3, 3, 601)
    grid = np.stack(np.meshgrid(tau, xi, indexing="ij"), axis=-1).reshape(-1, 2)
    rows = jax_tree_repeat(data, grid.shape[0])
    vals = np.asarray(I.log_joint("linear", rows, theta, theta.population, jnp.asarray(grid)))
    log_int = np.log(np.sum(np.exp(vals - vals.max()))) + vals.max() + np.log((tau[1] - tau[0]) * (xi[1] - xi[0]))
    assert ll == pytest.approx(log_int, abs=0.02)


def jax_tree_repeat(data, n):
    import jax

    return jax.tree_util.tree_map(lambda x: jnp.repeat(x, n, axis=0), data)


def test_simulate_from_fitted_model():
    model, _ = fitted("logistic", 500)
    df, truth = model.simulate(50, np.arange(4.0), random_state=3)
    assert len(df) == 200 and list(df.columns) == ["ID", "TIME", "score"]
    assert df["score"].between(0, 1, inclusive="neither").all()
    assert truth.shape == (50, 2)


def test_saem_step_size_schedule():
    saem = SAEM(M.ProgressionFamily("linear"), alpha=0.8)
    hyper = saem.make_hyper(None, 10)
    gammas = np.asarray([saem.step_size(k, hyper) for k in (1, 10, 11, 12, 20)])
    np.testing.assert_allclose(gammas, [1.0, 1.0, 1.0, 2.0**-0.8, 10.0**-0.8])
    with pytest.raises(ValueError, match="alpha"):
        SAEM(M.ProgressionFamily("linear"), alpha=0.4).make_hyper(None, 10)


def test_m_step_is_the_closed_form_maximiser():
    """At fixed statistics the M-step maximises the complete log-likelihood (checked against perturbations)."""
    df, truth = cohort("linear", 100, 0)
    from lateo.models.progression._data import from_dataframe

    ld = from_dataframe(df)
    data = M.Data(jnp.asarray(ld.times), jnp.asarray(ld.values), jnp.asarray(ld.mask, float), jnp.ones(100))
    pop = LINEAR.population
    tau, xi = jnp.asarray(truth["tau"].to_numpy()), jnp.asarray(truth["xi"].to_numpy())
    hyper = M.Hyper(M.Population(jnp.asarray(1.0), jnp.ones(3), jnp.ones(3)), jnp.zeros(3), jnp.ones(5), jnp.asarray(0.0))
    stats = M.sufficient_stats("linear", data, jax.tree_util.tree_map(jnp.asarray, pop), tau, xi)
    theta = M.m_step(stats, hyper)
    best = M.complete_loglik(theta, hyper, stats, stats.population)
    for field in ("tau_std", "xi_std", "noise_std"):
        for factor in (0.97, 1.03):
            other = theta._replace(**{field: getattr(theta, field) * factor})
            assert M.complete_loglik(other, hyper, stats, stats.population) < best


@pytest.mark.parametrize(
    ("frame", "kwargs", "match"),
    [
        (pd.DataFrame({"TIME": [1.0, 2.0], "score": [0.2, 0.3]}), {}, "ID"),
        (pd.DataFrame({"ID": [1, 1], "TIME": [1.0, 2.0], "score": [0.2, 1.3]}), {}, r"\(0, 1\)|outside"),
        (pd.DataFrame({"ID": [1, 1], "TIME": [1.0, 1.0], "score": [0.2, 0.3]}), {}, "duplicate"),
        (pd.DataFrame({"ID": [1, 1], "TIME": [1.0, 2.0], "score": [0.2, np.inf]}), {}, "infinite"),
        (pd.DataFrame({"ID": [1, 1], "TIME": [1.0, 2.0], "score": ["a", "b"]}), {}, "numeric|number"),
    ],
)
def test_bad_data(frame, kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        ProgressionModel("logistic", n_iter=5, progress=False, **kwargs).fit(frame)


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"model": "exponential"}, "model must be one of"),
        ({"alpha": 0.3}, "alpha"),
        ({"n_chains": 0}, "n_chains"),
        ({"target_accept": 1.5}, "target_accept"),
        ({"variance_prior": "strong"}, "variance_prior"),
        ({"population_prior_std": {"t0": -1.0}}, "population_prior_std"),
    ],
)
def test_bad_options(params, match):
    df, _ = cohort("logistic", 100, 0)
    with pytest.raises(ValueError, match=match):
        ProgressionModel(**{"n_iter": 5, "progress": False, **params}).fit(df)


def test_input_frame_unchanged_and_one_visit_subjects_fit():
    df, _ = cohort("logistic", 100, 0)
    single = df.groupby("ID").head(1).iloc[:10].assign(ID=lambda d: d["ID"] + 1000)
    data = pd.concat([df, single])
    before = data.copy()
    model = ProgressionModel("logistic", n_iter=30, progress=False, random_state=0).fit(data)
    pd.testing.assert_frame_equal(data, before)
    assert np.all(np.isfinite(model.individual_parameters_.to_numpy()))
