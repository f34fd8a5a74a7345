"""Benchmark: MCMC-SAEM on the univariate logistic progression model, lateo against Leaspy, one process.

Workload: Leaspy's univariate logistic model, 200 and 2,000 subjects x 6
visits, 1,000 SAEM iterations. The data are simulated once per size, in
numpy, from Leaspy's own parametrisation (benchmarks/_leaspy_peer.py):

    y_ij = 1 / (1 + g exp(-(1+g)^2/g * v0 * exp(xi_i) * (t_ij - tau_i))) + eps_ij,
    tau_i ~ N(70, 5^2), xi_i ~ N(0, 0.5^2), eps_ij ~ N(0, 0.05^2), g = 2, v0 = 0.05,

baseline ages ~ N(67.5, 5^2) independent of tau_i, then yearly visits, so
the rise of the curve is observed across the cohort. lateo's logistic model
requires values in the open interval (0, 1), so observed values are clipped
to [1e-3, 1 - 1e-3] (both libraries get the same clipped data; the JSON
gives the fraction clipped and the residual sd of the clipped data around
the true curves, "noise_std_effective", which is what a noise estimate can
at best recover).

* Leaspy 2.x: ``mcmc_saem`` (``source_dimension=0``), seed fixed, its
  defaults otherwise (1 chain, one Gibbs sweep per iteration, 90 % burn-in).
  Individual parameters: its last MCMC realisations.
* lateo, same budget: ``ProgressionModel("logistic", n_iter, n_chains=1,
  n_mh_steps=1, random_state=0)``.
* lateo, defaults: ``ProgressionModel("logistic", n_iter)`` (2 chains, 5
  sweeps per iteration). Individual parameters: the stochastic-approximation
  average of the draws after burn-in.
* lateo, same budget in single precision: as the first, with ``dtype="float32"``
  (the SAEM iterations in float32, Leaspy's precision: ``leaspy.dtype``; the
  start, the refinement and the reported estimates stay in float64).

lateo's estimates are its fits' ``params_``: SAEM followed by the Laplace
refinement (``refine="laplace"``, in the fit time, not in the loop time);
the raw SAEM estimate and its error are reported as ``saem_only``.

lateo is fitted several times on the same data: the first ("cold") fit
compiles; the fastest of seven "warm" fits (same shapes, no recompilation)
is the timing used for the per-iteration ratio Leaspy / lateo, and the
fastest of seven fits twice as long gives the marginal cost of an
iteration. The loop-only ratio compares Leaspy's own timing of its SAEM
(``algorithm.run``) with the time lateo spends in its loop (``lateo.core.loop.run``,
fastest of the seven warm fits). Leaspy is fitted twice on the same data (same seed, same
estimates) and timed by the faster fit.

Parameter mapping: Leaspy's tau_mean <-> lateo's t0_ + mean_i(tau_i)
(lateo's tau_i ~ N(0, tau_std^2) is relative to t0), tau_std <-> tau_std_,
xi_std <-> xi_std_, noise_std <-> noise_std_, g <-> position_ (g on the
natural scale), v0 <-> speed_. Individual onsets are compared on the
absolute scale (lateo: t0_ + tau_i).

Parameter errors on one cohort mostly measure where that sample's maximum-likelihood estimate
fell; ``error_replicates`` repeats the comparison (lateo same budget, with its default
refinement, in float64 and in float32, against Leaspy) on ``--replicates`` further cohorts
(seeds ``seed + 1, ...``) and reports the mean summed relative error over all six parameters and
over the four the issue quotes (tau_mean, tau_std, xi_std, noise_std), with standard errors and
the paired difference.

    .venv/bin/python benchmarks/bench_saem.py [--sizes 200,2000] [--visits 6] [--iters 1000] [--seed 0]
        [--replicates 5]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _leaspy_peer import logistic_curve, simulate_logistic  # noqa: E402

TRUTH = dict(tau_mean=70.0, tau_std=5.0, xi_std=0.5, noise_std=0.05, g=2.0, v0=0.05)
CLIP = 1e-3
PARAMS = ("tau_mean", "tau_std", "xi_std", "noise_std", "g", "v0")
#: The parameters whose Leaspy estimates the issue quotes (the four of the mixed-effects structure).
ISSUE_PARAMS = ("tau_mean", "tau_std", "xi_std", "noise_std")


def make_data(n, visits, seed):
    df, truth = simulate_logistic(n, visits, seed=seed, **TRUTH)
    y = df["Y"].to_numpy()
    clipped = float(np.mean((y < CLIP) | (y > 1 - CLIP)))
    df["Y"] = np.clip(y, CLIP, 1 - CLIP)
    tau = np.repeat(truth["tau"].to_numpy(), visits)
    xi = np.repeat(truth["xi"].to_numpy(), visits)
    mean = logistic_curve(df["TIME"].to_numpy(), tau, xi, TRUTH["g"], TRUTH["v0"])
    info = dict(
        n_subjects=n,
        n_visits=visits,
        n_obs=len(df),
        fraction_clipped=clipped,
        noise_std_effective=float(np.sqrt(np.mean((df["Y"].to_numpy() - mean) ** 2))),
        empirical_tau_mean=float(truth["tau"].mean()),
        empirical_tau_std=float(truth["tau"].std()),
        empirical_xi_std=float(truth["xi"].std()),
    )
    return df, truth, info


def score(params, individual, truth, seconds, n_iter):
    """Errors against the truth; ``individual``: DataFrame ID, tau (absolute onset), xi."""
    out = dict(seconds=seconds, seconds_per_iter=seconds / n_iter)
    out["params"] = {k: float(params[k]) for k in PARAMS}
    out["abs_error"] = {k: abs(float(params[k]) - TRUTH[k]) for k in PARAMS}
    out["sum_rel_error"] = sum_rel_error(params)
    out["sum_rel_error_issue_four"] = sum_rel_error(params, ISSUE_PARAMS)
    ind = truth.merge(individual, on="ID", suffixes=("_true", "_est"))
    rec = {}
    for k in ("tau", "xi"):
        x, y = ind[f"{k}_true"].to_numpy(), ind[f"{k}_est"].to_numpy()
        rec[f"{k}_corr"] = float(np.corrcoef(x, y)[0, 1])
        rec[f"{k}_rmse"] = float(np.sqrt(np.mean((x - y) ** 2)))
    out["individual"] = rec
    return out


def sum_rel_error(params, names=PARAMS) -> float:
    """Summed relative error of ``params`` against the simulation's truth over ``names``."""
    return float(sum(abs(float(params[k]) - TRUTH[k]) / abs(TRUTH[k]) for k in names))


