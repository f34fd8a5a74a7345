r"""MCMC transition kernels as pure ``init``/``step`` pairs (DESIGN.md section 3).

Every kernel works on any log-density ``logdensity_fn(position) -> scalar``
of a pytree ``position`` (flattened internally with
:func:`jax.flatten_util.ravel_pytree`), BlackJAX style::

    state = rwm_init(position, logdensity_fn)
    state, info = rwm_step(key, state, logdensity_fn, scale)

``key`` comes first, tuning parameters are plain arguments and ``info``
carries the acceptance probability and the accept flag. A log-density that
is NaN is treated as :math:`-\infty`, so proposals outside the support (or
where the density cannot be evaluated) are always rejected.

All kernels are Metropolis-Hastings kernels (Metropolis et al. 1953;
Hastings 1970): from :math:`x` propose :math:`y \sim q(\cdot \mid x)` and
accept with probability

.. math:: \alpha(x, y) = \min\Big(1, \frac{\pi(y)\, q(x \mid y)}{\pi(x)\, q(y \mid x)}\Big),

which makes :math:`\pi` invariant (detailed balance). With a fixed kernel
the chain is a time-homogeneous Markov chain, so the ergodic theorem gives
:math:`\frac1n \sum_t f(x_t) \to E_\pi f` (seed 002).

Warm-up adaptation (Robbins-Monro on the log step size, Haario et al.
running covariance) lives in separate pure functions at the end of this
module: the driver applies them only during warm-up and then freezes the
kernel. Adapting for ever would break the Markov property (the kernel would
depend on the whole past), and the ergodic theorem would no longer apply
without extra "diminishing adaptation" conditions (Andrieu & Thoms 2008).

References
----------
Metropolis, Rosenbluth, Rosenbluth, Teller & Teller (1953), J. Chem. Phys. 21.
Hastings (1970), Biometrika 57. Roberts, Gelman & Gilks (1997), Ann. Appl.
Probab. 7 (optimal RWM acceptance 0.234). Roberts & Rosenthal (1998), JRSS B
60 (optimal MALA acceptance 0.574). Haario, Saksman & Tamminen (2001),
Bernoulli 7 (adaptive Metropolis). Neal (2011), "MCMC using Hamiltonian
dynamics", Handbook of MCMC. Andrieu & Thoms (2008), Stat. Comput. 18
(Robbins-Monro adaptation).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

PyTree = Any


class RWMState(NamedTuple):
    """State of a random-walk Metropolis chain: position and its log-density."""

    position: PyTree
    logdensity: jax.Array


class GradientState(NamedTuple):
    """State of a gradient-based chain (MALA, HMC): position, log-density and its gradient."""

    position: PyTree
    logdensity: jax.Array
    logdensity_grad: PyTree


MALAState = GradientState
HMCState = GradientState


class MHInfo(NamedTuple):
    """What one Metropolis-Hastings step reports."""

    acceptance_probability: jax.Array
    is_accepted: jax.Array


def _safe(logdensity):
    """Log-density with NaN mapped to -inf (so the point is always rejected)."""
    logdensity = jnp.asarray(logdensity)
    return jnp.where(jnp.isnan(logdensity), -jnp.inf, logdensity)


def _mh_accept(key, log_ratio):
    """Accept with probability ``min(1, exp(log_ratio))``; NaN counts as a rejection."""
    log_ratio = jnp.where(jnp.isnan(log_ratio), -jnp.inf, log_ratio)
    prob = jnp.exp(jnp.minimum(log_ratio, 0.0))
    accepted = jnp.log(jax.random.uniform(key, dtype=prob.dtype)) < log_ratio
    return MHInfo(prob, accepted)


def select_tree(accepted, new, old):
    """``new`` where ``accepted`` (a boolean scalar), else ``old``, leaf by leaf of two pytrees."""
    return jax.tree_util.tree_map(lambda a, b: jnp.where(accepted, a, b), new, old)


# ----------------------------------------------------------------------------- random-walk Metropolis


def rwm_init(position: PyTree, logdensity_fn) -> RWMState:
    """Start a random-walk Metropolis chain at ``position``."""
    return RWMState(position, _safe(logdensity_fn(position)))


def rwm_step(key: jax.Array, state: RWMState, logdensity_fn, scale: jax.Array) -> tuple[RWMState, MHInfo]:
    r"""One random-walk Metropolis step (Metropolis et al. 1953).

    Proposes :math:`y = x + L z`, :math:`z \sim N(0, I_d)`, a symmetric
    proposal, so the acceptance probability is :math:`\min(1, \pi(y)/\pi(x))`.

    Parameters
    ----------
    key : jax.Array
        PRNG key.
    state : RWMState
        Current state.
    logdensity_fn : callable
        Unnormalised log-density of a position pytree.
    scale : jax.Array
        Either a vector of ``d`` per-coordinate proposal standard deviations
        (diagonal proposal covariance) or a ``(d, d)`` lower Cholesky factor
        :math:`L` of the proposal covariance :math:`L L^\top`; ``d`` is the
        size of the flattened position.

    Returns
    -------
    state : RWMState
    info : MHInfo
        ``acceptance_probability`` :math:`\min(1, \pi(y)/\pi(x))` and ``is_accepted``.
    """
    key_prop, key_acc = jax.random.split(key)
    flat, unravel = ravel_pytree(state.position)
    z = jax.random.normal(key_prop, flat.shape, flat.dtype)
    scale = jnp.asarray(scale, flat.dtype)
    step = scale * z if scale.ndim <= 1 else scale @ z
    proposal = unravel(flat + step)
    logdensity = _safe(logdensity_fn(proposal))
    info = _mh_accept(key_acc, logdensity - state.logdensity)
    new = select_tree(info.is_accepted, RWMState(proposal, logdensity), state)
    return new, info


# ----------------------------------------------------------------------------- Langevin: MALA and ULA


def _value_and_grad(logdensity_fn, position):
    logdensity, grad = jax.value_and_grad(logdensity_fn)(position)
    return _safe(logdensity), grad


def mala_init(position: PyTree, logdensity_fn) -> GradientState:
    """Start a MALA (or ULA, HMC) chain at ``position``: evaluates the log-density and its gradient."""
    logdensity, grad = _value_and_grad(logdensity_fn, position)
    return GradientState(position, logdensity, grad)


def _tril(scale_tril, flat):
    """The preconditioner's Cholesky factor as a matrix (identity when ``None``)."""
    if scale_tril is None:
        return jnp.eye(flat.size, dtype=flat.dtype)
    return jnp.asarray(scale_tril, flat.dtype)


