"""Tests for lateo.inference.mcmc.diagnostics: ArviZ differential tests, known-answer
multivariate ESS on i.i.d. and VAR(1) draws, summary tables and bad input."""

import warnings

import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from scipy import linalg, signal, stats

with warnings.catch_warnings():  # arviz 0.23 announces its refactor with a FutureWarning on import
    warnings.simplefilter("ignore", FutureWarning)
    import arviz

from lateo.inference.mcmc import diagnostics as diag


def _ar1(rng, shape, rho):
    """Stationary AR(1) draws along axis 1 with unit innovations."""
    e = rng.normal(size=shape)
    e[:, 0] /= np.sqrt(1.0 - rho**2)
    return signal.lfilter([1.0], [1.0, -rho], e, axis=1)


def _cases():
    rng = np.random.default_rng(20210601)
    stuck = rng.normal(size=(4, 300))
    stuck[2] = 0.7  # one chain never moves
    shifted = rng.normal(size=(4, 400))
    shifted[0] += 1.5  # one chain in a different place: R-hat must flag it
    return {
        "4x1000": rng.normal(size=(4, 1000)),
        "4x1000_ar1": _ar1(rng, (4, 1000), 0.9),
        "2x501_odd": rng.normal(size=(2, 501)).cumsum(axis=1),
        "1x200": rng.normal(size=(1, 200)),
        "stuck_chain": stuck,
        "shifted_chain": shifted,
        "cauchy": rng.standard_cauchy(size=(4, 500)),
        "discrete": rng.integers(0, 3, size=(3, 250)).astype(float),
        "4x4_minimum": rng.normal(size=(4, 4)),
    }


CASES = _cases()


@pytest.mark.parametrize("case", sorted(CASES))
def test_matches_arviz(case):
    x = CASES[case]
    ours = {
        "ess_bulk": diag.ess_bulk(x), "ess_tail": diag.ess_tail(x), "ess_mean": diag.ess_mean(x),
        "mcse_mean": diag.mcse_mean(x), "mcse_sd": diag.mcse_sd(x),
    }  # fmt: skip
    ref = {
        "ess_bulk": arviz.ess(x, method="bulk"), "ess_tail": arviz.ess(x, method="tail"),
        "ess_mean": arviz.ess(x, method="mean"), "mcse_mean": arviz.mcse(x, method="mean"),
        "mcse_sd": arviz.mcse(x, method="sd"),
    }  # fmt: skip
    if x.shape[0] > 1:  # arviz returns NaN for one chain; covered by test_rhat_single_chain
        ours["rhat"], ref["rhat"] = diag.rhat(x), arviz.rhat(x, method="rank")
    for key, value in ours.items():
        assert isinstance(value, float)
        np.testing.assert_allclose(value, float(ref[key]), rtol=1e-8, err_msg=key)


def test_ess_tail_custom_prob_matches_arviz():
    x = CASES["4x1000_ar1"]
    np.testing.assert_allclose(
        diag.ess_tail(x, prob=(0.1, 0.8)), arviz.ess(x, method="tail", prob=(0.1, 0.8)), rtol=1e-8
    )


def _rhat_reference(x):
    """Independent numpy version of Vehtari et al. (2021) eq. (4)-(6) on split chains."""
    half = x.shape[1] // 2
    split = np.concatenate([x[:, :half], x[:, -half:]])

    def z(a):
        return stats.norm.ppf((stats.rankdata(a).reshape(a.shape) - 3 / 8) / (a.size + 1 / 4))

    def classic(a):
        n = a.shape[1]
        w = a.var(axis=1, ddof=1).mean()
        b = n * a.mean(axis=1).var(ddof=1)
        return np.sqrt(((n - 1) / n * w + b / n) / w)

    return max(classic(z(split)), classic(z(np.abs(split - np.median(split)))))


@pytest.mark.parametrize("case", ["1x200", "4x1000_ar1", "2x501_odd"])
def test_rhat_single_chain_and_reference(case):
    x = CASES[case]
    np.testing.assert_allclose(diag.rhat(x), _rhat_reference(x), rtol=1e-12)


def test_rhat_flags_disagreeing_chains_and_ess_of_iid_is_near_n():
    assert diag.rhat(CASES["shifted_chain"]) > 1.1
    assert diag.rhat(CASES["4x1000"]) < 1.01
    assert 0.85 * 4000 < diag.ess_bulk(CASES["4x1000"]) < 1.15 * 4000
    assert diag.ess_bulk(CASES["4x1000_ar1"]) < 0.2 * 4000