def lateo_params(m):
    """lateo's estimates on Leaspy's parametrisation (see the module docstring)."""
    tau_mean = m.t0_ + float(m.individual_parameters_["tau"].mean())
    return dict(tau_mean=tau_mean, tau_std=m.tau_std_, xi_std=m.xi_std_, noise_std=float(m.noise_std_.iloc[0]),
                g=float(m.position_.iloc[0]), v0=float(m.speed_.iloc[0]))  # fmt: skip


def _mean_se(values):
    a = np.asarray(values, float)
    return dict(mean=float(a.mean()), se=float(a.std(ddof=1) / np.sqrt(a.size)) if a.size > 1 else None)


def error_replicates(n, visits, seeds, n_iter, with_leaspy: bool):
    """Parameter errors of Leaspy and of lateo (same budget, default refinement) on independent cohorts.

    One cohort's errors mostly measure where that sample's maximum-likelihood estimate fell; the
    mean over cohorts (with its standard error, and the paired difference) compares the estimators.
    """
    import lateo

    rows = []
    for seed in seeds:
        df, _, _ = make_data(n, visits, seed)
        row = dict(seed=seed)
        for label, dtype in (("lateo", "float64"), ("lateo_float32", "float32")):
            m = lateo.ProgressionModel("logistic", n_iter=n_iter, n_chains=1, n_mh_steps=1, random_state=0,
                                       progress=False, dtype=dtype).fit(df)  # fmt: skip
            row[label] = lateo_params(m)
        if with_leaspy:
            from _leaspy_peer import fit_leaspy

            row["leaspy"] = {k: float(v) for k, v in fit_leaspy(df, n_iter=n_iter, seed=seed)["params"].items()
                             if k in PARAMS}  # fmt: skip
        rows.append(row)
    out = dict(seeds=list(seeds))
    for label, names in (("all_six", PARAMS), ("issue_four", ISSUE_PARAMS)):
        errors = {lib: [sum_rel_error(r[lib], names) for r in rows] for lib in rows[0] if lib != "seed"}
        out[label] = {lib: _mean_se(e) for lib, e in errors.items()}
        if with_leaspy:
            out[label]["lateo_minus_leaspy"] = _mean_se(np.subtract(errors["lateo"], errors["leaspy"]))
    out["fits"] = rows
    return out