def _langevin_mean(x, grad, step_size, tril):
    r""":math:`x + \tfrac{\epsilon^2}{2} L L^\top \nabla \log\pi(x)`."""
    return x + 0.5 * step_size**2 * (tril @ (tril.T @ grad))


def _langevin_log_q(to, frm, grad_frm, step_size, tril):
    r"""Log of the (unnormalised) Langevin proposal density :math:`q(\text{to} \mid \text{frm})`."""
    resid = jax.scipy.linalg.solve_triangular(tril, to - _langevin_mean(frm, grad_frm, step_size, tril), lower=True)
    return -0.5 * jnp.sum(resid**2) / step_size**2


def _langevin_move(key, state, logdensity_fn, step_size, scale_tril):
    """Propose a preconditioned Langevin move; return the proposal and its Metropolis-Hastings log-ratio."""
    flat, unravel = ravel_pytree(state.position)
    grad, _ = ravel_pytree(state.logdensity_grad)
    tril = _tril(scale_tril, flat)
    z = jax.random.normal(key, flat.shape, flat.dtype)
    prop_flat = _langevin_mean(flat, grad, step_size, tril) + step_size * (tril @ z)
    proposal = unravel(prop_flat)
    logdensity, prop_grad = _value_and_grad(logdensity_fn, proposal)
    prop_grad_flat, _ = ravel_pytree(prop_grad)
    log_ratio = (
        logdensity
        - state.logdensity
        + _langevin_log_q(flat, prop_flat, prop_grad_flat, step_size, tril)
        - _langevin_log_q(prop_flat, flat, grad, step_size, tril)
    )
    return GradientState(proposal, logdensity, prop_grad), log_ratio


