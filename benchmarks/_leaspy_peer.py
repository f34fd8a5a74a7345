"""Peer wrapper around Leaspy 2.x (the reference disease-progression library).

Leaspy runs in lateo's own venv (torch 2.13.0+cpu, numpy 2.4, pandas 3.1):
install with

    .venv/bin/pip install torch==2.13.0           # CPU wheel from local disk
    .venv/bin/pip install --no-deps leaspy         # its metadata pins torch<2.8, numpy<2, pandas<3
    .venv/bin/pip install --no-deps lifelines autograd autograd-gamma formulaic interface_meta wrapt
    .venv/bin/pip install statsmodels              # imported by `import leaspy`

(lifelines' metadata pins pandas<3, hence --no-deps; `pip check` will list the
ignored pins, they are harmless for the mcmc_saem fit used here.)

Leaspy 2.1.0's univariate logistic model (site-packages/leaspy, 2.1.0)
----------------------------------------------------------------------
For subject i at age t (no sources when there is one feature):

    alpha_i = exp(xi_i)                                   time_reparametrized.py:234
    rt      = alpha_i * (t - tau_i)                        time_reparametrized.py:211
    metric  = (g + 1)**2 / g                               logistic.py:155
    y(t)    = sigmoid(metric * v0 * rt - log g)            logistic.py:192-198
            = 1 / (1 + g * exp(-(g+1)**2/g * v0 * exp(xi_i) * (t - tau_i)))

    g  = exp(log_g),  log_g  ~ N(log_g_mean, 0.01)        logistic.py:131-134
    v0 = exp(log_v0), log_v0 ~ N(log_v0_mean, 0.01)       riemanian_manifold.py:148-161
    tau_i ~ N(tau_mean, tau_std), xi_i ~ N(0, xi_std)     time_reparametrized.py:227-232,
                                                          riemanian_manifold.py:153 (xi_mean = 0)
    y_ij ~ N(y(t_ij), noise_std**2)                       obs_models/_gaussian.py ("gaussian-scalar")

So y(tau_i) = 1/(1+g) and dy/dt at t = tau_i equals v0 * alpha_i: v0 is the
population speed (feature units per year) at the inflexion-reference point
tau; Leaspy stores it as log_v0_mean.  There is no separate reference time
t0: tau is on the absolute age scale.  At every M-step the xi realisations are
re-centred and the mean moved into log_v0 (riemanian_manifold.py:104-106,129).

The reported "g" and "v0" below are on the natural scale: exp(log_g_mean) and
exp(log_v0_mean).
"""

from __future__ import annotations

import contextlib
import io
import time

import numpy as np
import pandas as pd

__all__ = ["fit_leaspy", "simulate_logistic", "logistic_curve"]


def logistic_curve(t, tau, xi, g, v0):
    """Leaspy 2.x univariate logistic trajectory (see module docstring)."""
    t = np.asarray(t, dtype=float)
    rt = np.exp(xi) * (t - tau)
    logit = (g + 1.0) ** 2 / g * v0 * rt - np.log(g)
    return 1.0 / (1.0 + np.exp(-logit))


def simulate_logistic(
    n_subjects,
    n_visits,
    seed=0,
    tau_mean=70.0,
    tau_std=5.0,
    xi_std=0.5,
    noise_std=0.05,
    g=2.0,
    v0=0.15,
    baseline_offset=-2.5,
    baseline_std=None,
    visit_interval=1.0,
    feature="Y",
):
    """Simulate data from Leaspy's own univariate logistic model, in numpy.

    tau_i ~ N(tau_mean, tau_std), xi_i ~ N(0, xi_std); baseline ages are drawn
    independently of tau_i, ~ N(tau_mean + baseline_offset, baseline_std)
    (baseline_std defaults to tau_std), so that the visit window
    [baseline, baseline + (n_visits-1)*visit_interval] is centred on the
    population inflexion age and the rise of the curve is observed across the
    cohort; visits are then every `visit_interval` years.  Noise is Gaussian
    with sd noise_std (values are not clipped to [0, 1]).

    Returns (df, truth) where df is the long DataFrame with columns
    ID (str), TIME, <feature> and truth a DataFrame with ID, tau, xi.
    """
    rng = np.random.default_rng(seed)
    if baseline_std is None:
        baseline_std = tau_std
    tau = rng.normal(tau_mean, tau_std, n_subjects)
    xi = rng.normal(0.0, xi_std, n_subjects)
    base = rng.normal(tau_mean + baseline_offset, baseline_std, n_subjects)
    times = base[:, None] + visit_interval * np.arange(n_visits)[None, :]
    y = logistic_curve(times, tau[:, None], xi[:, None], g, v0)
    y = y + rng.normal(0.0, noise_std, y.shape)
    ids = np.array([f"s{i:05d}" for i in range(n_subjects)])
    df = pd.DataFrame(
        {
            "ID": np.repeat(ids, n_visits),
            "TIME": times.ravel(),
            feature: y.ravel(),
        }
    )
    truth = pd.DataFrame({"ID": ids, "tau": tau, "xi": xi})
    return df, truth


