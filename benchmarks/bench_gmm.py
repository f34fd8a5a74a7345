"""Benchmark: Gaussian-mixture EM, lateo against scikit-learn, same data, one process.

Workload (issue 2): N = 200,000, D = 10, K = 8, full covariances, exactly 50
EM iterations (tol = 0), both libraries starting from the same initial
parameters. Prints one JSON object: both times per iteration, lateo's
compile time (reported separately: the first fit minus the second), their
ratio, both final lower bounds and their relative difference, and the
process's peak resident memory after each library's fit.

    python benchmarks/bench_gmm.py [--n 200000] [--d 10] [--k 8] [--iters 50]
    python benchmarks/bench_gmm.py --memory --n 1000000   # peak RSS, each library in its own process
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _mixture_data import anisotropic_mixture, shared_init  # noqa: E402


def make_data(n, d, k, seed=0):
    """A well-separated mixture plus the shared initial parameters."""
    X, rng = anisotropic_mixture(n, d, k, seed)
    return X, shared_init(X, k, rng.choice(n, k, replace=False))


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def time_lateo(X, init, k, iters):
    import lateo

    def fit():
        t0 = time.perf_counter()
        gm = lateo.GaussianMixture(k, covariance_type="full", tol=0.0, max_iter=iters, progress=False, **init).fit(X)
        return time.perf_counter() - t0, gm

    first, _ = fit()
    second, gm = fit()
    return dict(seconds=second, per_iter=second / iters, compile_seconds=max(first - second, 0.0),
                lower_bound=gm.lower_bound_, n_iter=gm.n_iter_)


def time_sklearn(X, init, k, iters):
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.mixture import GaussianMixture

    warnings.simplefilter("ignore", ConvergenceWarning)
    t0 = time.perf_counter()
    gm = GaussianMixture(k, covariance_type="full", tol=0.0, max_iter=iters, init_params="random_from_data",
                         random_state=0, **init).fit(X)
    seconds = time.perf_counter() - t0
    return dict(seconds=seconds, per_iter=seconds / iters, lower_bound=gm.lower_bound_, n_iter=gm.n_iter_)


def machine() -> dict:
    import os

    return dict(cpu=platform.processor() or platform.machine(), cores=os.cpu_count(), python=platform.python_version())


def memory_mode(args) -> dict:
    """Peak RSS of each library's fit, each in a fresh process."""
    out = {}
    for lib in ("lateo", "sklearn"):
        cmd = [sys.executable, __file__, "--n", str(args.n), "--d", str(args.d), "--k", str(args.k),
               "--iters", str(args.iters), "--only", lib]
        res = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
        out[lib] = dict(peak_rss_mb=res[lib]["peak_rss_mb"], baseline_rss_mb=res["baseline_rss_mb"],
                        per_iter=res[lib]["per_iter"])
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=200_000)
    p.add_argument("--d", type=int, default=10)
    p.add_argument("--k", type=int, default=8)
    p.add_argument("--iters", type=int, default=50)
    p.add_argument("--memory", action="store_true", help="peak memory of each library in its own process")
    p.add_argument("--only", choices=["lateo", "sklearn"], help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    report = dict(workload=dict(n=args.n, d=args.d, k=args.k, iters=args.iters, covariance_type="full"),
                  machine=machine())
    if args.memory:
        report["memory"] = memory_mode(args)
        print(json.dumps(report, indent=2))
        return
    X, init = make_data(args.n, args.d, args.k)
    report["baseline_rss_mb"] = peak_rss_mb()
    if args.only in (None, "lateo"):
        report["lateo"] = time_lateo(X, init, args.k, args.iters) | dict(peak_rss_mb=peak_rss_mb())
    if args.only in (None, "sklearn"):
        report["sklearn"] = time_sklearn(X, init, args.k, args.iters) | dict(peak_rss_mb=peak_rss_mb())
    if args.only is None:
        lt, sk = report["lateo"], report["sklearn"]
        report["speedup_per_iter"] = sk["per_iter"] / lt["per_iter"]
        report["lower_bound_rel_diff"] = abs(lt["lower_bound"] - sk["lower_bound"]) / abs(sk["lower_bound"])
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