def mala_step(
    key: jax.Array, state: GradientState, logdensity_fn, step_size, scale_tril=None
) -> tuple[GradientState, MHInfo]:
    r"""One preconditioned Metropolis-adjusted Langevin step (Roberts & Tweedie 1996; seed 002).

    An Euler step of the Langevin diffusion
    :math:`dX = \tfrac12 \Sigma \nabla \log \pi(X) dt + \Sigma^{1/2} dW`
    proposes :math:`y = x + \tfrac{\epsilon^2}{2} \Sigma \nabla \log \pi(x) + \epsilon L z`,
    :math:`\Sigma = L L^\top`. The proposal is not symmetric, so the
    Hastings ratio keeps :math:`\log q(x \mid y) - \log q(y \mid x)` with
    :math:`\log q(y \mid x) = -\lVert L^{-1}(y - x - \tfrac{\epsilon^2}{2}\Sigma\nabla\log\pi(x))\rVert^2 / (2\epsilon^2)`.
    A preconditioner :math:`\Sigma` close to the target covariance makes the
    target look isotropic, which is what the step size needs on correlated
    posteriors (Roberts & Stramer 2002). In high dimension the optimal
    acceptance rate is 0.574 (Roberts & Rosenthal 1998).

    Parameters
    ----------
    key, state, logdensity_fn
        As in :func:`rwm_step`.
    step_size : float or jax.Array
        :math:`\epsilon > 0`.
    scale_tril : jax.Array, optional
        ``(d, d)`` lower Cholesky factor :math:`L` of the preconditioner
        (identity when omitted).
    """
    key_prop, key_acc = jax.random.split(key)
    proposal, log_ratio = _langevin_move(key_prop, state, logdensity_fn, step_size, scale_tril)
    info = _mh_accept(key_acc, log_ratio)
    return select_tree(info.is_accepted, proposal, state), info


ula_init = mala_init


def ula_step(
    key: jax.Array, state: GradientState, logdensity_fn, step_size, scale_tril=None
) -> tuple[GradientState, MHInfo]:
    r"""One unadjusted Langevin step (Roberts & Tweedie 1996; seed 002).

    The same preconditioned Euler step of the Langevin diffusion as
    :func:`mala_step`, always accepted (unless the proposal's log-density is
    NaN or :math:`-\infty`). ULA is not exact: its stationary law is
    :math:`\pi` only up to an :math:`O(\epsilon^2)` discretisation bias
    (Durmus & Moulines 2017), traded for never rejecting.

    ``info.acceptance_probability`` reports the MALA acceptance probability the
    move would have had: a direct measure of the discretisation error, which
    the driver's warm-up uses to pick :math:`\epsilon` (toward 0.574, where
    the bias is small).
    """
    proposal, log_ratio = _langevin_move(key, state, logdensity_fn, step_size, scale_tril)
    log_ratio = jnp.where(jnp.isnan(log_ratio), -jnp.inf, log_ratio)
    prob = jnp.exp(jnp.minimum(log_ratio, 0.0))
    accepted = jnp.isfinite(proposal.logdensity)
    return select_tree(accepted, proposal, state), MHInfo(prob, accepted)


# ----------------------------------------------------------------------------- HMC


hmc_init = mala_init


def _mass_ops(inverse_mass_matrix, flat):
    """Momentum sampler, velocity and kinetic energy for a diagonal ``(d,)`` or dense ``(d, d)`` inverse mass."""
    inverse_mass = jnp.asarray(inverse_mass_matrix, flat.dtype)
    if inverse_mass.ndim == 2:
        tril = jnp.linalg.cholesky(inverse_mass)  # M^-1 = L L^T, so p = L^-T z has covariance M

        def draw(key):
            z = jax.random.normal(key, flat.shape, flat.dtype)
            return jax.scipy.linalg.solve_triangular(tril.T, z, lower=False)

        def velocity(p):
            return inverse_mass @ p

    else:
        inverse_mass = jnp.broadcast_to(inverse_mass, flat.shape)

        def draw(key):
            return jax.random.normal(key, flat.shape, flat.dtype) / jnp.sqrt(inverse_mass)

        def velocity(p):
            return inverse_mass * p

    return draw, velocity, lambda p: 0.5 * jnp.dot(p, velocity(p))


def _leapfrog(flat_vg, x, p, grad, step_size, velocity, num_steps):
    """``num_steps`` leapfrog steps of Hamilton's equations (Neal 2011, eq. 5.18-5.20)."""

    def body(_, carry):
        x, p, _, grad = carry
        p = p + 0.5 * step_size * grad
        x = x + step_size * velocity(p)
        logdensity, grad = flat_vg(x)
        p = p + 0.5 * step_size * grad
        return x, p, logdensity, grad

    init = (x, p, jnp.zeros((), x.dtype), grad)
    return jax.lax.fori_loop(0, num_steps, body, init)