def run_leaspy(df, truth, n_iter, seed):
    from _leaspy_peer import fit_leaspy

    res = fit_leaspy(df, n_iter=n_iter, seed=seed)
    # a second identical fit: the fastest of the two is timed, as lateo's fastest repeat is
    again = fit_leaspy(df, n_iter=n_iter, seed=seed)
    out = score(res["params"], res["individual"], truth, min(res["seconds"], again["seconds"]), n_iter)
    out["seconds_algo"] = min(res["seconds_algo"], again["seconds_algo"])
    out["torch_threads"] = res["torch_threads"]
    return out


TIMING_REPEATS = 7


def run_lateo(df, truth, n_iter, **kw):
    import lateo

    from lateo.core import loop

    loop_seconds = []  # the SAEM loop alone, lateo's counterpart of Leaspy's timing of its algorithm
    run = loop.run

    def timed_run(*args, **kwargs):
        t = time.perf_counter()
        result = run(*args, **kwargs)
        loop_seconds.append(time.perf_counter() - t)
        return result

    def fit(iters=n_iter, refine=None):
        m = lateo.ProgressionModel("logistic", n_iter=iters, progress=False, refine=refine, **kw)
        t = time.perf_counter()
        m.fit(df)
        return time.perf_counter() - t, m

    # Timing fits without the refinement (its cost varies with where SAEM stops): the compiling fit,
    # the warm one and, for the marginal cost of an SAEM iteration without the fit's fixed costs
    # (data checks, the joint-mode start, result tables), a longer run on the same shapes.
    # Minimum of seven repeats of each: a shared machine only ever adds time (its noise was +-50 %).
    cold, _ = fit()
    loop.run = timed_run
    try:
        loop_seconds.clear()
        warm = min(fit()[0] for _ in range(TIMING_REPEATS))
        loop_warm = min(loop_seconds)
        longer = min(fit(2 * n_iter)[0] for _ in range(TIMING_REPEATS))
    finally:
        loop.run = run
    with_refine, m = fit(refine="laplace")  # the estimator's default: the estimates reported
    ind = m.individual_parameters_
    params = lateo_params(m)
    individual = ind.reset_index().rename(columns={ind.index.name or "index": "ID"})
    individual = individual.assign(ID=individual["ID"].astype(str), tau=m.t0_ + individual["tau"])[["ID", "tau", "xi"]]
    out = score(params, individual, truth, warm, n_iter)
    raw = m.params_saem_  # the SAEM estimate before the Laplace refinement (``refine``)
    f = m.features_[0]
    raw = dict(tau_mean=float(raw["t0"]) + float(ind["tau"].mean()), tau_std=raw["tau_std"], xi_std=raw["xi_std"],
               noise_std=raw[f"noise_std[{f}]"], g=raw[f"position[{f}]"], v0=raw[f"speed[{f}]"])  # fmt: skip
    out["saem_only"] = {k: float(raw[k]) for k in PARAMS}
    out["saem_only_sum_rel_error"] = sum_rel_error(raw)
    out["seconds_cold"] = cold
    out["seconds_fit_with_refinement"] = with_refine
    out["refinement_accepted"] = bool(m.refine_accepted_)
    out["model"] = m
    out["compile_seconds"] = max(cold - warm, 0.0)
    out["marginal_seconds_per_iter"] = max(longer - warm, 0.0) / n_iter
    out["loop_seconds_per_iter"] = loop_warm / n_iter
    out["t0"] = m.t0_
    out["mean_individual_tau"] = float(ind["tau"].mean())
    out["mean_individual_xi"] = float(ind["xi"].mean())
    out["settings"] = {k: v for k, v in kw.items()} | dict(n_chains=m.n_chains, n_mh_steps=m.n_mh_steps)
    out["acceptance_individual"] = m.acceptance_rate_["individual"]
    out["rhat_max"] = float(np.nanmax(m.rhat_.to_numpy())) if np.isfinite(m.rhat_.to_numpy()).any() else None
    return out


