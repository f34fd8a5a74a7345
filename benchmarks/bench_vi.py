"""Benchmark: ADVI on the O-ring posterior, lateo.vi.fit against NumPyro SVI, one process.

Workload (issue 6): Bayesian logistic regression of O-ring distress on raw
launch temperature (23 flights, Dalal, Fowlkes & Hoadley 1989), prior
N(0, 100^2) on intercept and slope, 64-bit floats; the posterior correlation
of (alpha, beta) is -0.998, a hard case for stochastic-gradient VI.

* Same model, data, starting point (0, 0), initial scale 0.1, number of
  steps, Monte Carlo draws per step and optimiser: Adam with a cosine decay
  of the learning rate from ``--lr`` to ``0.01 * lr``, the same optax object
  for both (NumPyro through ``numpyro.optim.optax_to_numpyro``), which is
  also lateo's default schedule.
* lateo: ``lateo.vi.fit`` with family "meanfield" and "fullrank", default
  estimator (STL) and, for the same gradient estimator as NumPyro, "standard".
* NumPyro: ``SVI`` with ``Trace_ELBO(num_particles)`` and the guides
  ``AutoNormal`` (mean-field) and ``AutoMultivariateNormal`` (full-rank);
  ``svi.update`` iterated in a ``lax.scan`` under one ``jax.jit``, the fastest
  way to run it.

Each fit runs twice with different keys; the first run includes compilation
("cold"), the second does not ("warm"): steps per second are warm, compile
seconds are cold minus warm. The final ELBO of every fitted Gaussian (in the
unconstrained space, here the identity) is estimated the same way for all:
``E_q[log p(u)] + H[q]`` with 400,000 draws (one key for all) and the Gaussian
entropy in closed form, with ``log p`` the same unnormalised log posterior.
Prints JSON with both and the ratios lateo / NumPyro.

    python benchmarks/bench_vi.py [--steps 10000] [--particles 4] [--lr 0.1]
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
import optax

import lateo  # noqa: F401  (turns on float64)
from lateo import vi
from lateo.datasets import load_challenger_orings

PRIOR_SD = 100.0
ELBO_DRAWS = 400_000
X_, Y_ = load_challenger_orings(as_frame=False)
TEMP, FAIL = jnp.asarray(X_[:, 0]), jnp.asarray(Y_, jnp.float64)
INIT = jnp.zeros(2)


def logdensity(theta):
    """Log posterior of (alpha, beta) up to a constant."""
    eta = theta[0] + theta[1] * TEMP
    return jnp.sum(FAIL * eta - jnp.logaddexp(0.0, eta)) - 0.5 * jnp.sum(theta**2) / PRIOR_SD**2


def make_optimizer(args):
    return optax.adam(optax.cosine_decay_schedule(args.lr, args.steps, alpha=0.01))


@jax.jit
def _elbo_of_gaussian(loc, tril, key):
    u = loc + jax.random.normal(key, (ELBO_DRAWS, loc.shape[0]), loc.dtype) @ tril.T
    return jnp.mean(jax.vmap(logdensity)(u)) + vi.gaussian_entropy_tril(tril)


def final_elbo(loc, tril):
    """The common estimator of the final ELBO: E_q[log p] (400k draws, key 0) + closed-form entropy."""
    return float(_elbo_of_gaussian(jnp.asarray(loc), jnp.asarray(tril), jax.random.key(0)))


def run_lateo(family, estimator, optimizer, key, args):
    post = vi.fit(logdensity, INIT, family=family, num_steps=args.steps, num_samples=args.particles, key=key,
                  estimator=estimator, optimizer=optimizer, init_scale=0.1, progress=False)  # fmt: skip
    return post.loc, post.scale_tril


def numpyro_runner(guide_name, optimizer, args):
    """A jitted function key -> fitted (loc, scale_tril), scanning ``svi.update`` ``args.steps`` times."""
    import numpyro
    import numpyro.distributions as dist
    from numpyro.infer import SVI, Trace_ELBO
    from numpyro.infer.autoguide import AutoMultivariateNormal, AutoNormal
    from numpyro.infer.initialization import init_to_value
    from numpyro.optim import optax_to_numpyro

    def model(temp, fail):
        alpha = numpyro.sample("alpha", dist.Normal(0.0, PRIOR_SD))
        beta = numpyro.sample("beta", dist.Normal(0.0, PRIOR_SD))
        numpyro.sample("y", dist.Bernoulli(logits=alpha + beta * temp), obs=fail)

    init = init_to_value(values={"alpha": 0.0, "beta": 0.0})
    guide_cls = AutoNormal if guide_name == "AutoNormal" else AutoMultivariateNormal
    guide = guide_cls(model, init_loc_fn=init, init_scale=0.1)
    svi = SVI(model, guide, optax_to_numpyro(optimizer), Trace_ELBO(num_particles=args.particles))

    @jax.jit
    def run(key):
        state = svi.init(key, TEMP, FAIL)
        state, _ = jax.lax.scan(lambda s, _: svi.update(s, TEMP, FAIL), state, None, length=args.steps)
        params = svi.get_params(state)
        if guide_name == "AutoNormal":
            loc = jnp.stack([params["alpha_auto_loc"], params["beta_auto_loc"]])
            return loc, jnp.diag(jnp.stack([params["alpha_auto_scale"], params["beta_auto_scale"]]))
        return params["auto_loc"], params["auto_scale_tril"]

    return lambda key: run(jax.random.key(key))


def timed(fn, key):
    start = time.perf_counter()
    loc, tril = fn(key)
    loc, tril = np.asarray(loc), np.asarray(tril)  # block until done
    return time.perf_counter() - start, loc, tril


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--particles", type=int, default=4)
    parser.add_argument("--lr", type=float, default=0.1)
    args = parser.parse_args()

    opt = make_optimizer(args)  # one object: lateo compiles once for it
    fits = {
        "lateo-meanfield-stl": lambda k: run_lateo("meanfield", "stl", opt, k, args),
        "lateo-meanfield-standard": lambda k: run_lateo("meanfield", "standard", opt, k, args),
        "numpyro-AutoNormal": numpyro_runner("AutoNormal", opt, args),
        "lateo-fullrank-stl": lambda k: run_lateo("fullrank", "stl", opt, k, args),
        "lateo-fullrank-standard": lambda k: run_lateo("fullrank", "standard", opt, k, args),
        "numpyro-AutoMultivariateNormal": numpyro_runner("AutoMultivariateNormal", opt, args),
    }
    rows = {}
    for name, fn in fits.items():
        cold, _, _ = timed(fn, 1)
        warm, loc, tril = timed(fn, 2)
        rows[name] = {
            "cold_seconds": round(cold, 3),
            "warm_seconds": round(warm, 3),
            "compile_seconds": round(cold - warm, 3),
            "steps_per_second": round(args.steps / warm, 1),
            "final_elbo": round(final_elbo(loc, tril), 4),
            "mean": [round(float(m), 4) for m in loc],
            "std": [round(float(s), 4) for s in np.sqrt(np.diag(tril @ tril.T))],
        }
    for name, row in rows.items():
        peer = rows["numpyro-AutoNormal" if "meanfield" in name else "numpyro-AutoMultivariateNormal"]
        if name.startswith("lateo"):
            row["speed_ratio_to_numpyro"] = round(row["steps_per_second"] / peer["steps_per_second"], 2)
            row["elbo_minus_numpyro"] = round(row["final_elbo"] - peer["final_elbo"], 4)
    out = {
        "workload": f"O-ring posterior, raw temperature, N(0, 100^2) prior, float64, {args.steps} steps, "
        f"{args.particles} draws per step, Adam lr {args.lr} cosine-decayed to {0.01 * args.lr:g}",
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "jax": jax.__version__,
        "results": rows,
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
