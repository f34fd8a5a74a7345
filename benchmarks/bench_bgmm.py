"""Benchmark: variational Bayesian Gaussian mixture (CAVI), lateo against scikit-learn, one process.

Workload (issue 6): N = 100,000, D = 10, K = 10, full covariances,
Dirichlet-process weight prior, exactly ``--iters`` CAVI iterations
(tol = 0), both libraries starting from the same initial responsibilities
(k-means labels computed once and injected into both). Prints one JSON
object: both times per iteration, lateo's compile time (reported
separately: the first fit minus the second), their ratios, and both lower
bounds (lateo's full ELBO, lateo's ELBO minus the constants scikit-learn
drops, and scikit-learn's ``lower_bound_``).

    python benchmarks/bench_bgmm.py [--n 100000] [--d 10] [--k 10] [--iters 50]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import warnings

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _mixture_data import anisotropic_mixture  # noqa: E402


def make_data(n, d, k, seed=0):
    """A well-separated mixture of k clusters (offset from 0) and one-hot k-means responsibilities."""
    from sklearn.cluster import KMeans

    X, _ = anisotropic_mixture(n, d, k, seed)
    init_labels = KMeans(k, n_init=1, random_state=seed).fit(X).labels_
    resp = np.zeros((n, k))
    resp[np.arange(n), init_labels] = 1.0
    return X, resp


def time_lateo(X, resp, k, iters):
    """Whole fits (validation, T(X), initialisation, final labels included) divided by
    ``iters``; ``marginal_per_iter`` is the cost of one more iteration (two fit lengths)."""
    from lateo.exceptions import ConvergenceWarning
    from lateo.models.bayesian_mixture import BayesianGaussianMixture

    warnings.simplefilter("ignore", ConvergenceWarning)

    def fit(n_iter):
        t0 = time.perf_counter()
        bgm = BayesianGaussianMixture(k, covariance_type="full", tol=0.0, max_iter=n_iter, prune_threshold=0.0,
                                      progress=False).fit(X, resp_init=resp)
        return time.perf_counter() - t0, bgm

    first, _ = fit(iters)
    second, bgm = fit(iters)
    longer, _ = fit(2 * iters)
    return dict(seconds=second, per_iter=second / iters, marginal_per_iter=max(longer - second, 0.0) / iters,
                compile_seconds=max(first - second, 0.0), lower_bound=bgm.lower_bound_,
                sklearn_lower_bound=bgm.sklearn_lower_bound_, elbo_constant=bgm.elbo_constant_, n_iter=bgm.n_iter_)


def time_sklearn(X, resp, k, iters):
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.mixture import BayesianGaussianMixture

    class Injected(BayesianGaussianMixture):
        def _initialize_parameters(self, X, random_state, xp=None):
            self._initialize(X, resp)

    warnings.simplefilter("ignore", ConvergenceWarning)
    t0 = time.perf_counter()
    bgm = Injected(n_components=k, covariance_type="full", tol=0.0, max_iter=iters).fit(X)
    seconds = time.perf_counter() - t0
    return dict(seconds=seconds, per_iter=seconds / iters, lower_bound=bgm.lower_bound_, n_iter=bgm.n_iter_)


def machine() -> dict:
    return dict(cpu=platform.processor() or platform.machine(), cores=os.cpu_count(), python=platform.python_version())


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--d", type=int, default=10)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--iters", type=int, default=50)
    args = p.parse_args(argv)
    report = dict(workload=dict(n=args.n, d=args.d, k=args.k, iters=args.iters, covariance_type="full",
                                weight_concentration_prior_type="dirichlet_process"), machine=machine())
    X, resp = make_data(args.n, args.d, args.k)
    report["lateo"] = lt = time_lateo(X, resp, args.k, args.iters)
    report["sklearn"] = sk = time_sklearn(X, resp, args.k, args.iters)
    report["speedup_per_iter"] = sk["per_iter"] / lt["per_iter"]
    report["speedup_marginal_per_iter"] = sk["per_iter"] / lt["marginal_per_iter"]
    report["lower_bound_rel_diff"] = abs(lt["sklearn_lower_bound"] - sk["lower_bound"]) / abs(sk["lower_bound"])
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
