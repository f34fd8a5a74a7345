r"""Multi-chain MCMC driver: warm-up with adaptation, then sampling with a frozen kernel.

:func:`sample` runs ``num_chains`` chains (vmapped) of one of the kernels in
:mod:`lateo.inference.mcmc.kernels` on any log-density of a pytree position.

* **Warm-up** (``num_warmup`` steps), on Stan's schedule
  (:func:`~lateo.inference.mcmc.kernels.warmup_windows`): the kernel's scale
  is tuned by Robbins-Monro toward a target acceptance rate (Andrieu & Thoms
  2008) throughout; in doubling slow windows the covariance of the draws,
  pooled over the chains, is estimated and becomes the metric of the next
  window (RWM's proposal covariance as in Haario et al. 2001, MALA's
  preconditioner, HMC/NUTS's inverse mass matrix), after which the step-size
  adaptation restarts. The frozen scale is the Polyak-Ruppert average of the
  iterates since the last metric change.
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

ULA_TARGET = 0.9
"""MALA acceptance that ULA's step size is tuned toward: a small step, since ULA's bias grows as epsilon^2."""

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


# ----------------------------------------------------------------------------- kernel specifications


def _rwm_target(dim):
    # 0.44 is optimal in one dimension, 0.234 as d grows (Roberts, Gelman & Gilks 1997;
    # Roberts & Rosenthal 2001).
    return 0.44 if dim == 1 else 0.234


def _rwm_params(scale, cov, dense):
    return scale * (jnp.linalg.cholesky(cov) if dense else jnp.diag(jnp.sqrt(jnp.diag(cov))))


def _langevin_params(scale, cov, dense):
    tril = jnp.linalg.cholesky(cov) if dense else jnp.diag(jnp.sqrt(jnp.diag(cov)))
    return scale, tril


def _hmc_params(scale, cov, dense):
    return scale, cov if dense else jnp.diag(cov)


def _hmc_step(key, state, fn, params):
    return K.hmc_step(key, state, fn, params[0], params[1], HMC_NUM_STEPS, HMC_JITTER)


def _nuts_step(key, state, fn, params):
    return K.nuts_step(key, state, fn, params[0], params[1])


class _Spec(NamedTuple):
    init: Any  # init(position, logdensity_fn) -> state
    step: Any  # step(key, state, logdensity_fn, params) -> (state, info)
    params: Any  # params(scale, covariance, dense) -> kernel parameters
    initial_scale: Any  # initial_scale(dim) -> float
    target: Any  # target(dim) -> default acceptance rate
    param_names: tuple  # names of the entries of params in MCMCResult.kernel_params
    warmup_step: Any = None  # step used during warm-up, if not ``step``


_SPECS = {
    "rwm": _Spec(K.rwm_init, K.rwm_step, _rwm_params, lambda d: 2.38 / np.sqrt(d), _rwm_target, ("scale",)),
    "mala": _Spec(K.mala_init, lambda k, s, f, p: K.mala_step(k, s, f, *p), _langevin_params,
                  lambda d: 1.65 * d ** (-1 / 3), lambda d: 0.574, ("step_size", "scale_tril")),
    # ULA warms up with the Metropolis-adjusted step, so it cannot diverge while epsilon is being tuned.
    "ula": _Spec(K.ula_init, lambda k, s, f, p: K.ula_step(k, s, f, *p), _langevin_params,
                 lambda d: 1.65 * d ** (-1 / 3), lambda d: ULA_TARGET, ("step_size", "scale_tril"),
                 lambda k, s, f, p: K.mala_step(k, s, f, *p)),
    "hmc": _Spec(K.hmc_init, _hmc_step, _hmc_params, lambda d: d ** (-1 / 4), lambda d: 0.8,
                 ("step_size", "inverse_mass_matrix")),
    "nuts": _Spec(K.nuts_init, _nuts_step, _hmc_params, lambda d: d ** (-1 / 4), lambda d: 0.8,
                  ("step_size", "inverse_mass_matrix")),
}  # fmt: skip

KERNELS = tuple(_SPECS)
_AXIS = "chains"
DEFAULT_KERNEL = "hmc"
DENSE_MAX_DIM = 200
"""Up to this dimension the adapted metric of the gradient kernels is the full warm-up covariance;
above it, its diagonal."""

RWM_DENSE_MAX_DIM = 50
"""The same for RWM, lower: its warm-up draws are so autocorrelated (time ~ d / 0.3) that a full
d x d covariance is estimated from too few effective draws beyond this dimension."""


@dataclass(frozen=True)
class Gibbs:
    r"""A Gibbs sweep over blocks of a dict (or tuple) position: pass as ``kernel=`` to :func:`sample`.

    Each block is one or several top-level keys of the position and is updated
    in turn (systematic scan; seed 000) by either

    * a kernel name (``"rwm"``, ``"mala"``, ``"ula"``, ``"hmc"``, ``"nuts"``):
      one step of that kernel on the block's full conditional
      (Metropolis-within-Gibbs), with its own step size adapted toward its own
      target acceptance during warm-up, and a metric taken from the block of
      the warm-up covariance; or
    * a callable ``sampler(key, position) -> new value of the block`` that
      draws exactly from the full conditional :math:`\pi(x_b \mid x_{-b})`
      (Gibbs), for conjugate blocks.

    Parameters
    ----------
    blocks : mapping
        ``{key or tuple of keys: kernel name or sampler}``, covering every
        top-level key of the position exactly once, in update order.

    Examples
    --------
    >>> kernel = Gibbs({"mu": "rwm", "log_sigma": "mala"})  # doctest: +SKIP
    >>> sample(logdensity, {"mu": 0.0, "log_sigma": 0.0}, kernel=kernel)  # doctest: +SKIP
    """

    blocks: tuple

    def __init__(self, blocks):
        if not hasattr(blocks, "items") or not blocks:
            raise ValueError(f"Gibbs blocks must be a non-empty mapping {{key: kernel or sampler}}, got {blocks!r}.")
        items = []
        for names, how in blocks.items():
            names = names if isinstance(names, tuple) else (names,)
            if not (callable(how) or (isinstance(how, str) and how in _SPECS)):
                raise ValueError(
                    f"Gibbs block {names} must use one of the kernels {sorted(_SPECS)} or a callable "
                    f"sampler(key, position) -> block value, got {how!r}."
                )
            items.append((names, how))
        object.__setattr__(self, "blocks", tuple(items))

    def labels(self):
        return [",".join(map(str, names)) for names, _ in self.blocks]


@dataclass(frozen=True)
class _Plan:
    """Everything static about one run (hashable, so it keys the jit cache)."""

    kernel: Any  # kernel name, or a Gibbs
    dense: bool
    blocks: tuple = ()  # Gibbs: ((flat indices, GibbsBlock), ...)

    @property
    def spec(self):
        return None if self.blocks else _SPECS[self.kernel]

    def init(self, position, fn):
        return K.gibbs_init(position, fn) if self.blocks else self.spec.init(position, fn)

    def step(self, key, state, fn, params, adapt):
        if self.blocks:
            return K.gibbs_step(key, state, fn, self.blocks, params)
        step = self.spec.warmup_step if adapt and self.spec.warmup_step is not None else self.spec.step
        state, info = step(key, state, fn, params)
        return state, info._replace(acceptance_probability=info.acceptance_probability[None])

    def params(self, astate, frozen=False):
        """Kernel parameters from the adaptation state: the averaged scale once frozen."""
        cov = astate.metric
        scale = jnp.exp(astate.log_scale_avg if frozen else astate.log_scale)
        if not self.blocks:
            return self.spec.params(scale[0], cov, self.dense)
        out = []
        for b, (index, block) in enumerate(self.blocks):
            sub = cov[np.ix_(np.asarray(index), np.asarray(index))]
            out.append(None if block.sampler is not None else _SPECS[block.kernel].params(scale[b], sub, self.dense))
        return tuple(out)

    def scales_and_targets(self, dim):
        if not self.blocks:
            return [self.spec.initial_scale(dim)], [self.spec.target(dim)]
        scales, targets = [], []
        for index, block in self.blocks:
            if block.sampler is not None:
                scales.append(1.0)
                targets.append(1.0)  # exact draws are always accepted: the scale never moves
            else:
                spec = _SPECS[block.kernel]
                scales.append(spec.initial_scale(len(index)))
                targets.append(spec.target(len(index)))
        return scales, targets


def _make_plan(kernel, template, dense_mass) -> _Plan:
    """Resolve ``kernel`` against the position ``template`` (one chain's position)."""
    dim = int(ravel_pytree(template)[0].size)
    limit = RWM_DENSE_MAX_DIM if kernel == "rwm" else DENSE_MAX_DIM
    dense = dim <= limit if dense_mass is None else bool(dense_mass)
    if isinstance(kernel, str) and kernel in _SPECS:
        return _Plan(kernel, dense)
    if not isinstance(kernel, Gibbs):
        raise ValueError(f"kernel must be one of {sorted(_SPECS)} or a lateo.mcmc.Gibbs, got {kernel!r}.")
    return _Plan(kernel, dense, _gibbs_blocks(kernel, template))


def _check_gibbs_keys(gibbs: Gibbs, position) -> list:
    """The top-level keys of ``position``, checked against the Gibbs blocks."""
    if not isinstance(position, (dict, tuple, list)):
        raise ValueError(
            f"A Gibbs kernel needs a dict (or tuple) position whose top-level keys name the blocks, got {position!r}."
        )
    keys = list(position) if isinstance(position, dict) else list(range(len(position)))
    seen = [name for names, _ in gibbs.blocks for name in names]
    missing, unknown = set(keys) - set(seen), [n for n in seen if n not in keys]
    if missing or unknown or len(seen) != len(set(seen)):
        raise ValueError(
            f"Gibbs blocks must cover every top-level key of the position exactly once: position keys {keys}, "
            f"blocks {[list(n) for n, _ in gibbs.blocks]} (missing {sorted(map(str, missing))}, unknown {unknown})."
        )
    return keys


def _gibbs_blocks(gibbs: Gibbs, template):
    """Flat coordinate indices of each Gibbs block, from the top-level keys of the position."""
    keys = _check_gibbs_keys(gibbs, template)
    items = template.items() if isinstance(template, dict) else enumerate(template)
    owner = {k: i for i, k in enumerate(keys)}
    marks = {k: jax.tree_util.tree_map(lambda leaf, i=owner[k]: np.full(np.shape(leaf), i, float), v) for k, v in items}
    if not isinstance(template, dict):
        marks = type(template)(marks[k] for k in keys)
    flat_owner = np.asarray(ravel_pytree(marks)[0])
    out = []
    for names, how in gibbs.blocks:
        index = tuple(int(i) for i in np.flatnonzero(np.isin(flat_owner, [owner[n] for n in names])))
        block = K.GibbsBlock(None, None, how) if callable(how) else K.GibbsBlock(how, _SPECS[how].step, None)
        out.append((index, block))
    return tuple(out)


MAX_WINDOWS = 32
"""Length of the (padded) array of warm-up window ends passed to the jitted chunk."""


def _chain(plan, fn, adapt, buffer_len, key, state, astate, start, n_steps, target, schedule):
    """Run one chain for ``n_steps`` steps from global step ``start``.

    ``schedule`` is ``(collect_from, collect_to, window_ends)`` from
    :func:`lateo.inference.mcmc.kernels.warmup_windows` (ends padded with -1).
    """
    collect_from, collect_to, window_ends = schedule
    flat0, _ = ravel_pytree(state.position)
    acc_buf = jnp.zeros((buffer_len, target.shape[0]), flat0.dtype)
    pos_buf = jnp.zeros((0 if adapt else buffer_len, flat0.size), flat0.dtype)
    ld_buf = jnp.zeros(0 if adapt else buffer_len, flat0.dtype)
    frozen = None if adapt else plan.params(astate, frozen=True)

    def body(i, carry):
        state, astate, acc_buf, pos_buf, ld_buf = carry
        t = start + i
        params = plan.params(astate) if adapt else frozen
        state, info = plan.step(jax.random.fold_in(key, t), state, fn, params, adapt)
        acc_buf = acc_buf.at[i].set(info.acceptance_probability)
        if adapt:
            flat, _ = ravel_pytree(state.position)
            collect = (t >= collect_from) & (t < collect_to)
            astate = K.adaptation_update(astate, flat, info.acceptance_probability, target, collect)
            closed = K.end_window(K.pool_moments(astate, _AXIS))
            astate = K.select_tree(jnp.any(window_ends == t + 1), closed, astate)
        else:
            pos_buf = pos_buf.at[i].set(ravel_pytree(state.position)[0])
            ld_buf = ld_buf.at[i].set(state.logdensity)
        return state, astate, acc_buf, pos_buf, ld_buf

    return jax.lax.fori_loop(0, n_steps, body, (state, astate, acc_buf, pos_buf, ld_buf))


@partial(jax.jit, static_argnames=("plan", "logdensity_fn", "adapt"))
def _run_chunk(keys, state, astate, start, n_steps, target, schedule, *, plan, logdensity_fn, adapt):
    """One jitted chunk for all chains (vmapped)."""
    run = partial(_chain, plan, logdensity_fn, adapt, CHUNK)
    return jax.vmap(run, in_axes=(0, 0, 0, None, None, None, None), axis_name=_AXIS)(
        keys, state, astate, start, n_steps, target, schedule
    )


def _schedule(num_warmup):
    collect_from, collect_to, ends = K.warmup_windows(num_warmup)
    padded = np.full(MAX_WINDOWS, -1, np.int32)
    padded[: len(ends)] = ends[:MAX_WINDOWS]
    return jnp.asarray(collect_from, jnp.int32), jnp.asarray(collect_to, jnp.int32), jnp.asarray(padded)


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


def _phase(plan, logdensity, keys, states, astates, n, target, schedule, adapt, bar, offset):
    """Run one phase (warm-up or sampling) chunk by chunk; returns states and host outputs."""
    acc, pos, ld = [], [], []
    done = 0
    while done < n:
        steps = min(CHUNK, n - done)
        states, astates, a, p, lp = _run_chunk(
            keys, states, astates, offset + done, steps, target, schedule,
            plan=plan, logdensity_fn=logdensity, adapt=adapt,
        )  # fmt: skip
        acc.append(np.asarray(a[:, :steps]))
        if not adapt:
            pos.append(np.asarray(p[:, :steps]))
            ld.append(np.asarray(lp[:, :steps]))
        done += steps
        bar.update(offset + done)
    return states, astates, acc, pos, ld


def _targets(plan, dim, target_accept):
    """Per-block target acceptance rates (one entry unless Gibbs)."""
    scales, targets = plan.scales_and_targets(dim)
    if target_accept is not None:
        if not 0.0 < float(target_accept) < 1.0:
            raise ValueError(f"target_accept must be in (0, 1), got {target_accept!r}.")
        targets = [t if t == 1.0 and plan.blocks else float(target_accept) for t in targets]
    return scales, jnp.asarray(targets, jnp.result_type(float))


def sample(
    logdensity,
    init,
    *,
    kernel=DEFAULT_KERNEL,
    num_warmup: int = 1000,
    num_samples: int = 1000,
    num_chains: int = 4,
    key=None,
    progress="auto",
    target_accept: float | None = None,
    per_chain_init: bool = False,
    dense_mass: bool | None = None,
    warn: bool = True,
) -> MCMCResult:
    r"""Draw MCMC samples from an unnormalised log-density.

    Parameters
    ----------
    logdensity : callable
        ``logdensity(position) -> scalar``, :math:`\log \pi` up to a constant,
        for one position pytree; written in JAX (jittable; differentiable for
        the gradient kernels). ``-inf`` (or NaN) outside the support is fine:
        proposals there are rejected. Pass the same function object across
        calls to reuse its compilation.
    init : pytree of arrays
        Starting position. By default every chain starts there plus an
        independent :math:`N(0, 0.1^2)` jitter per coordinate (a jittered
        start outside the support falls back to ``init``). With
        ``per_chain_init=True`` every leaf has a leading axis of length
        ``num_chains`` holding each chain's start.
    kernel : {"hmc", "nuts", "rwm", "mala", "ula"} or Gibbs
        ``"hmc"`` (default): leapfrog HMC, 10 steps with a jittered step size
        tuned toward acceptance 0.8, the warm-up covariance as inverse mass
        matrix (Neal 2011). It is the best general-purpose kernel we measured
        (``docs/BENCHMARKS.md``): on correlated posteriors it beats adaptive
        RWM and MALA in ESS per second, and it needs no optional dependency.
        ``"nuts"``: the No-U-Turn sampler (Hoffman & Gelman 2014) through
        BlackJAX (optional dependency), same adaptation; best when the
        posterior's scales vary along the way. ``"rwm"``: random-walk
        Metropolis with the adaptive covariance of Haario et al. (2001), tuned
        toward 0.44 (d = 1) or 0.234 (d > 1; Roberts, Gelman & Gilks 1997).
        ``"mala"``: preconditioned Metropolis-adjusted Langevin, tuned toward
        0.574 (Roberts & Rosenthal 1998). ``"ula"``: the unadjusted Langevin
        algorithm (biased by :math:`O(\epsilon^2)`; see
        :func:`lateo.mcmc.ula_step`). A :class:`Gibbs` updates blocks of a dict
        position in turn, each with its own kernel or exact sampler.
    num_warmup, num_samples, num_chains : int
        Adaptation steps (discarded), kept steps per chain, and chains.
    key : None, int or jax.Array
        Randomness (see :func:`lateo._validation.check_random_key`).
    progress : {True, False, "auto"}
        Progress bar (see :class:`lateo.core.FitProgress`).
    target_accept : float, optional
        Override the kernel's target acceptance rate, in (0, 1) (every Gibbs
        block's, with a Gibbs kernel).
    per_chain_init : bool
        Whether ``init`` carries a leading chain axis.
    dense_mass : bool, optional
        Whether the adapted metric (RWM's proposal covariance, MALA/ULA's
        preconditioner, HMC/NUTS's inverse mass matrix) is the full warm-up
        covariance (True; Haario et al. 2001) or its diagonal (False). By
        default dense up to dimension 200, and up to 50 for RWM.
    warn : bool
        Emit a :class:`lateo.exceptions.ConvergenceWarning` when R-hat > 1.01
        or bulk/tail ESS < 400 (Vehtari et al. 2021).

    Returns
    -------
    MCMCResult
    """
    num_chains = check_int(num_chains, name="num_chains", low=1)
    num_samples = check_int(num_samples, name="num_samples", low=1)
    num_warmup = check_int(num_warmup, name="num_warmup", low=0)
    check_progress(progress)
    if not callable(logdensity):
        raise TypeError(f"logdensity must be a callable position -> log-density, got {logdensity!r}.")
    if isinstance(kernel, Gibbs):
        _check_gibbs_keys(kernel, init)
    key_init, key_chains = jax.random.split(check_random_key(key))
    positions = _initial_positions(key_init, init, num_chains, per_chain_init, logdensity)
    template = jax.tree_util.tree_map(lambda x: np.asarray(x[0]), positions)
    plan = _make_plan(kernel, template, dense_mass)
    dim = int(ravel_pytree(template)[0].size)
    scales, target = _targets(plan, dim, target_accept)
    states = jax.vmap(lambda p: plan.init(p, logdensity))(positions)
    _check_initial_density(states, positions, logdensity)
    a0 = K.adaptation_init(jnp.asarray(scales), dim, jnp.result_type(float))
    astates = jax.tree_util.tree_map(lambda x: jnp.broadcast_to(x, (num_chains,) + x.shape), a0)
    keys = jax.random.split(key_chains, num_chains)
    name = kernel if isinstance(kernel, str) else "gibbs"
    with FitProgress(num_warmup + num_samples, f"MCMC ({name})", progress) as bar:
        states, astates, wacc, _, _ = _phase(
            plan, logdensity, keys, states, astates, num_warmup, target, _schedule(num_warmup), True, bar, 0
        )
        states, astates, acc, pos, ld = _phase(
            plan, logdensity, keys, states, astates, num_samples, target, _schedule(0), False, bar, num_warmup
        )
    squeeze = (lambda a: a[..., 0]) if not plan.blocks else (lambda a: a)
    result = MCMCResult.from_draws(
        kernel=name,
        template=template,
        flat_samples=np.concatenate(pos, axis=1),
        log_density=np.concatenate(ld, axis=1),
        acceptance=squeeze(np.concatenate(acc, axis=1)),
        warmup_acceptance=squeeze(np.concatenate(wacc, axis=1)) if wacc else np.full((num_chains, 0), np.nan),
        kernel_params=_final_params(plan, astates),
    )
    if warn:
        result.check_convergence()
    return result


def _named_params(kernel: str, params) -> dict:
    """A kernel's parameters as ``{name: numpy array}`` (RWM has a single one, not a tuple)."""
    params = (params,) if kernel == "rwm" else params
    return {n: np.asarray(v) for n, v in zip(_SPECS[kernel].param_names, params)}


def _final_params(plan, astates):
    """The frozen kernel parameters per chain, as numpy arrays (per block for Gibbs)."""
    params = jax.vmap(partial(plan.params, frozen=True))(astates)
    if not plan.blocks:
        return _named_params(plan.kernel, params)
    return {
        label: _named_params(block.kernel, p)
        for label, (_, block), p in zip(plan.kernel.labels(), plan.blocks, params)
        if block.sampler is None
    }
