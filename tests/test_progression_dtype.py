"""``ProgressionModel(dtype="float32")``: the SAEM iterations in single precision (Leaspy's), the rest in double."""

import numpy as np
import pytest

from lateo import ProgressionModel
from lateo.core import loop
from lateo.models.progression import _model as M
from lateo.models.progression import simulate_cohort

THETA = M.Theta(M.Population(np.asarray(70.0), np.log(np.array([1.0])), np.log(np.array([0.08]))),
                np.asarray(2.5), np.asarray(0.5), np.array([0.01]))  # fmt: skip
VISITS = np.arange(-3, 3) * 1.5


@pytest.fixture(scope="module")
def fits():
    # the shapes of tests/test_progression.py's N = 500 logistic fits: the float64 program is compiled once
    df, _ = simulate_cohort("logistic", THETA, 500, VISITS, np.random.default_rng(3), ["score"])
    seen = []
    run = loop.run

    def recording_run(model, state, data, *args, **kwargs):
        seen.append((state.params.tau_std.dtype, state.latent.chains.individual.dtype, data.values.dtype))
        return run(model, state, data, *args, **kwargs)

    loop.run = recording_run
    try:
        out = {dt: ProgressionModel("logistic", n_iter=400, random_state=0, progress=False, dtype=dt).fit(df)
               for dt in ("float64", "float32")}  # fmt: skip
    finally:
        loop.run = run
    return df, out, seen


def test_float32_runs_the_loop_in_single_precision_and_reports_double(fits):
    df, models, seen = fits
    assert seen[0] == (np.float64,) * 3
    assert seen[1] == (np.float32,) * 3
    m = models["float32"]
    assert m.params_.dtype == np.float64 and m.theta_.tau_std.dtype == np.float64
    assert np.asarray(m.predict(df)).dtype == np.float64
    assert np.isfinite(m.loglikelihood(df, n_samples=200, random_state=0))


def test_float32_estimates_agree_with_float64_within_standard_errors(fits):
    """Both fits estimate the same maximum-likelihood estimate (same start, keys and refinement; the
    chains part where rounding first flips a decision), so they differ by SAEM's Monte Carlo error,
    a fraction of a standard error (see tests/test_distributed_saem.py)."""
    df, models, _ = fits
    se = models["float64"].standard_errors(df)
    z = (models["float32"].params_ - models["float64"].params_) / se
    assert np.all(np.abs(z.to_numpy()) < 1.0), dict(np.round(z, 2))


def test_unknown_dtype_is_a_clear_error():
    df, _ = simulate_cohort("logistic", THETA, 20, VISITS, np.random.default_rng(0), ["score"])
    with pytest.raises(ValueError, match="dtype must be 'float64' or 'float32'"):
        ProgressionModel("logistic", dtype="float16", progress=False).fit(df)