def hmc_step(
    key: jax.Array,
    state: GradientState,
    logdensity_fn,
    step_size,
    inverse_mass_matrix,
    num_integration_steps: int = 10,
    step_size_jitter: float = 0.0,
) -> tuple[GradientState, MHInfo]:
    r"""One Hamiltonian Monte Carlo step with a leapfrog integrator (Neal 2011).

    Draws a momentum :math:`p \sim N(0, M)`, integrates
    :math:`H(x, p) = -\log \pi(x) + \tfrac12 p^\top M^{-1} p` for
    ``num_integration_steps`` leapfrog steps of size :math:`\epsilon`, and
    accepts the end point with probability :math:`\min(1, e^{H_0 - H_1})`.
    The leapfrog map is volume preserving and reversible (with a momentum
    flip), so this is a valid Metropolis-Hastings step. With :math:`M^{-1}`
    equal to the target covariance the dynamics see an isotropic target.

    Parameters
    ----------
    key, state, logdensity_fn
        As in :func:`rwm_step`.
    step_size : float or jax.Array
        Leapfrog step size :math:`\epsilon`.
    inverse_mass_matrix : jax.Array
        :math:`M^{-1}`: its diagonal, shape ``(d,)`` (ones for identity), or a
        dense ``(d, d)`` symmetric positive-definite matrix.
    num_integration_steps : int
        Number of leapfrog steps (static).
    step_size_jitter : float
        If positive, the step size is multiplied by a uniform draw on
        ``[1 - jitter, 1 + jitter]`` each step, which avoids the periodic
        trajectories a fixed path length can produce (Neal 2011, sec. 5.4.2.2).
    """
    key_mom, key_acc, key_jit = jax.random.split(key, 3)
    flat, unravel = ravel_pytree(state.position)
    grad, _ = ravel_pytree(state.logdensity_grad)
    draw, velocity, kinetic = _mass_ops(inverse_mass_matrix, flat)
    eps = step_size * (1.0 + step_size_jitter * jax.random.uniform(key_jit, (), flat.dtype, -1.0, 1.0))
    p0 = draw(key_mom)

    def flat_vg(x):
        logdensity, g = _value_and_grad(logdensity_fn, unravel(x))
        return logdensity, ravel_pytree(g)[0]

    x1, p1, logdensity, grad1 = _leapfrog(flat_vg, flat, p0, grad, eps, velocity, num_integration_steps)
    info = _mh_accept(key_acc, (logdensity - kinetic(p1)) - (state.logdensity - kinetic(p0)))
    proposal = GradientState(unravel(x1), logdensity, unravel(grad1))
    return select_tree(info.is_accepted, proposal, state), info


# ----------------------------------------------------------------------------- NUTS (BlackJAX)


def _blackjax_nuts():
    try:
        from blackjax.mcmc import hmc, nuts
    except ImportError as exc:
        raise ImportError(
            'The "nuts" kernel uses BlackJAX, an optional dependency: pip install "lateo[mcmc]" '
            "(or pip install blackjax)."
        ) from exc
    return hmc, nuts


nuts_init = mala_init


def nuts_step(
    key: jax.Array, state: GradientState, logdensity_fn, step_size, inverse_mass_matrix, max_num_doublings: int = 10
) -> tuple[GradientState, MHInfo]:
    r"""One No-U-Turn step (Hoffman & Gelman 2014) through BlackJAX's multinomial NUTS.

    The trajectory doubles forward or backward in time until it makes a
    U-turn (or reaches :math:`2^{\text{max\_num\_doublings}}` leapfrog
    steps), and the next state is drawn from the whole trajectory with
    probabilities :math:`\propto e^{-H}` (Betancourt 2017). The state is
    lateo's :class:`GradientState`, so NUTS composes with the driver and with
    :func:`gibbs_step` like any other kernel. ``info.acceptance_probability``
    is the mean Metropolis acceptance over the trajectory (the quantity the
    step-size adaptation targets).

    Parameters
    ----------
    inverse_mass_matrix : jax.Array
        Diagonal ``(d,)`` or dense ``(d, d)`` :math:`M^{-1}`.
    max_num_doublings : int
        Maximum tree depth (static).

    Notes
    -----
    Needs the optional dependency BlackJAX (``pip install "lateo[mcmc]"``).
    """
    hmc, nuts = _blackjax_nuts()
    flat, _ = ravel_pytree(state.position)
    kernel = nuts.build_kernel()
    bj_state = hmc.HMCState(state.position, state.logdensity, state.logdensity_grad)
    inverse_mass = jnp.asarray(inverse_mass_matrix, flat.dtype)
    new, info = kernel(key, bj_state, logdensity_fn, step_size, inverse_mass, max_num_doublings=max_num_doublings)
    moved = jnp.any(ravel_pytree(new.position)[0] != flat)
    out = GradientState(new.position, _safe(new.logdensity), new.logdensity_grad)
    return out, MHInfo(jnp.asarray(info.acceptance_rate, flat.dtype), moved)