def marginal_logliks(row, df):
    """The marginal log-likelihood of the data at each fit's estimates, by lateo's importance sampling
    (2,000 draws per subject): the criterion both libraries maximise, which the truth need not maximise
    on a finite, clipped sample."""
    import copy

    import jax
    import jax.numpy as jnp

    from lateo.models.progression import _model as M

    model = row["lateo_same_budget"]["model"]
    for name, entry in row.items():
        if name == "data":
            continue
        p = entry["params"]
        theta = M.Theta(M.Population(jnp.asarray(entry.get("t0", p["tau_mean"])),  # Leaspy: t0 = tau_mean
                                     jnp.log(jnp.asarray([p["g"]])), jnp.log(jnp.asarray([p["v0"]]))),
                        jnp.asarray(p["tau_std"]), jnp.asarray(p["xi_std"]), jnp.asarray([p["noise_std"]]))  # fmt: skip
        at = copy.copy(model)
        at.theta_ = jax.tree_util.tree_map(np.asarray, theta)
        total, se = at.loglikelihood(df, n_samples=2000, random_state=0, return_se=True)
        entry["marginal_loglik"], entry["marginal_loglik_se"] = total, se
    for name in row:
        if name != "data":
            row[name].pop("model", None)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="200,2000", help="comma-separated numbers of subjects")
    p.add_argument("--visits", type=int, default=6)
    p.add_argument("--iters", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--replicates", type=int, default=5,
                   help="independent cohorts per size for the parameter-error comparison (0: none)")
    args = p.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]

    import jax

    import lateo

    try:
        import leaspy

        leaspy_version, leaspy_error = leaspy.__version__, None
    except Exception as exc:  # noqa: BLE001
        leaspy_version, leaspy_error = None, f"{type(exc).__name__}: {exc}"

    report = dict(
        machine=dict(cpu=platform.processor() or platform.machine(), cores=os.cpu_count(),
                     python=platform.python_version(), jax=jax.__version__, jax_backend=jax.default_backend(),
                     lateo=getattr(lateo, "__version__", None), leaspy=leaspy_version),  # fmt: skip
        workload=dict(sizes=sizes, visits=args.visits, iters=args.iters, seed=args.seed, truth=TRUTH, clip=CLIP),
    )
    if leaspy_error:
        report["leaspy_unavailable"] = leaspy_error
    for n in sizes:
        df, truth, info = make_data(n, args.visits, args.seed)
        row = dict(data=info)
        if leaspy_error is None:
            row["leaspy"] = run_leaspy(df, truth, args.iters, args.seed)
        row["lateo_same_budget"] = run_lateo(df, truth, args.iters, n_chains=1, n_mh_steps=1, random_state=0)
        row["lateo_default"] = run_lateo(df, truth, args.iters, random_state=0)
        # Leaspy's precision: its tensors are float32 (leaspy.dtype)
        row["lateo_same_budget_float32"] = run_lateo(df, truth, args.iters, n_chains=1, n_mh_steps=1, random_state=0,
                                                     dtype="float32")  # fmt: skip
        if "leaspy" in row:
            for name in ("lateo_same_budget", "lateo_default", "lateo_same_budget_float32"):
                row[name]["ratio_leaspy_over_lateo_per_iter"] = (
                    row["leaspy"]["seconds_per_iter"] / row[name]["seconds_per_iter"]
                )
                # algorithm loops only: Leaspy's own timing of its SAEM, lateo's of its loop
                row[name]["ratio_loops_only"] = (row["leaspy"]["seconds_algo"] / args.iters) / max(
                    row[name]["loop_seconds_per_iter"], 1e-12
                )
        marginal_logliks(row, df)
        if args.replicates:
            seeds = range(args.seed + 1, args.seed + 1 + args.replicates)
            row["error_replicates"] = error_replicates(n, args.visits, seeds, args.iters, leaspy_error is None)
        report[f"n{n}"] = row
        print(f"done n={n}", file=sys.stderr, flush=True)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
