"""Benchmark: MCMC on the O-ring posterior, lateo's kernels against BlackJAX and NumPyro NUTS, one process.

Workload (issue 4): Bayesian logistic regression of O-ring distress on raw
launch temperature (23 flights, Dalal, Fowlkes & Hoadley 1989), prior
N(0, 100^2) on intercept and slope, 64-bit floats, 4 chains, 2,000 warm-up
and 2,000 kept draws per chain.

* lateo: ``lateo.mcmc.sample`` with each kernel (rwm, mala, hmc, nuts),
  chains vmapped, default adaptation.
* BlackJAX: NUTS with ``window_adaptation`` (Stan's schedule, diagonal
  metric, its default), warm-up and sampling vmapped over the 4 chains.
* NumPyro: NUTS (default adaptation, diagonal metric), ``chain_method="vectorized"``.

Each sampler runs twice with different keys: the first time includes
compilation ("cold"), the second does not ("warm"). Effective sample size is
lateo's rank-normalised bulk ESS (equal to ArviZ's to 1e-8), minimum over the
two parameters, computed the same way for every sampler. Prints JSON with
seconds, ESS, ESS per second and the ratio to BlackJAX.

    python benchmarks/bench_mcmc.py [--warmup 2000] [--draws 2000] [--chains 4]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np

import lateo  # noqa: F401  (turns on float64)
from lateo import mcmc
from lateo.datasets import load_challenger_orings
from lateo.inference.mcmc.diagnostics import ess_bulk

PRIOR_SD = 100.0


def data():
    X, y = load_challenger_orings(as_frame=False)
    return jnp.asarray(X[:, 0], jnp.float64), jnp.asarray(y, jnp.float64)


TEMP, FAIL = data()


def logdensity(theta):
    """Log posterior of (intercept, slope) up to a constant."""
    eta = theta[0] + theta[1] * TEMP
    return jnp.sum(FAIL * eta - jnp.logaddexp(0.0, eta)) - 0.5 * jnp.sum(theta**2) / PRIOR_SD**2


INIT = jnp.zeros(2)


def run_lateo(kernel, key, args):
    res = mcmc.sample(logdensity, INIT, kernel=kernel, key=key, num_warmup=args.warmup, num_samples=args.draws,
                      num_chains=args.chains, progress=False, warn=False)  # fmt: skip
    return res.samples  # (chains, draws, 2)


def run_blackjax(key, args):
    import blackjax

    warmup = blackjax.window_adaptation(blackjax.nuts, logdensity)
    k_init, k_warm, k_draw = jax.random.split(jax.random.key(key), 3)
    init = INIT + 0.1 * jax.random.normal(k_init, (args.chains, 2))

    @jax.jit
    def run(init, k_warm, k_draw):
        def one_chain(x0, kw, kd):
            (state, params), _ = warmup.run(kw, x0, num_steps=args.warmup)
            step = blackjax.nuts(logdensity, **params).step

            def body(state, k):
                state, _ = step(k, state)
                return state, state.position

            _, draws = jax.lax.scan(body, state, jax.random.split(kd, args.draws))
            return draws

        return jax.vmap(one_chain)(init, jax.random.split(k_warm, args.chains), jax.random.split(k_draw, args.chains))

    return np.asarray(run(init, k_warm, k_draw))


def run_numpyro(key, args):
    import numpyro
    import numpyro.distributions as dist
    from numpyro.infer import MCMC, NUTS

    def model(temp, fail):
        alpha = numpyro.sample("alpha", dist.Normal(0.0, PRIOR_SD))
        beta = numpyro.sample("beta", dist.Normal(0.0, PRIOR_SD))
        numpyro.sample("y", dist.Bernoulli(logits=alpha + beta * temp), obs=fail)

    sampler = MCMC(NUTS(model), num_warmup=args.warmup, num_samples=args.draws, num_chains=args.chains,
                   chain_method="vectorized", progress_bar=False)  # fmt: skip
    sampler.run(jax.random.key(key), TEMP, FAIL)
    post = sampler.get_samples(group_by_chain=True)
    return np.stack([np.asarray(post["alpha"]), np.asarray(post["beta"])], axis=-1)


def timed(fn, key):
    start = time.perf_counter()
    draws = fn(key)
    seconds = time.perf_counter() - start
    ess = min(ess_bulk(draws[..., j]) for j in range(draws.shape[-1]))
    return seconds, float(ess), draws


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--warmup", type=int, default=2000)
    parser.add_argument("--draws", type=int, default=2000)
    parser.add_argument("--chains", type=int, default=4)
    args = parser.parse_args()

    samplers = {f"lateo-{k}": (lambda key, k=k: run_lateo(k, key, args)) for k in ("rwm", "mala", "hmc", "nuts")}
    samplers["blackjax-nuts"] = lambda key: run_blackjax(key, args)
    samplers["numpyro-nuts"] = lambda key: run_numpyro(key, args)
    rows = {}
    for name, fn in samplers.items():
        cold_s, cold_ess, _ = timed(fn, 1)
        warm_s, warm_ess, draws = timed(fn, 2)
        rows[name] = {
            "cold_seconds": round(cold_s, 3),
            "warm_seconds": round(warm_s, 3),
            "ess_bulk_min": round(warm_ess, 1),
            "ess_per_second_warm": round(warm_ess / warm_s, 1),
            "ess_per_second_cold": round(cold_ess / cold_s, 1),
            "posterior_mean": [round(float(m), 4) for m in draws.reshape(-1, 2).mean(0)],
        }
    ref = rows["blackjax-nuts"]
    for row in rows.values():
        row["warm_ratio_to_blackjax"] = round(row["ess_per_second_warm"] / ref["ess_per_second_warm"], 2)
        row["cold_ratio_to_blackjax"] = round(row["ess_per_second_cold"] / ref["ess_per_second_cold"], 2)
    out = {
        "workload": f"O-ring posterior, raw temperature, N(0, 100^2) prior, float64, {args.chains} chains, "
        f"{args.warmup} warm-up + {args.draws} draws",
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "jax": jax.__version__,
        "results": rows,
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