# ----------------------------------------------------------------------------- Gibbs composition


class GibbsState(NamedTuple):
    """State of a Gibbs / MH-within-Gibbs sweep: the joint position and its log-density."""

    position: PyTree
    logdensity: jax.Array


class GibbsBlock(NamedTuple):
    """How one Gibbs block is updated: a kernel (its name and ``step(key, state, fn, params)``) or an exact sampler."""

    kernel: str | None
    step: Any
    sampler: Any


def gibbs_init(position: PyTree, logdensity_fn) -> GibbsState:
    """Start a Gibbs sweep at ``position``."""
    return GibbsState(position, _safe(logdensity_fn(position)))


def _block_step(key, flat, logdensity, unravel, logdensity_fn, index, block, params):
    """Update the coordinates ``index`` of ``flat`` with ``block``; return (flat, logdensity, acceptance)."""
    index = np.asarray(index)

    def conditional(y):
        return logdensity_fn(unravel(flat.at[index].set(y)))

    if block.sampler is not None:  # exact draw from the full conditional: always accepted
        new = ravel_pytree(block.sampler(key, unravel(flat)))[0].astype(flat.dtype)
        flat = flat.at[index].set(new)
        return flat, _safe(logdensity_fn(unravel(flat))), jnp.ones((), flat.dtype)
    if block.kernel == "rwm":  # the joint log-density is the conditional one up to a constant
        sub = RWMState(flat[index], logdensity)
    else:
        sub = mala_init(flat[index], conditional)
    sub, info = block.step(key, sub, conditional, params)
    return flat.at[index].set(sub.position), sub.logdensity, info.acceptance_probability


def gibbs_step(key: jax.Array, state: GibbsState, logdensity_fn, blocks, params) -> tuple[GibbsState, MHInfo]:
    r"""One systematic-scan Gibbs sweep over blocks of coordinates (seed 000; Geman & Geman 1984).

    Block :math:`b` is updated from its full conditional
    :math:`\pi(x_b \mid x_{-b}) \propto \pi(x)`, either by an exact draw
    (Gibbs) or by one step of any kernel that leaves the conditional invariant
    (Metropolis-within-Gibbs; Tierney 1994). Each update leaves :math:`\pi`
    invariant, so the sweep does too. The joint log-density is a valid
    conditional log-density of each block, which is all the kernels need.

    Parameters
    ----------
    key, state, logdensity_fn
        As in :func:`rwm_step`.
    blocks : sequence of (index, block)
        Static: the flat coordinate indices of each block and its
        :class:`GibbsBlock` (as built by :class:`lateo.mcmc.Gibbs`).
    params : sequence
        Per-block kernel parameters (ignored for exact samplers).

    Returns
    -------
    state : GibbsState
    info : MHInfo
        Per-block acceptance probabilities, shape ``(num_blocks,)``.
    """
    flat, unravel = ravel_pytree(state.position)
    logdensity = state.logdensity
    probs = []
    for b, ((index, block), block_params) in enumerate(zip(blocks, params)):
        flat, logdensity, prob = _block_step(
            jax.random.fold_in(key, b), flat, logdensity, unravel, logdensity_fn, index, block, block_params
        )
        probs.append(prob)
    probs = jnp.stack(probs)
    return GibbsState(unravel(flat), logdensity), MHInfo(probs, probs > 0)


# ----------------------------------------------------------------------------- warm-up adaptation


