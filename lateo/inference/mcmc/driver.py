r"""Multi-chain MCMC driver: warm-up with adaptation, then sampling with a frozen kernel.

:func:`sample` runs ``num_chains`` chains (vmapped) of one of the kernels in
:mod:`lateo.inference.mcmc.kernels` on any log-density of a pytree position.

* **Warm-up** (``num_warmup`` steps): the kernel's scale is tuned by
  Robbins-Monro toward a target acceptance rate (Andrieu & Thoms 2008); from
  a quarter of the way in, the running covariance of the draws is collected
  (Haario, Saksman & Tamminen 2001), pooled over the chains, and used as the
  RWM proposal covariance or, on its diagonal, as HMC's inverse mass matrix.
  Each chain keeps its own Robbins-Monro scale.
* **Sampling** (``num_samples`` steps): the adapted parameters are frozen,
  so every chain is a time-homogeneous Markov chain leaving the target
  invariant and the ergodic theorem applies (seed 002). Warm-up draws are
  discarded.

Both phases iterate in jitted chunks (a ``fori_loop`` with a run-time
length writing into a fixed-size buffer), so a progress bar updates between
chunks and each phase compiles once per (kernel, log-density, shapes),
whatever ``num_warmup`` and ``num_samples`` are. The random key of step
``t`` of chain ``c`` is ``fold_in(key_c, t)``, so results do not depend on
the chunking: the same ``key`` gives the same draws, bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from ..._validation import check_int, check_random_key
from ...core.progress import FitProgress, check_progress
from . import kernels as K

CHUNK = 250
"""Steps per jitted chunk (the buffer length; fixed, so no recompilation)."""

JITTER = 0.1
"""Standard deviation of the Gaussian jitter added to a shared starting point."""

HMC_NUM_STEPS = 10
"""Leapfrog steps per HMC transition."""

HMC_JITTER = 0.2
"""Relative step-size jitter of HMC (Neal 2011, sec. 5.4.2.2)."""


@dataclass(frozen=True)
class MCMCResult:
    """Draws and diagnostics of :func:`sample` (numpy arrays).

    Attributes
    ----------
    samples : pytree of numpy arrays
        Same structure as a position; each leaf shaped ``(num_chains, num_samples, *leaf_shape)``.
    log_density : numpy.ndarray
        ``(num_chains, num_samples)`` log-density of each draw.
    acceptance_rate : numpy.ndarray
        ``(num_chains,)`` mean acceptance probability during sampling.
    warmup_acceptance_rate : numpy.ndarray
        ``(num_chains,)`` mean acceptance probability during warm-up (NaN without warm-up).
    kernel_params : dict
        Frozen adapted parameters per chain: ``scale`` (Cholesky factor,
        ``(num_chains, d, d)``) for RWM, ``step_size`` for MALA, ``step_size``
        and ``inverse_mass_matrix`` for HMC.
    kernel : str
        Kernel name.
    acceptance : numpy.ndarray
        ``(num_chains, num_samples)`` per-step acceptance probabilities.
    """

    samples: Any
    log_density: np.ndarray
    acceptance_rate: np.ndarray
    warmup_acceptance_rate: np.ndarray
    kernel_params: dict
    kernel: str
    acceptance: np.ndarray

    @classmethod
    def from_draws(cls, *, kernel, template, flat_samples, log_density, acceptance, warmup_acceptance, kernel_params):
        leaves, treedef = jax.tree_util.tree_flatten(template)
        sizes = np.cumsum([leaf.size for leaf in leaves])[:-1]
        chains, draws = flat_samples.shape[:2]
        parts = np.split(flat_samples, sizes, axis=-1)
        out = [part.reshape((chains, draws) + leaf.shape) for part, leaf in zip(parts, leaves)]
        warm = warmup_acceptance.mean(axis=1) if warmup_acceptance.shape[1] else np.full(chains, np.nan)
        return cls(
            samples=jax.tree_util.tree_unflatten(treedef, out),
            log_density=log_density,
            acceptance_rate=acceptance.mean(axis=1),
            warmup_acceptance_rate=warm,
            kernel_params=kernel_params,
            kernel=kernel,
            acceptance=acceptance,
        )

    def _scalar_draws(self) -> dict:
        """``{name: (chains, draws)}`` for every scalar coordinate (``a``, ``b[0]``, ...)."""
        out = {}
        for path, leaf in jax.tree_util.tree_flatten_with_path(self.samples)[0]:
            name = jax.tree_util.keystr(path).strip("[]'\"") or "x"
            chains, draws = leaf.shape[:2]
            flat = leaf.reshape(chains, draws, -1)
            for j, idx in enumerate(np.ndindex(leaf.shape[2:])):
                label = name if not idx else f"{name}[{','.join(map(str, idx))}]"
                out[label] = flat[:, :, j]
        return out

    def summary(self):
        """A table of the posterior, one row per scalar coordinate: mean, sd,
        5/50/95 % quantiles, MCSE, bulk and tail ESS and R-hat
        (:func:`lateo.inference.mcmc.diagnostics.summary`)."""
        from .diagnostics import summary

        return summary(self._scalar_draws())

    def check_convergence(self, rhat_threshold: float = 1.01, ess_threshold: float = 400) -> bool:
        """Warn (``UserWarning``) for R-hat above ``rhat_threshold`` or ESS below
        ``ess_threshold`` (Vehtari et al. 2021); return whether all checks pass."""
        from .diagnostics import check_convergence

        return check_convergence(self._scalar_draws(), rhat_threshold=rhat_threshold, ess_threshold=ess_threshold)

    def to_arviz(self):
        """The draws as an ``arviz.InferenceData`` (posterior group, one variable per
        leaf of the position; ``log_density`` and acceptance in sample_stats).

        Needs the optional dependency arviz (``pip install "arviz==0.23.*"``).
        """
        try:
            import arviz
        except ImportError as exc:
            raise ImportError('to_arviz needs arviz: pip install "arviz==0.23.*"') from exc
        posterior = {}
        for path, leaf in jax.tree_util.tree_flatten_with_path(self.samples)[0]:
            posterior[jax.tree_util.keystr(path).strip("[]'\"") or "x"] = np.asarray(leaf)
        stats = {"lp": self.log_density, "acceptance_rate": self.acceptance}
        return arviz.from_dict(posterior=posterior, sample_stats=stats)

    def plot_trace(self, max_params: int = 20):
        """Trace plot (left) and pooled histogram (right), one row per scalar coordinate.

        Shows at most ``max_params`` coordinates. Returns the matplotlib figure.
        """
        from ...plots import _pyplot

        plt = _pyplot()
        draws = list(self._scalar_draws().items())[:max_params]
        fig, axes = plt.subplots(len(draws), 2, figsize=(10, 2.2 * len(draws)), squeeze=False)
        for row, (name, x) in zip(axes, draws):
            for c in range(x.shape[0]):
                row[0].plot(x[c], lw=0.5, alpha=0.8, label=f"chain {c}")
            row[0].set_ylabel(name)
            row[1].hist(x.ravel(), bins=40, density=True, color="0.5")
        axes[0, 0].set_title("trace")
        axes[0, 1].set_title("histogram (all chains)")
        axes[-1, 0].set_xlabel("draw")
        fig.tight_layout()
        return fig


class _Spec(NamedTuple):
    init: Any
    step: Any  # step(key, state, logdensity_fn, params) -> (state, info)
    params: Any  # params(adaptation_state) -> kernel parameters
    initial_scale: Any  # initial_scale(dim) -> float
    target: Any  # target(dim) -> default acceptance rate


def _rwm_target(dim):
    # 0.44 is optimal in one dimension, 0.234 as d grows (Roberts, Gelman & Gilks 1997;
    # Roberts & Rosenthal 2001).
    return 0.44 if dim == 1 else 0.234


def _hmc_params(a):
    return jnp.exp(a.log_scale), K.adapted_inverse_mass(a)


def _hmc_step(key, state, fn, params):
    return K.hmc_step(key, state, fn, params[0], params[1], HMC_NUM_STEPS, HMC_JITTER)


_SPECS = {
    "rwm": _Spec(K.rwm_init, K.rwm_step, K.haario_scale, lambda d: 2.38 / np.sqrt(d), _rwm_target),
    "mala": _Spec(K.mala_init, K.mala_step, lambda a: jnp.exp(a.log_scale), lambda d: d ** (-1 / 6), lambda d: 0.574),
    "hmc": _Spec(K.hmc_init, _hmc_step, _hmc_params, lambda d: d ** (-1 / 4), lambda d: 0.8),
}

KERNELS = tuple(_SPECS)
_AXIS = "chains"
DEFAULT_KERNEL = "hmc"


def _chain(spec, fn, adapt, buffer_len, key, state, astate, start, n_steps, target, collect_from):
    """Run one chain for ``n_steps`` steps from global step ``start``."""
    flat0, _ = ravel_pytree(state.position)
    acc_buf = jnp.zeros(buffer_len, flat0.dtype)
    pos_buf = jnp.zeros((0 if adapt else buffer_len, flat0.size), flat0.dtype)
    ld_buf = jnp.zeros(0 if adapt else buffer_len, flat0.dtype)
    frozen = None if adapt else spec.params(K.pool_moments(astate, _AXIS))

    def body(i, carry):
        state, astate, acc_buf, pos_buf, ld_buf = carry
        t = start + i
        params = spec.params(K.pool_moments(astate, _AXIS)) if adapt else frozen
        state, info = spec.step(jax.random.fold_in(key, t), state, fn, params)
        acc_buf = acc_buf.at[i].set(info.acceptance_probability)
        if adapt:
            flat, _ = ravel_pytree(state.position)
            astate = K.adaptation_update(astate, flat, info.acceptance_probability, target, t >= collect_from)
        else:
            pos_buf = pos_buf.at[i].set(ravel_pytree(state.position)[0])
            ld_buf = ld_buf.at[i].set(state.logdensity)
        return state, astate, acc_buf, pos_buf, ld_buf

    return jax.lax.fori_loop(0, n_steps, body, (state, astate, acc_buf, pos_buf, ld_buf))


@partial(jax.jit, static_argnames=("kernel", "logdensity_fn", "adapt"))
def _run_chunk(keys, state, astate, start, n_steps, target, collect_from, *, kernel, logdensity_fn, adapt):
    """One jitted chunk for all chains (vmapped)."""
    spec = _SPECS[kernel]
    run = partial(_chain, spec, logdensity_fn, adapt, CHUNK)
    return jax.vmap(run, in_axes=(0, 0, 0, None, None, None, None), axis_name=_AXIS)(
        keys, state, astate, start, n_steps, target, collect_from
    )


def _check_finite_tree(tree, name):
    leaves = jax.tree_util.tree_leaves(tree)
    if not leaves:
        raise ValueError(f"{name} must be a pytree with at least one array leaf, got {tree!r}.")
    for leaf in leaves:
        if not np.all(np.isfinite(np.asarray(leaf))):
            raise ValueError(f"{name} contains NaN or infinite values; pass a finite starting point, got {tree!r}.")


def _initial_positions(key, init, num_chains, per_chain_init, logdensity):
    """Starting positions with a leading chain axis (see :func:`sample`)."""
    dtype = jnp.result_type(float)
    init = jax.tree_util.tree_map(lambda x: jnp.asarray(x, dtype), init)
    _check_finite_tree(init, "init")
    if per_chain_init:
        for leaf in jax.tree_util.tree_leaves(init):
            if leaf.ndim == 0 or leaf.shape[0] != num_chains:
                raise ValueError(
                    f"init has per_chain_init=True, so every leaf needs a leading axis of length "
                    f"num_chains={num_chains}; got a leaf of shape {leaf.shape}. Pass one start per chain "
                    "or set per_chain_init=False."
                )
        return init
    keys = jax.random.split(key, len(jax.tree_util.tree_leaves(init)))
    leaves, treedef = jax.tree_util.tree_flatten(init)
    jittered = [x + JITTER * jax.random.normal(k, (num_chains,) + x.shape, dtype) for k, x in zip(keys, leaves)]
    jittered = jax.tree_util.tree_unflatten(treedef, jittered)
    ok = np.isfinite(np.asarray(jax.vmap(lambda p: K._safe(logdensity(p)))(jittered)))
    shared = jax.tree_util.tree_map(lambda x: jnp.broadcast_to(x, (num_chains,) + x.shape), init)
    # A jittered start outside the support falls back to the shared start.
    return jax.tree_util.tree_map(
        lambda j, s: jnp.where(ok.reshape((-1,) + (1,) * (j.ndim - 1)), j, s), jittered, shared
    )


def _check_initial_density(states, positions, logdensity):
    ld = np.asarray(states.logdensity)
    bad = np.flatnonzero(~np.isfinite(ld))
    if bad.size:
        raw = np.asarray(logdensity(jax.tree_util.tree_map(lambda x: x[bad[0]], positions)))
        raise ValueError(
            f"The log-density is {raw} at the initial point of chain {int(bad[0])}; init must lie where the "
            "target density is positive and finite (log-density not NaN or -inf). Pass a starting point "
            "inside the support."
        )


def _phase(kernel, logdensity, keys, states, astates, n, target, collect_from, adapt, bar, offset):
    """Run one phase (warm-up or sampling) chunk by chunk; returns states and host outputs."""
    acc, pos, ld = [], [], []
    done = 0
    while done < n:
        steps = min(CHUNK, n - done)
        states, astates, a, p, lp = _run_chunk(
            keys, states, astates, offset + done, steps, target, collect_from,
            kernel=kernel, logdensity_fn=logdensity, adapt=adapt,
        )
        acc.append(np.asarray(a[:, :steps]))
        if not adapt:
            pos.append(np.asarray(p[:, :steps]))
            ld.append(np.asarray(lp[:, :steps]))
        done += steps
        bar.update(offset + done)
    return states, astates, acc, pos, ld


def sample(
    logdensity,
    init,
    *,
    kernel: str = DEFAULT_KERNEL,
    num_warmup: int = 1000,
    num_samples: int = 1000,
    num_chains: int = 4,
    key=None,
    progress="auto",
    target_accept: float | None = None,
    per_chain_init: bool = False,
) -> MCMCResult:
    r"""Draw MCMC samples from an unnormalised log-density.

    Parameters
    ----------
    logdensity : callable
        ``logdensity(position) -> scalar``, :math:`\log \pi` up to a constant,
        for one position pytree; written in JAX (jittable; differentiable for
        ``"mala"`` and ``"hmc"``). ``-inf`` outside the support is fine.
        Pass the same function object across calls to reuse its compilation.
    init : pytree of arrays
        Starting position. By default every chain starts there plus an
        independent :math:`N(0, 0.1^2)` jitter per coordinate (a jittered
        start outside the support falls back to ``init``). With
        ``per_chain_init=True`` every leaf has a leading axis of length
        ``num_chains`` holding each chain's start.
    kernel : {"hmc", "rwm", "mala"}
        ``"hmc"`` (default): leapfrog HMC, 10 steps, step size tuned toward
        acceptance 0.8, diagonal mass matrix from the warm-up variance (Neal
        2011). ``"rwm"``: random-walk Metropolis with the adaptive covariance
        of Haario et al. (2001), tuned toward 0.44 (d = 1) or 0.234 (d > 1;
        Roberts, Gelman & Gilks 1997). ``"mala"``: Metropolis-adjusted
        Langevin, tuned toward 0.574 (Roberts & Rosenthal 1998).
    num_warmup, num_samples, num_chains : int
        Adaptation steps (discarded), kept steps per chain, and chains.
    key : None, int or jax.Array
        Randomness (see :func:`lateo._validation.check_random_key`).
    progress : {True, False, "auto"}
        Progress bar (see :class:`lateo.core.FitProgress`).
    target_accept : float, optional
        Override the kernel's target acceptance rate, in (0, 1).
    per_chain_init : bool
        Whether ``init`` carries a leading chain axis.

    Returns
    -------
    MCMCResult
    """
    if not isinstance(kernel, str) or kernel not in _SPECS:
        raise ValueError(f"kernel must be one of {sorted(_SPECS)}, got {kernel!r}.")
    num_chains = check_int(num_chains, name="num_chains", low=1)
    num_samples = check_int(num_samples, name="num_samples", low=1)
    num_warmup = check_int(num_warmup, name="num_warmup", low=0)
    check_progress(progress)
    if not callable(logdensity):
        raise TypeError(f"logdensity must be a callable position -> log-density, got {logdensity!r}.")
    key_init, key_chains = jax.random.split(check_random_key(key))
    positions = _initial_positions(key_init, init, num_chains, per_chain_init, logdensity)
    spec = _SPECS[kernel]
    states = jax.vmap(lambda p: spec.init(p, logdensity))(positions)
    _check_initial_density(states, positions, logdensity)
    dim = int(ravel_pytree(jax.tree_util.tree_map(lambda x: x[0], positions))[0].size)
    if target_accept is None:
        target_accept = spec.target(dim)
    elif not 0.0 < float(target_accept) < 1.0:
        raise ValueError(f"target_accept must be in (0, 1), got {target_accept!r}.")
    a0 = K.adaptation_init(spec.initial_scale(dim), dim, jnp.result_type(float))
    astates = jax.tree_util.tree_map(lambda x: jnp.broadcast_to(x, (num_chains,) + x.shape), a0)
    keys = jax.random.split(key_chains, num_chains)
    target = jnp.asarray(target_accept, jnp.result_type(float))
    with FitProgress(num_warmup + num_samples, f"MCMC ({kernel})", progress) as bar:
        states, astates, wacc, _, _ = _phase(
            kernel, logdensity, keys, states, astates, num_warmup, target, num_warmup // 4, True, bar, 0
        )
        states, astates, acc, pos, ld = _phase(
            kernel, logdensity, keys, states, astates, num_samples, target, 0, False, bar, num_warmup
        )
    return MCMCResult.from_draws(
        kernel=kernel,
        template=jax.tree_util.tree_map(lambda x: np.asarray(x[0]), positions),
        flat_samples=np.concatenate(pos, axis=1),
        log_density=np.concatenate(ld, axis=1),
        acceptance=np.concatenate(acc, axis=1),
        warmup_acceptance=np.concatenate(wacc, axis=1) if wacc else np.full((num_chains, 0), np.nan),
        kernel_params=_final_params(kernel, astates),
    )


def _final_params(kernel, astates):
    """The frozen kernel parameters per chain, as numpy arrays."""
    params = jax.vmap(lambda a: _SPECS[kernel].params(K.pool_moments(a, _AXIS)), axis_name=_AXIS)(astates)
    if kernel == "rwm":
        return {"scale": np.asarray(params)}
    if kernel == "mala":
        return {"step_size": np.asarray(params)}
    return {"step_size": np.asarray(params[0]), "inverse_mass_matrix": np.asarray(params[1])}
