"""BayesianLogisticRegression on the space-shuttle O-ring data (seed 002)."""

import numpy as np
import pytest

from lateo.datasets import load_challenger_orings
from lateo.inference.mcmc.diagnostics import mcse_mean
from lateo.models.logistic import BayesianLogisticRegression


@pytest.fixture(scope="module")
def orings():
    return load_challenger_orings(as_frame=False)


def test_flat_prior_map_is_the_published_glm(orings):
    X, y = orings
    model = BayesianLogisticRegression(prior="flat", method="map").fit(X, y)
    np.testing.assert_allclose([model.intercept_, model.coef_[0]], [15.0429, -0.23216], atol=1e-4)


def test_jeffreys_map_shrinks_toward_zero(orings):
    X, y = orings
    flat = BayesianLogisticRegression(prior="flat", method="map").fit(X, y)
    firth = BayesianLogisticRegression(prior="jeffreys", method="map").fit(X, y)
    assert abs(firth.coef_[0]) < abs(flat.coef_[0])  # Firth's bias reduction


@pytest.fixture(scope="module")
def posteriors(orings):
    X, y = orings
    return {k: BayesianLogisticRegression(kernel=k, num_warmup=2000, num_samples=3000, random_state=1,
                                          progress=False).fit(X, y) for k in ("rwm", "mala", "hmc", "nuts")}


@pytest.mark.parametrize("kernel", ["rwm", "mala", "nuts"])
def test_kernels_agree_within_mcse(posteriors, kernel):
    """Posterior means under N(0, 100^2): RWMH, MALA and NUTS agree with HMC within 4 combined MCSE."""
    other, hmc = posteriors[kernel].samples_, posteriors["hmc"].samples_
    for j in range(2):
        diff = other[..., j].mean() - hmc[..., j].mean()
        se = np.hypot(mcse_mean(other[..., j]), mcse_mean(hmc[..., j]))
        assert abs(diff) < 4 * se, (kernel, j, diff, se)


def test_failure_at_31_degrees(posteriors):
    """The O-ring question: distress is almost certain at Challenger's 31 F."""
    proba, lower, upper = posteriors["hmc"].predict_proba(np.array([[31.0], [75.0]]), return_interval=True)
    assert proba.shape == (2, 2) and np.allclose(proba.sum(1), 1.0)
    assert proba[0, 1] > 0.95 and lower[0] > 0.8 and upper[0] <= 1.0
    assert proba[1, 1] < 0.2 and lower[1] <= proba[1, 1] <= upper[1]
    np.testing.assert_array_equal(posteriors["hmc"].predict(np.array([[31.0], [75.0]])), [1, 0])


@pytest.mark.parametrize(
    "kwargs, y, match",
    [
        ({}, np.array([0, 1, 2] * 7 + [0, 1]), "binary"),
        ({}, np.zeros(5), "shape"),
        ({"prior": "cauchy"}, None, "prior"),
        ({"method": "vi"}, None, "method"),
        ({"prior_scale": 0.0}, None, "prior_scale"),
    ],
)
def test_bad_input(orings, kwargs, y, match):
    X, y0 = orings
    with pytest.raises(ValueError, match=match):
        BayesianLogisticRegression(**{"method": "map", **kwargs}).fit(X, y0 if y is None else y)