def _scalar(x):
    return float(np.asarray(x.detach().cpu() if hasattr(x, "detach") else x).ravel()[0])


def fit_leaspy(
    df,
    n_iter=1000,
    seed=0,
    model="logistic",
    personalize=None,
    verbose=False,
    **algo_kwargs,
):
    """Fit a Leaspy model with MCMC-SAEM on a long DataFrame (ID, TIME, features...).

    seconds: wall time of `model.fit(...)` only (model initialisation from the
    data + all SAEM iterations); building Leaspy's Data/Dataset objects and any
    personalisation are outside the timer.  seconds_algo: Leaspy's own timing
    of `algorithm.run` alone (training_info["duration"]).

    params: tau_mean, tau_std, xi_std, noise_std, g = exp(log_g_mean),
    v0 = exp(log_v0_mean) (natural scale; v0 is the speed at tau, see module
    docstring), plus log_g, log_v0, and for multivariate data lists.

    individual: DataFrame ID, tau, xi taken from the last MCMC realisations
    (cheap; xi centred at each M-step).  With personalize="mean_posterior" /
    "mode_posterior" / "scipy_minimize" the estimates of that personalisation
    algorithm are returned instead (timed separately in "seconds_personalize").

    Extra keyword arguments go to Leaspy's mcmc_saem settings (e.g.
    n_burn_in_iter_frac=0.9, the default).
    """
    import torch  # noqa: F401
    from leaspy.io.data import Data, Dataset
    from leaspy.models import model_factory

    df = df.copy()
    df["ID"] = df["ID"].astype(str)
    features = [c for c in df.columns if c not in ("ID", "TIME")]
    data = Data.from_dataframe(df)
    dataset = Dataset(data)
    kw = {}
    if len(features) == 1 and model not in ("lme", "constant"):
        # Without this Leaspy sets source_dimension = floor(sqrt(1)) = 1 and
        # samples a useless `sources` latent (time_reparametrized.py:326-331).
        kw["source_dimension"] = 0
    m = model_factory(model, **kw)

    sink = contextlib.nullcontext() if verbose else contextlib.redirect_stdout(io.StringIO())
    with sink:
        t0 = time.perf_counter()
        m.fit(
            dataset,
            "mcmc_saem",
            n_iter=int(n_iter),
            seed=int(seed),
            progress_bar=False,
            **algo_kwargs,
        )
        seconds = time.perf_counter() - t0

    p = {k: v.detach().cpu().numpy() for k, v in m.parameters.items()}
    params = {}
    for k in ("tau_mean", "tau_std", "xi_std", "noise_std"):
        if k in p:
            params[k] = float(p[k].ravel()[0]) if p[k].size == 1 else p[k].tolist()
    for k in ("g", "v0"):
        lk = f"log_{k}_mean"
        if lk in p:
            vals = p[lk].ravel()
            params[f"log_{k}"] = float(vals[0]) if vals.size == 1 else vals.tolist()
            params[k] = float(np.exp(vals[0])) if vals.size == 1 else np.exp(vals).tolist()
    for k, v in p.items():  # anything model-specific (betas_mean, ...)
        if k not in ("log_g_mean", "log_v0_mean") and k not in params and v.size:
            params[k] = v.tolist()

    out = {
        "seconds": seconds,
        "seconds_per_iter": seconds / n_iter,
        "seconds_algo": float(str(m.training_info.get("duration", "nan")).rstrip("s")),
        "n_iter": int(n_iter),
        "params": params,
        "torch_threads": torch.get_num_threads(),
    }

    ids = [str(i) for i in dataset.indices]
    if personalize:
        with sink:
            t1 = time.perf_counter()
            ip = m.personalize(dataset, personalize, seed=int(seed), progress_bar=False)
            out["seconds_personalize"] = time.perf_counter() - t1
        ind = ip.to_dataframe().reset_index()
        ind["ID"] = ind["ID"].astype(str)
        out["individual"] = ind[["ID", "tau", "xi"]].reset_index(drop=True)
    else:
        st = m.state
        out["individual"] = pd.DataFrame(
            {
                "ID": ids,
                "tau": st["tau"].detach().cpu().numpy().reshape(-1),
                "xi": st["xi"].detach().cpu().numpy().reshape(-1),
            }
        )
    out["_model"] = m  # for callers that want more (not JSON-serialisable)
    return out
