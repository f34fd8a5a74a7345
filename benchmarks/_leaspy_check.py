"""Check the Leaspy peer: simulate from Leaspy's own formula, fit, compare.

    .venv/bin/python benchmarks/_leaspy_check.py [--n 200] [--visits 6] [--iters 1000] [--seed 0]

Prints recovered population parameters vs truth, individual-parameter
recovery (correlation / RMSE of tau_i and xi_i, last MCMC realisations), the
max abs difference between Leaspy's own model values and our numpy formula
(evaluated at Leaspy's fitted state, checks the formula), and time per iteration.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _leaspy_peer import fit_leaspy, logistic_curve, simulate_logistic  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--visits", type=int, default=6)
    ap.add_argument("--iters", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()

    true = dict(tau_mean=70.0, tau_std=5.0, xi_std=0.5, noise_std=0.05, g=2.0, v0=0.15)
    df, truth = simulate_logistic(a.n, a.visits, seed=a.seed, **true)
    res = fit_leaspy(df, n_iter=a.iters, seed=a.seed)
    est = res["params"]

    print(f"Leaspy mcmc_saem, {a.n} subjects x {a.visits} visits, {a.iters} iterations")
    print(f"{'param':10s} {'truth':>10s} {'leaspy':>10s}")
    for k, v in true.items():
        print(f"{k:10s} {v:10.4f} {est[k]:10.4f}")

    ind = truth.merge(res["individual"], on="ID", suffixes=("_true", "_est"))
    rec = {}
    for k in ("tau", "xi"):
        x, y = ind[f"{k}_true"].to_numpy(), ind[f"{k}_est"].to_numpy()
        rec[k] = {"corr": float(np.corrcoef(x, y)[0, 1]), "rmse": float(np.sqrt(np.mean((x - y) ** 2)))}
        print(f"individual {k}: corr {rec[k]['corr']:.3f}  rmse {rec[k]['rmse']:.3f}")

    # formula check: Leaspy's model values at its final state vs our numpy curve
    st = res["_model"].state
    t = st["t"]
    ours = logistic_curve(
        t.value.numpy(), st["tau"].numpy(), st["xi"].numpy(), float(st["g"]), float(st["v0"])
    )
    mask = t.weight.numpy() > 0
    diff = float(np.abs(ours[mask] - st["model"].numpy()[..., 0][mask]).max())
    print(f"max |leaspy model - numpy formula| at fitted state: {diff:.2e}")
    print(
        f"fit: {res['seconds']:.2f} s total ({res['seconds_algo']:.2f} s in algorithm.run), "
        f"{res['seconds_per_iter'] * 1e3:.2f} ms/iter, torch threads {res['torch_threads']}"
    )
    out = {k: v for k, v in res.items() if k not in ("individual", "_model")}
    out.update(truth=true, individual_recovery=rec, formula_max_abs_diff=diff)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
