"""Benchmark: lateo's EM on a GPU in float32 (issue 8). Unverified on a GPU so far.

Workloads (issue 8): a Gaussian mixture with N = 10^7, D = 32, K = 32 (full
covariances) and a Gaussian HMM with one sequence of T = 10^6 steps, K = 32
states (D = 4, diagonal covariances), both with ``dtype="float32"``. For
each it reports the time per EM iteration, ``(t(iters) - t(1)) / (iters -
1)`` after a warm-up fit (set-up and compilation cancel), and an *achieved
memory bandwidth*: a lower bound on the bytes one iteration must move,
divided by that time, against the device's peak bandwidth:

* GMM: the data are read once per E-step, ``N D 4`` bytes;
* HMM: the data are read once and the (T, K) emission log-likelihoods are
  written once and read by the forward and backward passes, ``T (D + 3K) 4``
  bytes.

These are lower bounds on the traffic (the real kernels also move
intermediates), so the ratio to the peak understates the true bandwidth use.

Device selection: JAX uses its default backend (a GPU when ``jax[cuda12]``
is installed and a GPU is visible); ``JAX_PLATFORMS=cuda`` forces it,
``CUDA_VISIBLE_DEVICES`` picks the card. Without a GPU the script prints a
skip message (JSON with ``"skipped": true``) and exits 0; ``--allow-cpu``
runs the same code on the CPU (with ``--n``/``--t`` small) to check it.

    python benchmarks/bench_gpu.py [--iters 5] [--peak-gbps 3350]
    python benchmarks/bench_gpu.py --allow-cpu --n 100000 --t 20000   # smoke test on a CPU
"""

from __future__ import annotations

import argparse
import json
import time
import warnings

import numpy as np

#: Peak memory bandwidth (GB/s) by substring of ``jax.Device.device_kind`` (vendor data sheets).
PEAK_GBPS = {
    "H200": 4800.0, "H100 PCIe": 2000.0, "H100": 3350.0, "A100-SXM4-80GB": 2039.0, "A100 80GB": 1935.0,
    "A100": 1555.0, "L40S": 864.0, "L4": 300.0, "A10": 600.0, "V100": 900.0, "T4": 320.0,
}


def peak_bandwidth(kind: str, override: float | None) -> float | None:
    """The device's peak in GB/s: ``override``, else the first matching entry of :data:`PEAK_GBPS`."""
    if override is not None:
        return override
    for name, gbps in PEAK_GBPS.items():
        if name in kind:
            return gbps
    return None


def per_iteration(fit, iters: int) -> dict:
    fit(1)  # warm-up: compilation and first transfers
    times = {}
    for m in (1, iters):
        t0 = time.perf_counter()
        fit(m)
        times[m] = time.perf_counter() - t0
    return dict(per_iter=max(times[iters] - times[1], 0.0) / (iters - 1), fit_1_iter=times[1])


def gmm(n: int, d: int, k: int, iters: int) -> dict:
    import lateo

    rng = np.random.default_rng(0)
    X = (rng.standard_normal((n, d), dtype=np.float32) + rng.integers(k, size=(n, 1)).astype(np.float32))
    init = dict(weights_init=np.full(k, 1.0 / k), means_init=X[rng.choice(n, k, replace=False)].astype(np.float64),
                precisions_init=np.broadcast_to(np.eye(d), (k, d, d)).copy())

    def fit(m):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return lateo.GaussianMixture(k, covariance_type="full", tol=0.0, max_iter=m, dtype="float32",
                                         progress=False, **init).fit(X)

    out = per_iteration(fit, iters)
    out.update(model="GaussianMixture", n=n, d=d, k=k, min_bytes_per_iter=n * d * 4)
    return out


def hmm(t: int, d: int, k: int, iters: int) -> dict:
    import lateo

    rng = np.random.default_rng(0)
    states = np.repeat(rng.integers(k, size=t // 50 + 1), 50)[:t]
    X = rng.standard_normal((t, d)) + states[:, None].astype(np.float64)
    trans = np.full((k, k), 0.02 / (k - 1)) + np.eye(k) * (0.98 - 0.02 / (k - 1))

    def fit(m):
        model = lateo.GaussianHMM(k, covariance_type="diag", n_iter=m, tol=-np.inf, init_params="",
                                  dtype="float32", progress=False)
        model.startprob_ = np.full(k, 1.0 / k)
        model.transmat_ = trans
        model.means_ = np.tile(np.arange(k, dtype=np.float64)[:, None], (1, d))
        model.covars_ = np.ones((k, d))
        return model.fit(X)

    out = per_iteration(fit, iters)
    out.update(model="GaussianHMM", t=t, d=d, k=k, min_bytes_per_iter=t * (d + 3 * k) * 4)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000_000, help="GMM rows")
    parser.add_argument("--t", type=int, default=1_000_000, help="HMM sequence length")
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--peak-gbps", type=float, default=None, help="device peak bandwidth if not in the table")
    parser.add_argument("--allow-cpu", action="store_true", help="run on the CPU (a smoke test)")
    args = parser.parse_args()
    import jax

    device = jax.devices()[0]
    if device.platform == "cpu" and not args.allow_cpu:
        print(json.dumps(dict(benchmark="gpu", skipped=True, reason="no GPU: JAX's default backend is "
                              f"{jax.default_backend()!r}; install jax[cuda12] on a machine with a GPU, or pass "
                              "--allow-cpu for a smoke test")))
        return
    peak = peak_bandwidth(device.device_kind, args.peak_gbps)
    results = [gmm(args.n, 32, 32, args.iters), hmm(args.t, 4, 32, args.iters)]
    for r in results:
        r["achieved_gbps"] = r["min_bytes_per_iter"] / r["per_iter"] / 1e9 if r["per_iter"] > 0 else None
        r["fraction_of_peak"] = r["achieved_gbps"] / peak if peak and r["achieved_gbps"] else None
    print(json.dumps(dict(benchmark="gpu", device=device.device_kind, platform=device.platform, dtype="float32",
                          peak_gbps=peak, iters=args.iters, results=results), indent=2))


if __name__ == "__main__":
    main()
