"""Space-shift sources in the multivariate progression models: the shift basis, recovery of the mixing
matrix and of the subjects' sources, the methods with sources, and bad input.

The mixing matrix is identified up to the sign of each source (Q = 1) or a rotation (Q >= 2): the
recovery test aligns the sign, then checks every parameter within 3 estimated standard errors.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lateo import ProgressionModel
from lateo.models.progression import _model as M
from lateo.models.progression import simulate_cohort

FEATURES = ["memory", "language", "motor"]
BETAS = np.array([[1.0], [-0.6]])
LINEAR = M.Theta(M.Population(np.asarray(70.0), np.array([10.0, 20.0, 5.0]), np.array([1.0, 2.0, 0.5]), BETAS),
                 np.asarray(5.0), np.asarray(0.5), np.array([0.5, 1.0, 0.3]))  # fmt: skip
LOGISTIC = M.Theta(M.Population(np.asarray(70.0), np.log(np.array([1.0, 2.0, 0.5])), np.log(np.array([0.08, 0.06, 0.1])),
                                np.array([[0.05, 0.0], [0.0, 0.04]])),
                   np.asarray(2.5), np.asarray(0.5), np.array([0.01, 0.015, 0.01]))  # fmt: skip
VISITS = np.arange(-3, 3) * 1.5


@functools.cache
def cohort(kind, n, seed=0):
    theta = LINEAR if kind == "linear" else LOGISTIC
    return simulate_cohort(kind, theta, n, VISITS, np.random.default_rng(seed), FEATURES)


@functools.cache
def fitted_linear(n=500):
    df, truth = cohort("linear", n)
    return ProgressionModel("linear", n_sources=1, n_iter=800, random_state=0, progress=False).fit(df), truth


@pytest.mark.parametrize("kind", ["linear", "logistic"])
def test_shift_basis_is_orthonormal_in_the_metric_and_orthogonal_to_the_velocity(kind):
    rng = np.random.default_rng(1)
    for k in (2, 3, 5):
        position, speed = jnp.asarray(rng.normal(size=k)), jnp.asarray(rng.normal(size=k))
        pop = M.Population(jnp.asarray(0.0), position, speed)
        basis = np.asarray(M.shift_basis(kind, pop))
        if kind == "linear":
            v, metric = np.asarray(speed), np.ones(k)
        else:
            g = np.exp(np.asarray(position))
            v, metric = np.exp(np.asarray(speed)), ((1 + g) ** 2 / g) ** 2
        assert basis.shape == (k, k - 1)
        np.testing.assert_allclose(basis.T @ (metric[:, None] * basis), np.eye(k - 1), atol=1e-12)
        np.testing.assert_allclose((metric * v) @ basis, 0.0, atol=1e-12)


def test_space_shift_is_the_displacement_at_the_reference_time():
    """Logistic: w_k moves f_k(0) by w_k to first order (the shifts are in the data's units)."""
    pop = jax.tree_util.tree_map(jnp.asarray, LOGISTIC.population)
    w = 1e-6
    base = M.curve("logistic", 0.0, pop.position, pop.speed)
    moved = M.curve("logistic", 0.0, pop.position, pop.speed, w)
    np.testing.assert_allclose((moved - base) / w, 1.0, rtol=1e-5)


def test_linear_recovery_with_one_source():
    """N = 500, 3 features, Q = 1: sources correlate with the truth, every parameter within 3 SE."""
    model, truth = fitted_linear()
    df, _ = cohort("linear", 500)
    est = model.individual_parameters_.loc[truth.index]
    corr = np.corrcoef(est["source_0"], truth["source_0"])[0, 1]
    assert abs(corr) > 0.8
    sign = np.sign(corr)
    se = model.standard_errors(df)
    names = list(model.params_.index)
    truth_vec = np.array(M.theta_vector(jax.tree_util.tree_map(jnp.asarray, LINEAR)))
    value = model.params_.to_numpy().copy()
    is_beta = np.array([n.startswith("beta[") for n in names])
    value[is_beta] *= sign
    z = (value - truth_vec) / se.to_numpy()
    assert np.all(np.isfinite(z)) and np.all(se > 0)
    assert np.all(np.abs(z) < 3.0), dict(zip(names, np.round(z, 2)))
    mixing = model.mixing_matrix_.to_numpy() * sign
    true_mixing = np.asarray(M.mixing_matrix("linear", jax.tree_util.tree_map(jnp.asarray, LINEAR.population)))
    np.testing.assert_allclose(mixing, true_mixing, atol=0.15)
    assert corr * sign > 0.8 and np.corrcoef(est["tau"], truth["tau"])[0, 1] > 0.9


def test_methods_with_two_sources():
    df, truth = cohort("logistic", 120)
    model = ProgressionModel("logistic", n_sources=2, n_iter=150, n_chains=1, random_state=0, progress=False).fit(df)
    cols = ["tau", "xi", "alpha", "source_0", "source_1"]
    assert list(model.individual_parameters_.columns) == cols
    assert model.mixing_matrix_.shape == (3, 2) and list(model.mixing_matrix_.index) == FEATURES
    assert [n for n in model.params_.index if n.startswith("beta")] == [f"beta[{k},{q}]" for k in range(2)
                                                                       for q in range(2)]  # fmt: skip
    pred = model.predict(df)
    assert pred.shape == (len(df), 3) and np.isfinite(pred.to_numpy()).all()
    personal = model.personalize(df.iloc[:12])
    assert {"source_0", "source_1", "source_0_sd"} <= set(personal.columns)
    se = model.standard_errors(df)
    is_beta = se.index.str.startswith("beta[")
    assert se[is_beta].isna().all()  # rotations of two sources are not identified
    assert np.isfinite(se[~is_beta]).all()
    assert model._n_params() == len(model.params_) - 1  # one rotation angle
    sim, sim_truth = model.simulate(20, VISITS, random_state=1)
    assert {"source_0", "source_1"} <= set(sim_truth.columns) and sim[FEATURES].notna().all().all()


@pytest.mark.parametrize("n_sources, features", [(3, FEATURES), (1, ["memory"])])
def test_too_many_sources_is_a_clear_error(n_sources, features):
    df, _ = cohort("linear", 20)
    with pytest.raises(ValueError, match="n_sources must be at most"):
        ProgressionModel("linear", n_sources=n_sources, n_iter=5, progress=False).fit(df[["ID", "TIME", *features]])
    with pytest.raises(ValueError, match="n_sources"):
        ProgressionModel("linear", n_sources=-1, n_iter=5, progress=False).fit(df)
