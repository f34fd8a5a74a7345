"""The ridge move of the progression sampler (``ProgressionFamily.symmetry_moves``).

For the linear model the move is an exact symmetry of the likelihood, so the sampler accepts it on
the prior ratio without evaluating the model: every subject's fitted curve must be unchanged, the
opposite step must undo the move and its Jacobian must be 1. For the logistic model it is a
translation, exact to first order at the reference time, whose likelihood ratio is evaluated.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from lateo.models.progression import _model as M

K, N, V = 3, 5, 4


def _state(kind, seed, n_sources=0):
    rng = np.random.default_rng(seed)
    loc = (10.0, 1.0) if kind == "linear" else (0.0, -2.5)
    betas = jnp.asarray(rng.normal(0, 0.1, (K - 1, n_sources))) if n_sources else None
    pop = M.Population(jnp.asarray(70.0), jnp.asarray(rng.normal(loc[0], 1, K)), jnp.asarray(rng.normal(loc[1], 0.3, K)),
                       betas)  # fmt: skip
    individual = jnp.asarray(np.column_stack([rng.normal(0, 5, N), rng.normal(0, 0.5, N), rng.normal(0, 1, (N, n_sources))]))
    times = jnp.asarray(70 + rng.normal(0, 5, (N, V)))
    values = jnp.asarray(rng.uniform(0.1, 0.9, (N, V, K)))
    data = M.Data(times, values, jnp.ones((N, V, K)), jnp.ones(N))
    theta = M.Theta(pop, jnp.asarray(5.0), jnp.asarray(0.5), jnp.full(K, 0.05))
    return theta, pop, individual, data


def _move(family, theta, data, pop, individual, step):
    draws = M.SymmetryDraws(jnp.asarray(0.0), jnp.asarray(0.0), jnp.asarray(step), jnp.zeros(3))
    ridged = family.ridge_proposal(theta, pop, draws)
    terms = family.subject_terms(data, pop, individual)
    partial, _, moved, terms_new = family.ridge_terms(data, theta, ridged, individual, terms, draws)
    return ridged, moved, partial, terms, terms_new


@pytest.mark.parametrize("n_sources", [0, 1])
@pytest.mark.parametrize("step", [0.7, -2.3])
def test_linear_ridge_move_keeps_every_curve(n_sources, step):
    family = M.ProgressionFamily("linear")
    theta, pop, individual, data = _state("linear", 0, n_sources)
    ridged, moved, partial, terms, terms_new = _move(family, theta, data, pop, individual, step)
    assert not np.allclose(ravel_pytree(ridged)[0], ravel_pytree(pop)[0])  # the move moves
    before = M.predict("linear", data.times, pop, *M.split_individual(individual))
    after = M.predict("linear", data.times, ridged, *M.split_individual(moved))
    np.testing.assert_allclose(after, before, rtol=1e-12, atol=1e-10)
    # so the sampler skips the model evaluation: no likelihood change, the terms carried over
    assert float(partial) == 0.0 and terms_new is terms
    np.testing.assert_allclose(family.subject_terms(data, ridged, moved), terms, rtol=1e-9, atol=1e-10)


def test_linear_ridge_move_is_undone_by_the_opposite_step_and_preserves_volume():
    family = M.ProgressionFamily("linear")
    theta, pop, individual, data = _state("linear", 1)
    ridged, moved = _move(family, theta, data, pop, individual, 1.3)[:2]
    back, moved_back = _move(family, theta, data, ridged, moved, -1.3)[:2]
    np.testing.assert_allclose(ravel_pytree(back)[0], ravel_pytree(pop)[0], rtol=1e-13, atol=1e-12)
    np.testing.assert_allclose(moved_back, individual, rtol=1e-13, atol=1e-12)

    flat, unravel = ravel_pytree((pop, individual))

    def map_(x):
        return ravel_pytree(_move(family, theta, data, *unravel(x), 1.3)[:2])[0]

    assert abs(np.linalg.det(np.asarray(jax.jacfwd(map_)(flat))) - 1.0) < 1e-10


def test_logistic_ridge_move_is_a_translation_with_its_likelihood_evaluated():
    family = M.ProgressionFamily("logistic")
    theta, pop, individual, data = _state("logistic", 2)
    ridged, moved, partial, _, terms_new = _move(family, theta, data, pop, individual, 0.5)
    np.testing.assert_allclose(ridged.speed, pop.speed)
    np.testing.assert_allclose(ridged.t0, pop.t0 + 0.5)
    tau, xi, _ = M.split_individual(individual)
    np.testing.assert_allclose(moved[:, 0], tau + 0.5 * (np.exp(-xi) - 1.0))
    np.testing.assert_allclose(terms_new, family.subject_terms(data, ridged, moved), rtol=1e-12)
    assert float(partial) != 0.0
