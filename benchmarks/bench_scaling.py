"""Benchmark: time per EM iteration of a Gaussian mixture as N grows (issue 8).

Three ways on the same data and the same initial parameters:

* ``lateo``: ``lateo.GaussianMixture`` in this process (JAX on all cores);
* ``sklearn``: ``sklearn.mixture.GaussianMixture`` in this process;
* ``lateo_dask``: ``lateo.GaussianMixture`` on a Dask array under a
  ``LocalCluster`` of ``--workers`` worker processes (one thread each),
  distributed EM of :mod:`lateo.algorithms.distributed` (data persisted on
  the workers, partitions of about N / (2 workers) rows).

Time per iteration is ``(t(iters) - t(1)) / (iters - 1)`` from two fits
after a warm-up fit (so set-up, initialisation, data transfer and
compilation cancel). Workload: D = 10, K = 8, full covariances, tol = 0.
N runs over powers of ten from ``--min-n`` to ``--max-n`` (default 10^6;
10^7 needs about 3 GB of memory and several minutes per library here).
Prints one JSON object and writes the log-log plot ``docs/scaling.png``.

    python benchmarks/bench_scaling.py [--max-n 1000000] [--iters 4] [--workers 2] [--no-dask] [--no-plot]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _mixture_data import anisotropic_mixture, shared_init  # noqa: E402


def make_data(n, d, k, seed=0):
    """A mixture of K anisotropic Gaussians (N, D) and the shared initial parameters."""
    X, _ = anisotropic_mixture(n, d, k, seed)
    return X, shared_init(X, k, np.random.default_rng(seed + 1).choice(n, k, replace=False))


def per_iteration(fit, iters: int) -> dict:
    """Warm-up, then ``(t(iters) - t(1)) / (iters - 1)``; also the first (cold) fit's time."""
    t0 = time.perf_counter()
    fit(1)
    cold = time.perf_counter() - t0
    times = {}
    for m in (1, iters):
        t0 = time.perf_counter()
        fit(m)
        times[m] = time.perf_counter() - t0
    return dict(per_iter=max(times[iters] - times[1], 0.0) / (iters - 1), fit_1_iter=times[1],
                first_fit=cold)


def lateo_fit(X, init, k, client=None):
    import lateo

    def fit(m):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return lateo.GaussianMixture(k, covariance_type="full", tol=0.0, max_iter=m, progress=False,
                                         **init).fit(X, client=client)

    return fit


def sklearn_fit(X, init, k):
    from sklearn.mixture import GaussianMixture

    def fit(m):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return GaussianMixture(k, covariance_type="full", tol=0.0, max_iter=m, **init).fit(X)

    return fit


def run(args) -> dict:
    sizes = [int(10**e) for e in range(int(np.log10(args.min_n)), int(np.log10(args.max_n)) + 1)]
    results = []
    client = cluster = None
    if not args.no_dask:
        import distributed

        cluster = distributed.LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                                           host="127.0.0.1", dashboard_address=None)
        client = distributed.Client(cluster)
    try:
        for n in sizes:
            X, init = make_data(n, args.d, args.k)
            row = dict(n=n, lateo=per_iteration(lateo_fit(X, init, args.k), args.iters))
            if not args.no_sklearn:
                row["sklearn"] = per_iteration(sklearn_fit(X, init, args.k), args.iters)
                row["ratio_sklearn_over_lateo"] = row["sklearn"]["per_iter"] / max(row["lateo"]["per_iter"], 1e-12)
            if client is not None:
                import dask.array as da

                Xd = client.persist(da.from_array(X, chunks=(-(-n // args.workers), args.d)))
                row["lateo_dask"] = per_iteration(lateo_fit(Xd, init, args.k, client), args.iters)
                row["ratio_dask_over_lateo"] = row["lateo_dask"]["per_iter"] / max(row["lateo"]["per_iter"], 1e-12)
                del Xd
            results.append(row)
            print(json.dumps(row), flush=True)
    finally:
        if client is not None:
            client.close()
            cluster.close()
    return dict(benchmark="gmm_scaling", d=args.d, k=args.k, covariance_type="full", iters=args.iters,
                workers=None if args.no_dask else args.workers, results=results,
                machine=dict(cpu=platform.processor() or platform.machine(), cores=os.cpu_count(),
                             python=platform.python_version(), load_average=os.getloadavg()))


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    labels = {"lateo": "lateo (1 process)", "sklearn": "scikit-learn (1 process)",
              "lateo_dask": f"lateo, LocalCluster {report['workers']} workers"}
    for key, label in labels.items():
        pts = [(r["n"], r[key]["per_iter"]) for r in report["results"] if key in r]
        if pts:
            ax.loglog(*zip(*pts), marker="o", label=label)
    ax.set_xlabel("N (rows)")
    ax.set_ylabel("seconds per EM iteration")
    ax.set_title(f"GMM EM, D={report['d']}, K={report['k']}, full covariances")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--min-n", type=float, default=1e4)
    parser.add_argument("--max-n", type=float, default=1e6)
    parser.add_argument("--d", type=int, default=10)
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--iters", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--no-dask", action="store_true")
    parser.add_argument("--no-sklearn", action="store_true")
    parser.add_argument("--no-plot", action="store_true")
    parser.add_argument("--plot", default=str(Path(__file__).resolve().parent.parent / "docs" / "scaling.png"))
    args = parser.parse_args()
    if args.iters < 2:
        parser.error("--iters must be >= 2 (time per iteration is a difference of two fits)")
    report = run(args)
    if not args.no_plot:
        plot(report, Path(args.plot))
        report["plot"] = args.plot
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
