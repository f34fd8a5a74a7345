"""Benchmark: online EM against exact EM (lateo, in memory and streamed) and scikit-learn.

Workload (issue 6): a Gaussian mixture, N = 2,000,000 rows by default, D = 5,
K = 4, full covariances, generated chunk by chunk (250,000 rows, reproducible
per chunk). Every method starts from the same initial parameters. The target
is the exact-EM optimum ``L*`` (mean log-likelihood per sample; lateo's exact
EM to ``tol = 1e-10``); each method is timed until its iterate reaches
``L* - 1e-3``:

- ``lateo_online``: online EM (Cappé & Moulines 2009) over the stream of
  chunks (minibatches of ``--batch-size`` rows, ``gamma_k = k^-0.6``), run
  afresh for 1, 2, ... passes until the exact log-likelihood of its
  parameters (computed untimed over the stream) reaches the target; the time
  is that of the successful run;
- ``lateo_exact_stream``: exact EM over the same stream (chunk statistics
  summed at every iteration, chunks regenerated every pass);
- ``lateo_exact_memory``: exact EM on the array in memory;
- ``sklearn``: ``sklearn.mixture.GaussianMixture`` on the array in memory, one
  iteration per ``fit`` (``warm_start=True, max_iter=1``), so that its lower
  bound can be read after every iteration.

Streamed timings include generating the chunks (``generate_seconds_per_pass``
is reported so it can be subtracted). Times exclude compilation (a warm-up fit
on the first chunk runs first). Prints one JSON object.

    python benchmarks/bench_online_em.py [--n 2000000] [--d 5] [--k 4] [--chunk 250000] [--batch-size 10000]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
import warnings

import numpy as np

GAP = 1e-3


def make_model(d, k, seed=0):
    rng = np.random.default_rng(seed)
    means = rng.normal(scale=2.5, size=(k, d))
    chol = rng.normal(size=(k, d, d)) / np.sqrt(d) + np.eye(d) * 0.5
    weights = rng.dirichlet(np.full(k, 5.0))
    return weights, means, chol


def make_chunk(model, index, size, seed=1):
    weights, means, chol = model
    rng = np.random.default_rng([seed, index])
    labels = np.searchsorted(np.cumsum(weights)[:-1], rng.random(size), side="right")
    eps = rng.standard_normal((size, means.shape[1]))
    return np.einsum("nij,nj->ni", chol[labels], eps) + means[labels]


def shared_init(first_chunk, k, seed=2):
    rng = np.random.default_rng(seed)
    d = first_chunk.shape[1]
    return dict(
        weights_init=np.full(k, 1.0 / k),
        means_init=first_chunk[rng.choice(len(first_chunk), k, replace=False)],
        precisions_init=np.broadcast_to(np.linalg.inv(np.cov(first_chunk, rowvar=False)), (k, d, d)).copy(),
    )


def first_reach(history, target):
    """Iterations needed for the objective (at the parameters entering each iteration) to reach target."""
    hit = np.flatnonzero(np.asarray(history) >= target)
    return int(hit[0]) if hit.size else None


def exact_log_likelihood(gm_cls, params, stream, k):
    """Exact mean log-likelihood of given mixture parameters over the stream (one E-step pass)."""
    probe = gm_cls(k, warm_start=True, max_iter=1, tol=0.0, progress=False)
    for name, value in params.items():
        setattr(probe, name, value)
    probe.fit(stream, algorithm="batch")
    return float(probe.lower_bounds_[0])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2_000_000)
    parser.add_argument("--d", type=int, default=5)
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--chunk", type=int, default=250_000)
    parser.add_argument("--batch-size", type=int, default=10_000)
    parser.add_argument("--max-passes", type=int, default=5)
    args = parser.parse_args()

    import lateo
    from sklearn.mixture import GaussianMixture as SkGaussianMixture

    n_chunks = args.n // args.chunk
    model = make_model(args.d, args.k)
    stream = lambda: (make_chunk(model, i, args.chunk) for i in range(n_chunks))  # noqa: E731
    t0 = time.perf_counter()
    X = np.concatenate(list(stream()))
    generate = time.perf_counter() - t0
    init = shared_init(X[: args.chunk], args.k)
    GM = lateo.GaussianMixture

    # warm-up: compile every program used below on the first chunk
    warm = [X[: args.chunk]]
    GM(args.k, max_iter=2, tol=0.0, progress=False, **init).fit(lambda: iter(warm))
    GM(args.k, max_iter=1, progress=False, batch_size=args.batch_size, **init).fit(iter(warm), algorithm="online")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        GM(args.k, max_iter=2, tol=0.0, progress=False, **init).fit(X)

    # the target: exact EM to convergence
    t0 = time.perf_counter()
    exact = GM(args.k, tol=1e-10, max_iter=2000, progress=False, **init).fit(X)
    memory_seconds = time.perf_counter() - t0
    target = exact.lower_bound_ - GAP
    it = first_reach(exact.lower_bounds_, target)
    memory = dict(iterations=it, seconds=memory_seconds * it / exact.n_iter_, seconds_per_iter=memory_seconds / exact.n_iter_)

    # exact EM over the stream, as many iterations as in memory
    t0 = time.perf_counter()
    streamed = GM(args.k, tol=0.0, max_iter=it + 1, progress=False, **init).fit(stream)
    stream_seconds = time.perf_counter() - t0
    exact_stream = dict(iterations=first_reach(streamed.lower_bounds_, target), seconds_per_iter=stream_seconds / (it + 1))
    exact_stream["seconds"] = exact_stream["seconds_per_iter"] * exact_stream["iterations"]

    # online EM: p passes (a fresh run for each p) until its parameters reach the target
    online_seconds, passes, reached, log_liks = 0.0, 0, False, []
    while passes < args.max_passes and not reached:
        passes += 1
        online = GM(args.k, max_iter=passes, tol=0.0, progress=False, batch_size=args.batch_size, **init)
        t0 = time.perf_counter()
        online.fit(stream, algorithm="online")
        online_seconds = time.perf_counter() - t0
        params = {name: getattr(online, name) for name in ("weights_", "means_", "covariances_", "precisions_cholesky_")}
        log_liks.append(exact_log_likelihood(GM, params, stream, args.k))
        reached = log_liks[-1] >= target
    online_result = dict(passes=passes, seconds=online_seconds, reached=reached, steps=int(online.n_steps_),
                         log_likelihood_per_pass=log_liks)

    # scikit-learn, one iteration per fit
    sk = SkGaussianMixture(args.k, covariance_type="full", warm_start=True, max_iter=1, tol=0.0, **init)
    sk_seconds, sk_iters, sk_bounds = 0.0, 0, []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        while sk_iters < 2000:
            t0 = time.perf_counter()
            sk.fit(X)
            sk_seconds += time.perf_counter() - t0
            sk_iters += 1
            sk_bounds.append(float(sk.lower_bound_))  # at the parameters entering this iteration
            if sk_bounds[-1] >= target:
                break
    # the last fit only evaluated the bound of the parameters reached before it: count sk_iters - 1
    sklearn = dict(iterations=sk_iters - 1, seconds=sk_seconds * (sk_iters - 1) / sk_iters,
                   seconds_per_iter=sk_seconds / sk_iters, reached=sk_bounds[-1] >= target)

    print(json.dumps(dict(
        workload=dict(n=n_chunks * args.chunk, d=args.d, k=args.k, covariance_type="full", chunk=args.chunk,
                      batch_size=args.batch_size, target_gap=GAP),
        exact_optimum=exact.lower_bound_,
        generate_seconds_per_pass=generate,
        lateo_online=online_result,
        lateo_exact_stream=exact_stream,
        lateo_exact_memory=memory,
        sklearn=sklearn,
        speedup_online_vs_exact_stream=exact_stream["seconds"] / online_seconds,
        speedup_online_vs_sklearn=sklearn["seconds"] / online_seconds,
        speedup_online_vs_exact_memory=memory["seconds"] / online_seconds,
        machine=dict(platform=platform.platform(), processor=platform.processor(), python=platform.python_version()),
    ), indent=2))


if __name__ == "__main__":
    main()