class AdaptationState(NamedTuple):
    """Warm-up adaptation state of one chain.

    ``log_scale`` is :math:`\\log\\sigma` (RWM) or :math:`\\log\\epsilon`
    (MALA, HMC), one entry per Gibbs block; ``iteration`` counts Robbins-Monro
    updates since the last metric change; ``count``, ``mean`` and ``m2`` are
    Welford's running moments of the draws of the current window (``m2`` is the
    sum of outer products of deviations, shape ``(d, d)``); ``metric`` is the
    covariance estimate in use (the identity until the first window closes);
    ``log_scale_avg`` is the Polyak-Ruppert average of ``log_scale`` since
    the last metric change, the value frozen after warm-up.
    """

    log_scale: jax.Array
    iteration: jax.Array
    count: jax.Array
    mean: jax.Array
    m2: jax.Array
    metric: jax.Array
    log_scale_avg: jax.Array


def adaptation_init(initial_scale, dim: int, dtype=jnp.float64) -> AdaptationState:
    """Fresh adaptation state for a ``dim``-dimensional chain starting at ``initial_scale``."""
    return AdaptationState(
        jnp.log(jnp.asarray(initial_scale, dtype)),
        jnp.zeros((), jnp.int32),
        jnp.zeros((), jnp.int32),
        jnp.zeros(dim, dtype),
        jnp.zeros((dim, dim), dtype),
        jnp.eye(dim, dtype=dtype),
        jnp.log(jnp.asarray(initial_scale, dtype)),
    )


def warmup_windows(num_warmup: int) -> tuple[int, int, list[int]]:
    """Stan's warm-up schedule: ``(collect_from, collect_to, window_ends)``.

    A fast initial buffer (75 steps) tunes only the step size while the chain
    reaches the typical set; then slow windows of 25, 50, 100, ... steps each
    estimate the covariance from their own draws, which becomes the metric
    for the next window; a terminal buffer (50 steps) tunes the step size to
    the final metric (Stan Reference Manual, "HMC algorithm parameters"). The
    last slow window absorbs what is left. Below 150 warm-up steps the
    buffers are 15 % and 10 % and there is one window; below 20, none.
    """
    if num_warmup < 20:
        return num_warmup, num_warmup, []
    if num_warmup < 150:
        init, term = int(0.15 * num_warmup), int(0.1 * num_warmup)
        return init, num_warmup - term, [num_warmup - term]
    init, term, size = 75, 50, 25
    end_slow = num_warmup - term
    start, ends = init, []
    while True:
        end = start + size
        if end + 2 * size > end_slow:
            ends.append(end_slow)
            return init, end_slow, ends
        ends.append(end)
        start, size = end, 2 * size


def robbins_monro_update(log_scale, iteration, acceptance, target, exponent: float = 0.6):
    r"""Robbins-Monro step on the log scale toward a target acceptance rate.

    :math:`\log\sigma_{t+1} = \log\sigma_t + t^{-\kappa}(a_t - a^\star)`, with
    :math:`\kappa = 0.6` and :math:`a_t` the acceptance probability of step
    :math:`t \ge 1` (Andrieu & Thoms 2008, sec. 4-5). The gains sum to
    infinity and their squares converge, so :math:`\sigma_t` settles where the
    expected acceptance equals :math:`a^\star`.
    """
    gain = jnp.asarray(iteration, log_scale.dtype) ** (-exponent)
    return log_scale + gain * (acceptance - target)


def welford_update(count, mean, m2, x):
    """Add one draw ``x`` to running moments (Welford 1962); returns ``(count, mean, m2)``."""
    count = count + 1
    delta = x - mean
    mean = mean + delta / count
    m2 = m2 + jnp.outer(delta, x - mean)
    return count, mean, m2


def adaptation_update(state: AdaptationState, x, acceptance, target, collect) -> AdaptationState:
    """One warm-up update: Robbins-Monro on the log scale and, if ``collect``, Welford on ``x``.

    ``collect`` (a boolean, may be traced) lets the driver skip the first part
    of warm-up when estimating the covariance, so the transient from the
    starting point does not inflate it.
    """
    iteration = state.iteration + 1
    log_scale = robbins_monro_update(state.log_scale, iteration, acceptance, target)
    # Polyak-Ruppert averaging: with gains t^-0.6 the averaged iterate has the optimal
    # variance (Polyak & Juditsky 1992), so the frozen scale is far less noisy than the last one.
    log_scale_avg = state.log_scale_avg + (log_scale - state.log_scale_avg) / iteration
    count, mean, m2 = welford_update(state.count, state.mean, state.m2, x)
    keep = jnp.asarray(collect)
    return AdaptationState(
        log_scale,
        iteration,
        jnp.where(keep, count, state.count),
        jnp.where(keep, mean, state.mean),
        jnp.where(keep, m2, state.m2),
        state.metric,
        log_scale_avg,
    )


