"""Distributed MCMC-SAEM for ProgressionModel on a Dask LocalCluster: one partition reproduces the
single-process fit, a partitioned fit recovers a simulated cohort, and bad input fails clearly.

Tolerances: with one partition the kernel, keys and start are the single-process ones, so only
rounding differs (1e-10). With three partitions the random streams differ, so the fit is another
SAEM estimate of the same maximum-likelihood estimate: as in tests/test_progression.py, every
population parameter must lie within 3 of its estimated standard errors (empirical Fisher
information of the Laplace marginal scores) of the truth, the noise compared with the residual
spread of the simulated data; SAEM's Monte Carlo error (its step sizes after burn-in average about
(K - K_1)^alpha / (1 + alpha) draws, ~30 here) is a fraction of a standard error.
"""

import functools
import sys
import time

import numpy as np
import pandas as pd
import pytest

dask = pytest.importorskip("dask")
distributed = pytest.importorskip("distributed")

import dask.dataframe as dd  # noqa: E402

from lateo import ProgressionModel  # noqa: E402
from lateo.models.progression import simulate_cohort  # noqa: E402

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from test_progression import SPECS, effective_noise, truth_vector  # noqa: E402

TOL = 1e-10


@functools.cache
def cohort(name, n, seed=0):
    kind, theta, features = SPECS[name]
    return simulate_cohort(kind, theta, n, np.arange(-3, 3) * 1.5, np.random.default_rng(seed), features)


def test_one_partition_equals_single_process(client):
    df, _ = cohort("logistic3", 40)
    kw = dict(n_iter=8, n_chains=1, n_mh_steps=2, refine=None, random_state=3, progress=False)
    single = ProgressionModel("logistic", **kw).fit(df)
    dist = ProgressionModel("logistic", **kw).fit(dd.from_pandas(df, npartitions=1), client=client)
    assert dist.n_partitions_ == 1 and dist.refine_accepted_ is False and dist.n_iter_ == single.n_iter_
    np.testing.assert_allclose(dist.params_.to_numpy(), single.params_.to_numpy(), rtol=TOL, atol=TOL)
    np.testing.assert_allclose(dist.individual_parameters_.to_numpy(), single.individual_parameters_.to_numpy(),
                               rtol=TOL, atol=TOL)  # fmt: skip
    np.testing.assert_allclose(dist.objective_, single.objective_, rtol=TOL, atol=TOL)
    np.testing.assert_allclose(dist.traces_.to_numpy(), single.traces_.to_numpy(), rtol=TOL, atol=TOL)
    assert list(dist.individual_parameters_.index) == list(single.individual_parameters_.index)


def test_three_partitions_recover_the_cohort(client):
    name, n = "logistic", 150
    df, _ = cohort(name, n)
    ddf = dd.from_pandas(df, npartitions=3).set_index("ID")  # every subject's rows in one partition
    assert ddf.npartitions == 3
    t = time.perf_counter()
    model = ProgressionModel("logistic", n_iter=150, n_chains=1, n_mh_steps=1, random_state=0,
                             progress=False).fit(ddf)  # fmt: skip
    assert time.perf_counter() - t < 60
    assert model.n_partitions_ == 3 and model.refine_accepted_ is False
    assert set(model.individual_parameters_.index) == set(df["ID"])
    se = model.standard_errors(df)
    truth = pd.Series(truth_vector(name), index=model.params_.index)
    truth.iloc[-1] = effective_noise(name, n)[0]
    z = (model.params_ - truth) / se
    assert np.all(np.isfinite(z)) and np.all(se > 0)
    ridge = ["t0", "position[score]"]  # weakly identified jointly (no Laplace refinement for Dask input)
    assert np.all(np.abs(z.drop(ridge)) < 3.0), dict(np.round(z, 2))
    # ... the identified combination: the fitted curve at the true reference time, within 3 standard
    # errors bounded by the delta method with |cov| <= se_i se_j (any correlation): 3 sum_i |df/dp_i| se_i
    def curve_at(p, t=float(truth["t0"])):
        g, v = p["position[score]"], p["speed[score]"]
        return 1.0 / (1.0 + g * np.exp(-v * (1 + g) ** 2 / g * (t - p["t0"])))

    est = model.params_
    grad = {}
    for name_ in ("t0", "position[score]", "speed[score]"):
        h = 1e-6 * max(abs(est[name_]), 1.0)
        grad[name_] = (curve_at(est.copy().add(pd.Series({name_: h}), fill_value=0)) - curve_at(est)) / h
    bound = 3.0 * sum(abs(grad[k]) * se[k] for k in grad)
    assert abs(curve_at(est) - curve_at(truth)) < bound, (curve_at(est), curve_at(truth), bound)
    fitted = model.predict(df)
    assert fitted.shape == (len(df), 1) and np.all(np.isfinite(fitted.to_numpy()))
    # reproducible from random_state with the same partitioning
    again = ProgressionModel("logistic", n_iter=5, n_chains=1, n_mh_steps=1, random_state=0, progress=False)
    first = ProgressionModel(**again.get_params()).fit(ddf)
    np.testing.assert_array_equal(again.fit(ddf).params_.to_numpy(), first.params_.to_numpy())


def test_subject_split_across_partitions_raises(client):
    df, _ = cohort("logistic", 40)
    ddf = dd.from_pandas(df, npartitions=3, sort=False)  # rows split by position: subjects cut in two
    with pytest.raises(ValueError, match=r"several partitions.*set_index\('ID'\)"):
        ProgressionModel("logistic", n_iter=2, progress=False).fit(ddf, client=client)


@pytest.mark.parametrize("kwargs, fit_kwargs, match", [
    ({"model": "cubic"}, {}, "model"),
    ({}, {"features": ["nope"]}, "not feature columns"),
    ({"refine": "exact"}, {}, "refine"),
    ({"dtype": "float32"}, {}, "dtype='float32' is for in-memory fits"),
])  # fmt: skip
def test_bad_options(client, kwargs, fit_kwargs, match):
    df, _ = cohort("logistic", 20)
    with pytest.raises(ValueError, match=match):
        ProgressionModel(**{"n_iter": 2, "progress": False, **kwargs}).fit(dd.from_pandas(df, npartitions=1),
                                                                          **fit_kwargs)  # fmt: skip


def test_closed_client_raises():
    df, _ = cohort("logistic", 20)
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster:  # fmt: skip
        c = distributed.Client(cluster)
        c.close()
        with pytest.raises(ValueError, match="closed"):
            ProgressionModel("logistic", n_iter=2, progress=False).fit(dd.from_pandas(df, npartitions=1), client=c)


def test_start_from_a_sample_when_there_are_more_subjects(client):
    """More subjects than the client-side sample: population start from 15 sampled subjects, each
    partition's subjects from their posterior modes on the workers."""
    df, _ = cohort("logistic", 40)
    ddf = dd.from_pandas(df, npartitions=2).set_index("ID")
    with dask.config.set({"lateo.distributed.sample-subjects": 15}):
        model = ProgressionModel("logistic", n_iter=4, n_chains=2, n_mh_steps=1, random_state=1,
                                 progress=False).fit(ddf)  # fmt: skip
    assert np.all(np.isfinite(model.params_.to_numpy())) and model.traces_.shape == (4, 2 * len(model.params_))
    assert len(model.individual_parameters_) == 40