def test_per_parameter_shapes_and_jax_input():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(3, 200, 2, 4))
    for func in (diag.rhat, diag.ess_bulk, diag.ess_tail, diag.ess_mean, diag.mcse_mean, diag.mcse_sd):
        out = func(x)
        assert out.shape == (2, 4)
        assert out[1, 2] == func(x[:, :, 1, 2])
    assert diag.ess_bulk(jnp.asarray(x[:, :, 0, 0])) == diag.ess_bulk(x[:, :, 0, 0])


def test_input_not_mutated():
    x = CASES["stuck_chain"].copy()
    before = x.copy()
    diag.rhat(x), diag.ess_tail(x), diag.summary({"a": x})
    np.testing.assert_array_equal(x, before)


# --------------------------------------------------------------------------- multivariate ESS
def test_mess_iid_is_near_total_draws():
    x = np.random.default_rng(0).normal(size=(4, 2500, 3))
    assert diag.multivariate_ess(x) == pytest.approx(10_000, rel=0.15)


def test_mess_independent_ar1_coordinates():
    rho, (m, n, p) = 0.5, (4, 10_000, 3)
    y = _ar1(np.random.default_rng(1), (m, n, p), rho)
    assert diag.multivariate_ess(y) == pytest.approx(m * n * (1 - rho) / (1 + rho), rel=0.15)


def test_mess_var1_known_asymptotic_covariance():
    """VAR(1) y_t = A y_{t-1} + e_t: Lambda solves Lambda = A Lambda A' + Q and the CLT
    covariance is Sigma = (I - A)^-1 Lambda + Lambda (I - A')^-1 - Lambda."""
    rng = np.random.default_rng(2)
    A = np.array([[0.6, 0.2], [-0.1, 0.3]])
    Q = np.array([[1.0, 0.5], [0.5, 2.0]])
    lam = linalg.solve_discrete_lyapunov(A, Q)
    inv = np.linalg.inv(np.eye(2) - A)
    sigma = inv @ lam + lam @ inv.T - lam
    m, n = 4, 10_000
    e = rng.multivariate_normal(np.zeros(2), Q, size=(m, n))
    y = np.empty_like(e)
    y[:, 0] = rng.multivariate_normal(np.zeros(2), lam, size=m)
    for t in range(1, n):
        y[:, t] = y[:, t - 1] @ A.T + e[:, t]
    expected = m * n * (np.linalg.det(lam) / np.linalg.det(sigma)) ** 0.5
    assert diag.multivariate_ess(y) == pytest.approx(expected, rel=0.15)


def test_mess_one_chain_equals_vats_formula():
    x = _ar1(np.random.default_rng(4), (1, 900, 2), 0.3)[0]
    b = 30
    means = x.reshape(30, b, 2).mean(axis=1) - x.mean(axis=0)
    sigma = b / (30 - 1) * means.T @ means
    expected = 900 * (np.linalg.det(np.cov(x.T)) / np.linalg.det(sigma)) ** 0.5
    assert diag.multivariate_ess(x[None]) == pytest.approx(expected, rel=1e-10)
    assert diag.multivariate_ess(x[None], batch_size=b) == pytest.approx(expected, rel=1e-10)


def test_mess_disagreeing_chains_lower_ess():
    x = np.random.default_rng(5).normal(size=(4, 1000, 2))
    shifted = x.copy()
    shifted[0] += 1.0
    assert diag.multivariate_ess(shifted) < 0.5 * diag.multivariate_ess(x)


# --------------------------------------------------------------------------- tables
def test_summary_dict_and_array():
    rng = np.random.default_rng(6)
    samples = {"mu": rng.normal(size=(4, 500)), "theta": rng.normal(size=(4, 500, 2, 2)) + 3.0}
    table = diag.summary(samples)
    assert isinstance(table, pd.DataFrame)
    assert list(table.index) == ["mu", "theta[0, 0]", "theta[0, 1]", "theta[1, 0]", "theta[1, 1]"]
    assert list(table.columns) == ["mean", "sd", "5%", "50%", "95%", "mcse_mean", "ess_bulk", "ess_tail", "r_hat"]
    t01 = samples["theta"][:, :, 0, 1]
    row = table.loc["theta[0, 1]"]
    assert row["mean"] == pytest.approx(t01.mean())
    assert row["sd"] == pytest.approx(t01.std(ddof=1))
    assert row["95%"] == pytest.approx(np.quantile(t01, 0.95))
    assert row["r_hat"] == diag.rhat(t01) and row["ess_tail"] == diag.ess_tail(t01)
    assert diag.summary(samples, names=["theta"]).index[0] == "theta[0, 0]"
    arr_table = diag.summary(samples["theta"].reshape(4, 500, 4), names=list("abcd"))
    np.testing.assert_allclose(arr_table["ess_bulk"].to_numpy(), table["ess_bulk"].to_numpy()[1:])
    assert list(diag.summary(samples["mu"]).index) == ["x"]


