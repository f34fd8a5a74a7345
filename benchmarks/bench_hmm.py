"""Benchmark: Baum-Welch, lateo against hmmlearn, same data and start, one process.

Workloads (issue 3):
* GaussianHMM, diagonal covariances, K = 8 states, D = 4, 200 sequences of
  length 500, 20 iterations;
* CategoricalHMM, 6 symbols, K = 4 states, 200 sequences of length 500,
  20 iterations.

Both libraries start from the same parameters (``init_params=""``), run
exactly 20 iterations (``tol=-inf``) with maximum-likelihood updates
(hmmlearn: ``covars_prior=0``, ``implementation="log"``; lateo:
``reg_covar=0``). Prints JSON: seconds per iteration for each, lateo's
compile time (first fit minus second), the ratio, and the final
log-likelihoods with their relative difference.

    python benchmarks/bench_hmm.py [--sequences 200] [--length 500] [--iters 20]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np


def gaussian_case(n_seq, length, k=8, d=4, seed=0):
    rng = np.random.default_rng(seed)
    means = rng.normal(scale=3.0, size=(k, d))
    trans = rng.dirichlet(np.ones(k) * 0.5, size=k) * 0.3 + np.eye(k) * 0.7
    start = np.full(k, 1.0 / k)
    X = []
    for _ in range(n_seq):
        z = [rng.integers(k)]
        for _ in range(length - 1):
            z.append(rng.choice(k, p=trans[z[-1]]))
        X.append(means[z] + rng.normal(size=(length, d)))
    X = np.concatenate(X)
    init = dict(startprob_=start, transmat_=np.full((k, k), 1.0 / k), means_=X[rng.choice(len(X), k, replace=False)],
                covars_=np.tile(X.var(0), (k, 1)))
    return X, [length] * n_seq, init


def categorical_case(n_seq, length, k=4, m=6, seed=1):
    rng = np.random.default_rng(seed)
    emission = rng.dirichlet(np.ones(m), size=k)
    trans = rng.dirichlet(np.ones(k), size=k) * 0.4 + np.eye(k) * 0.6
    X = []
    for _ in range(n_seq):
        z = rng.integers(k)
        seq = []
        for _ in range(length):
            seq.append(rng.choice(m, p=emission[z]))
            z = rng.choice(k, p=trans[z])
        X.append(seq)
    X = np.asarray(X).reshape(-1, 1)
    init = dict(startprob_=np.full(k, 1.0 / k), transmat_=rng.dirichlet(np.ones(k) * 5, size=k),
                emissionprob_=rng.dirichlet(np.ones(m) * 5, size=k))
    return X, [length] * n_seq, init


def _set(model, init):
    for name, value in init.items():
        setattr(model, name, np.array(value))
    return model


def time_fit(make, init, X, lengths, iters, repeats=1):
    """Seconds of the last of ``repeats + 1`` fits and the fitted model."""
    times, model = [], None
    for _ in range(repeats + 1):
        model = _set(make(), init)
        t0 = time.perf_counter()
        model.fit(X, lengths)
        times.append(time.perf_counter() - t0)
    return times, model


def compare(name, lateo_make, peer_make, init, X, lengths, iters):
    lt_times, lt = time_fit(lateo_make, init, X, lengths, iters)
    pr_times, pr = time_fit(peer_make, init, X, lengths, iters, repeats=0)
    lt_ll, pr_ll = float(lt.lower_bounds_[-1]), float(pr.monitor_.history[-1])
    return name, dict(
        lateo_per_iter=lt_times[-1] / iters,
        lateo_compile_seconds=max(lt_times[0] - lt_times[-1], 0.0),
        hmmlearn_per_iter=pr_times[-1] / iters,
        speedup_per_iter=pr_times[-1] / lt_times[-1],
        lateo_log_likelihood=lt_ll,
        hmmlearn_log_likelihood=pr_ll,
        log_likelihood_rel_diff=abs(lt_ll - pr_ll) / abs(pr_ll),
    )


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sequences", type=int, default=200)
    p.add_argument("--length", type=int, default=500)
    p.add_argument("--iters", type=int, default=20)
    args = p.parse_args(argv)
    from hmmlearn import hmm as peer

    import lateo

    common = dict(n_iter=args.iters, tol=-np.inf, init_params="")
    report = dict(machine=dict(cpu=platform.processor() or platform.machine(), cores=os.cpu_count(),
                               python=platform.python_version()),
                  workload=dict(sequences=args.sequences, length=args.length, iters=args.iters))
    X, lengths, init = gaussian_case(args.sequences, args.length)
    name, res = compare(
        "gaussian_diag_K8_D4",
        lambda: lateo.GaussianHMM(8, covariance_type="diag", reg_covar=0.0, progress=False, **common),
        lambda: peer.GaussianHMM(8, covariance_type="diag", covars_prior=0.0, implementation="log", **common),
        init, X, lengths, args.iters)
    report[name] = res
    X, lengths, init = categorical_case(args.sequences, args.length)
    name, res = compare(
        "categorical_K4_M6",
        lambda: lateo.CategoricalHMM(4, n_features=6, progress=False, **common),
        lambda: peer.CategoricalHMM(4, n_features=6, implementation="log", **common),
        init, X, lengths, args.iters)
    report[name] = res
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