def pool_moments(state: AdaptationState, axis_name) -> AdaptationState:
    r"""Replace a chain's running moments by those of all chains (inside ``vmap(..., axis_name=...)``).

    With per-chain counts :math:`n_c`, means :math:`\bar x_c` and sums of
    squares :math:`M_c`, the pooled moments are :math:`n = \sum n_c`,
    :math:`\bar x = \sum n_c \bar x_c / n` and
    :math:`M = \sum_c [M_c + n_c (\bar x_c - \bar x)(\bar x_c - \bar x)^\top]`
    (Chan, Golub & LeVeque 1979). Every chain then adapts its proposal
    covariance from ``num_chains`` times more warm-up draws; ``log_scale``
    stays per chain.
    """
    count = jax.lax.psum(state.count, axis_name)
    weight = state.count.astype(state.mean.dtype)
    mean = jax.lax.psum(weight * state.mean, axis_name) / jnp.maximum(count, 1)
    delta = state.mean - mean
    m2 = jax.lax.psum(state.m2 + weight * jnp.outer(delta, delta), axis_name)
    return state._replace(count=count, mean=mean, m2=m2)


def _min_count(dim: int) -> int:
    """Draws needed before an estimated covariance replaces the identity."""
    return 2 * dim + 10


def adapted_covariance(state: AdaptationState, regularisation: float = 1e-6) -> jax.Array:
    r"""Empirical covariance of the collected draws plus :math:`\varepsilon I`.

    Falls back to the identity until ``2 d + 10`` draws have been collected.
    """
    dim = state.mean.shape[0]
    n = jnp.maximum(state.count - 1, 1).astype(state.m2.dtype)
    cov = state.m2 / n + regularisation * jnp.eye(dim, dtype=state.m2.dtype)
    return jnp.where(state.count >= _min_count(dim), cov, jnp.eye(dim, dtype=state.m2.dtype))


def end_window(state: AdaptationState) -> AdaptationState:
    r"""Close a slow warm-up window: its covariance becomes the metric, and adaptation restarts.

    The new metric is Stan's regularised estimate
    :math:`\frac{n}{n+5}\hat C + 10^{-3}\frac{5}{n+5} I` of the window's
    (pooled) draws, kept only if the window holds ``2 d + 10`` draws. The
    moments are reset and the Robbins-Monro gain restarts, so the step size
    re-tunes quickly to the new metric.
    """
    dim = state.mean.shape[0]
    n = state.count.astype(state.m2.dtype)
    cov = state.m2 / jnp.maximum(n - 1.0, 1.0)
    eye = jnp.eye(dim, dtype=state.m2.dtype)
    regularised = (n / (n + 5.0)) * cov + 1e-3 * (5.0 / (n + 5.0)) * eye
    metric = jnp.where(state.count >= _min_count(dim), regularised, state.metric)
    zero = jnp.zeros_like
    return AdaptationState(state.log_scale, zero(state.iteration), zero(state.count), zero(state.mean),
                           zero(state.m2), metric, state.log_scale)  # fmt: skip


def haario_scale(state: AdaptationState, regularisation: float = 1e-6) -> jax.Array:
    r"""Cholesky factor of the adaptive-Metropolis proposal covariance.

    Haario, Saksman & Tamminen (2001) propose from
    :math:`N(x, s_d(\hat C_t + \varepsilon I))` with
    :math:`s_d = 2.38^2/d` (Gelman, Roberts & Gilks 1996). Here the
    global factor :math:`\sigma^2 = e^{2\log\sigma}` starts at :math:`s_d`
    and is further tuned by :func:`robbins_monro_update` (Andrieu & Thoms
    2008, algorithm 4), so the proposal is :math:`\sigma L`,
    :math:`L L^\top = \hat C_t + \varepsilon I`.
    """
    return jnp.exp(state.log_scale) * jnp.linalg.cholesky(adapted_covariance(state, regularisation))


def adapted_inverse_mass(state: AdaptationState, regularisation: float = 1e-6) -> jax.Array:
    """Diagonal inverse mass matrix for HMC: the warm-up variance of each coordinate."""
    return jnp.diag(adapted_covariance(state, regularisation))