def test_check_convergence_warns_and_passes():
    rng = np.random.default_rng(7)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert diag.check_convergence({"good": rng.normal(size=(4, 1000))}) is True
    with pytest.warns(UserWarning) as record:
        assert diag.check_convergence({"bad": CASES["shifted_chain"], "ok": rng.normal(size=(4, 400))}) is False
    messages = [str(w.message) for w in record]
    assert len(messages) == 3 and messages[0].startswith("R-hat > 1.01 for ['bad']")
    assert messages[1].startswith("ess_bulk < 400 for ['bad']") and messages[2].startswith("ess_tail < 400 for ['bad']")
    with pytest.warns(UserWarning) as record:
        diag.check_convergence({"slow": CASES["4x1000_ar1"]}, rhat_threshold=1.05)
    assert [str(w.message)[:24] for w in record] == ["ess_bulk < 400 for ['slo", "ess_tail < 400 for ['slo"]


# --------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("func", [diag.rhat, diag.ess_bulk, diag.ess_tail, diag.ess_mean, diag.mcse_mean, diag.mcse_sd])
def test_bad_input(func):
    x = np.random.default_rng(8).normal(size=(2, 50))
    with pytest.raises(ValueError, match=r"draws must be an array of shape .* got 1-D"):
        func(x[0])
    with pytest.raises(ValueError, match=r"draws must hold at least 1 chain of at least 4 draws; got shape \(2, 3\)"):
        func(x[:, :3])
    x[1, 7] = np.nan
    with pytest.raises(ValueError, match=r"draws contains 1 NaN"):
        func(x)


def test_bad_input_mess_and_summary():
    x = np.random.default_rng(9).normal(size=(2, 100, 2))
    with pytest.raises(ValueError, match=r"draws must be an array of shape \(n_chains, n_draws, n_params\)"):
        diag.multivariate_ess(x[:, :, 0])
    with pytest.raises(ValueError, match=r"draws must have shape \(n_chains, n_draws, n_params\)"):
        diag.multivariate_ess(x[..., None])
    with pytest.raises(ValueError, match=r"batch_size must be an integer"):
        diag.multivariate_ess(x, batch_size=0)
    with pytest.raises(ValueError, match=r"singular covariance"):
        diag.multivariate_ess(np.concatenate([x, x[:, :, :1]], axis=2))
    bad = x[:, :, 0].copy()
    bad[0, 0] = np.inf
    with pytest.raises(ValueError, match=r"samples\['b'\] contains 1 NaN or infinite"):
        diag.summary({"a": x[:, :, 1], "b": bad})
    with pytest.raises(ValueError, match=r"names \['c'\] are not keys of samples"):
        diag.summary({"a": x[:, :, 1]}, names=["c"])
    with pytest.raises(ValueError, match=r"names must have one label per scalar parameter \(2\)"):
        diag.summary(x, names=["a"])


def test_constant_draws_edge_cases_match_arviz_without_warnings():
    const = np.full((4, 100), 2.5)
    stuck_apart = np.repeat(np.arange(4.0)[:, None], 100, axis=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isnan(diag.rhat(const)) and diag.rhat(stuck_apart) == np.inf
        assert diag.ess_bulk(const) == diag.ess_tail(const) == diag.ess_mean(const) == 400.0
        assert diag.mcse_mean(const) == 0.0 and diag.mcse_sd(const) == 0.0
        ours = [diag.ess_bulk(stuck_apart), diag.ess_tail(stuck_apart), diag.ess_mean(stuck_apart)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        assert (
            np.isnan(arviz.rhat(const, method="rank")) and arviz.rhat(stuck_apart, method="rank") > 1e10
        )  # rounding noise in W
        ref = [arviz.ess(stuck_apart, method=m) for m in ("bulk", "tail", "mean")]
    np.testing.assert_allclose(ours, ref, rtol=1e-8)
