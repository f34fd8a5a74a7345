r"""MCMC-SAEM on the core statistics loop (seed 000; Delyon, Lavielle & Moulines 1999; Kuhn & Lavielle 2004).

Each iteration :math:`k`:

1. **Simulation.** Starting from the previous draw, a few Metropolis-within-
   Gibbs sweeps of :math:`p(z \mid y; \theta_k)`: every subject's block
   :math:`z_i = (\tau_i, \xi_i)` by a random-walk step (the subjects are
   independent given the population latents, so this is one vectorised step),
   then the population latents jointly, then the model's exact symmetry
   moves. Proposal scales are adapted per subject by Robbins-Monro toward a
   target acceptance (0.3, inside the seed's 20-60 %), and the population
   proposal's toward 0.234, during burn-in only; they are frozen afterwards,
   so the kernel is fixed while the statistics average. The population
   latents' prior scales shrink during burn-in (:meth:`SAEM.population_scale`).
2. **Stochastic approximation.** :math:`S_{k+1} = S_k + \gamma_k (S(y, z^{(k)}) - S_k)`
   with :math:`\gamma_k = 1` for the burn-in iterations, then
   :math:`(k - K_1)^{-\alpha}` (:class:`lateo.core.BurnInThenDecay`).
3. **Maximisation.** :math:`\theta_{k+1} = \hat\theta(S_{k+1})`, closed form.

With several chains the statistics are averaged over the chains (the
variance of :math:`S(y, z)` drops by the number of chains); each chain also
keeps its own stochastic-approximation statistics, whose M-step gives
per-chain parameter traces for R-hat across chains, and the same average of
its individual draws (after burn-in, an estimate of each subject's posterior
mean).

Optional *simulated annealing* (Lavielle 2014, sec. 9.2): for the first
``annealing`` iterations the individual prior standard deviations seen by the
simulation step are inflated by a temperature decreasing linearly from
``annealing_temperature`` to 1, which lets the chains explore before the
variances shrink.

The whole iteration is jitted and run in chunks by :func:`lateo.core.run`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from ..core import rng
from ..core.fusion import materialize
from ..core.schedules import BurnInThenDecay, burn_in_then_decay
from ..core.stats import stats_interpolate
from ..inference.mcmc.kernels import robbins_monro_update, select_tree


def _exp_single(x):
    """``exp(x)`` in single precision, cast back: for the proposal scales and the acceptance
    probabilities, which only steer the adaptation (any positive scale gives a valid proposal),
    at a quarter of the cost of a double-precision exponential on CPU."""
    return jnp.exp(x.astype(jnp.float32)).astype(x.dtype)


class ChainState(NamedTuple):
    """One chain's latent draw, adaptive proposal scales and its own SA statistics."""

    population: Any
    individual: jax.Array  # (N, q)
    individual_log_scale: jax.Array  # (N,)
    population_log_scale: jax.Array  # () log of the population proposal's factor
    individual_acceptance: jax.Array  # (N,) running mean
    population_acceptance: jax.Array  # () running mean
    stats: Any
    individual_mean: jax.Array  # (N, q) stochastic-approximation average of the individual draws
    terms: jax.Array  # the family's per-subject data statistics at (population, individual)


class SAEMHyper(NamedTuple):
    """The loop's hyper-parameters: the family's, and the burn-in length (an array: no recompilation)."""

    family: Any
    burn_in: jax.Array


class SAEMLatent(NamedTuple):
    """The latent state the loop carries: all chains (leading axis), the iteration and the hyper-parameters."""

    chains: ChainState
    iteration: jax.Array
    hyper: Any


@dataclass(frozen=True)
class SAEM:
    r"""MCMC-SAEM as a model of :mod:`lateo.core.loop` (``carries_latent``).

    Parameters
    ----------
    family : hashable
        The mixed-effects model: ``subject_terms(data, population, individual)``,
        the per-subject data statistics (leading axis N) through which alone the
        likelihood depends on the data, ``terms_loglik(theta, terms) -> (N,)``,
        ``individual_logprior(theta, individual) -> (N,)``,
        ``population_logprior(theta, hyper, population)``,
        ``sufficient_stats(data, population, individual, terms)``,
        ``m_step(stats, hyper)``, ``complete_loglik(theta, hyper, stats,
        population, individual)`` (from the statistics of the draw), ``individual_std(theta) -> (q,)``,
        ``anneal(theta, temperature)`` and ``theta_vector(theta)``; optionally
        ``symmetry_moves(key, data, theta, hyper, population, individual,
        terms) -> (population, individual, terms)``, extra posterior-invariant
        moves run after each sweep. The chains carry the subjects' ``terms``, so
        each proposal costs one evaluation of the model on the data and the
        statistics of the draw none.
    alpha
        The decay of the step size after burn-in, :math:`\gamma_k = (k - K_1)^{-\alpha}`
        (the burn-in :math:`K_1` is ``hyper.burn_in``, a run-time array; see :class:`SAEMHyper`).
    n_chains, n_mh_steps
        Chains, and Metropolis-within-Gibbs sweeps per iteration.
    target_accept
        Target acceptance of the adaptive random-walk proposals.
    annealing, annealing_temperature
        Simulated-annealing iterations and initial temperature (0: none).
    population_shrink
        Final factor on the population latents' prior scales (see :meth:`population_scale`).
    """

    family: Any
    alpha: float = 0.8
    n_chains: int = 1
    n_mh_steps: int = 2
    target_accept: float = 0.3
    annealing: int = 0
    annealing_temperature: float = 4.0
    population_shrink: float = 0.1

    carries_latent = True

    def step_size(self, k, hyper: SAEMHyper):
        r""":math:`\gamma_k = 1` for :math:`k \le K_1`, then :math:`(k - K_1)^{-\alpha}` (as :class:`lateo.core.BurnInThenDecay`)."""
        return burn_in_then_decay(k, hyper.burn_in, self.alpha)

    def make_hyper(self, family_hyper, burn_in, dtype=jnp.float64) -> SAEMHyper:
        BurnInThenDecay(int(burn_in), self.alpha)  # validates alpha and burn_in
        return SAEMHyper(family_hyper, jnp.asarray(burn_in, dtype))

    # ------------------------------------------------------------------ latent state

    def init_latent(self, key, theta, data, hyper, population, individual) -> SAEMLatent:
        """Chains started at ``population`` and ``individual`` plus a small jitter per chain."""
        n_pop = ravel_pytree(population)[0].size
        n_subj = individual.shape[0]
        terms0 = self.family.subject_terms(data, population, individual)
        stats0 = self.family.sufficient_stats(data, population, individual, terms0)

        def one(k):
            k1, k2 = jax.random.split(k)
            ind = self.jitter_individual(k1, theta, individual)
            pop = self.jitter_population(k2, hyper.family, population)
            dtype = individual.dtype
            log_scale = jnp.log(jnp.asarray(2.38 / jnp.sqrt(n_pop), dtype))
            terms = self.family.subject_terms(data, pop, ind)
            return ChainState(pop, ind, jnp.zeros(n_subj, dtype), log_scale, jnp.zeros(n_subj, dtype),
                              jnp.zeros((), dtype), stats0, ind, terms)  # fmt: skip

        chains = jax.vmap(one)(jax.random.split(key, self.n_chains))
        return SAEMLatent(chains, jnp.asarray(0, jnp.int32), hyper)

    def jitter_individual(self, key, theta, individual):
        r"""A chain's start: :math:`z_i + 0.05\,\sigma \odot \varepsilon_i` (``individual_std`` :math:`\sigma`)."""
        noise = jax.random.normal(key, individual.shape, individual.dtype)
        return individual + 0.05 * self.family.individual_std(theta) * noise

    @staticmethod
    def jitter_population(key, family_hyper, population):
        r"""A chain's start: :math:`w + 0.05\,s \odot \varepsilon` (``population_std`` :math:`s`)."""
        flat, unravel = ravel_pytree(population)
        base = ravel_pytree(family_hyper.population_std)[0]
        noise = jax.random.normal(key, flat.shape, flat.dtype)
        return unravel(flat + 0.05 * jnp.broadcast_to(base, flat.shape) * noise)

    # ------------------------------------------------------------------ simulation step

    def _individual_block(self, key, theta_e, data, chain: ChainState):
        """One random-walk Metropolis step for every subject at once (independent given the population).

        Vectorised over subjects rather than a vmapped per-subject kernel: one
        batch of normals and uniforms for all subjects and one batched
        evaluation of the model at the proposals. Returns the new draws, the
        acceptance probabilities and the subjects' terms at the new draws.
        """
        family = self.family
        base = family.individual_std(theta_e)
        individual = chain.individual
        key_prop, key_acc = rng.split(key)
        step = _exp_single(chain.individual_log_scale)[:, None] * base
        proposal = individual + step * rng.normal(key_prop, individual.shape, individual.dtype)
        terms_new = family.subject_terms(data, chain.population, proposal)
        log_ratio = family.terms_loglik(theta_e, terms_new) + family.individual_logprior(theta_e, proposal)
        log_ratio = log_ratio - family.terms_loglik(theta_e, chain.terms) - family.individual_logprior(theta_e, individual)
        log_ratio = materialize(jnp.nan_to_num(log_ratio, nan=-jnp.inf))
        accept = rng.log_uniform(key_acc, log_ratio.shape, log_ratio.dtype) < log_ratio
        probability = _exp_single(jnp.minimum(log_ratio, 0.0))
        terms = jnp.where(accept.reshape((-1,) + (1,) * (terms_new.ndim - 1)), terms_new, chain.terms)
        return jnp.where(accept[:, None], proposal, individual), probability, terms

    def _population_block(self, key, theta, data, hyper, chain: ChainState):
        """One joint random-walk step on all population latents.

        The proposal is :math:`\\sigma\\,\\mathrm{diag}(s)`, :math:`s` the current prior scales of
        the population latents (see :meth:`population_scale`) and :math:`\\sigma` tuned by
        Robbins-Monro toward 0.234 during burn-in: once the prior scales are small the
        conditional posterior of the population latents is close to that prior, shifted
        along the likelihood gradient. Returns the population, the acceptance probability
        and the subjects' terms. Composed of :meth:`population_proposal`,
        :meth:`population_partial` (the only piece that reads the data: a sum over subjects,
        so data partitions add) and :meth:`population_accept`.
        """
        proposal, key_acc = self.population_proposal(key, hyper, chain.population, chain.population_log_scale)
        partial, terms_new = self.population_partial(theta, data, proposal, chain.individual, chain.terms)
        accept, probability = self.population_accept(key_acc, theta, hyper, chain.population, proposal, partial)
        population = select_tree(accept, proposal, chain.population)
        return population, probability, jnp.where(accept, terms_new, chain.terms)

    def population_proposal(self, key, hyper, population, log_scale):
        r"""The random-walk proposal :math:`w' = w + e^{\ell} s \odot \varepsilon`, :math:`\varepsilon \sim N(0, I)`,
        and the key of the acceptance test."""
        flat, unravel = ravel_pytree(population)
        base = jnp.broadcast_to(ravel_pytree(hyper.family.population_std)[0], flat.shape)
        scale = jnp.exp(log_scale) * base
        key_prop, key_acc = rng.split(key)
        return unravel(flat + scale * rng.normal(key_prop, flat.shape, flat.dtype)), key_acc

    def population_partial(self, theta, data, proposal, individual, terms):
        r"""The data's part of the log acceptance ratio, :math:`\sum_i \ell_i(w') - \ell_i(w)` over the
        subjects of ``data``, and their terms at the proposal ``w'``."""
        family = self.family
        terms_new = family.subject_terms(data, proposal, individual)
        return jnp.sum(family.terms_loglik(theta, terms_new) - family.terms_loglik(theta, terms)), terms_new

    def population_accept(self, key_acc, theta, hyper, population, proposal, partial):
        r"""Accept ``proposal`` iff :math:`\log u < \text{partial} + \log p(w') - \log p(w)` (NaN rejects);
        returns the decision and the acceptance probability."""
        family = self.family
        log_ratio = partial + family.population_logprior(theta, hyper.family, proposal)
        log_ratio = log_ratio - family.population_logprior(theta, hyper.family, population)
        log_ratio = jnp.nan_to_num(log_ratio, nan=-jnp.inf)
        accept = rng.log_uniform(key_acc, (), log_ratio.dtype) < log_ratio
        return accept, jnp.exp(jnp.minimum(log_ratio, 0.0))

    def population_scale(self, k, hyper: SAEMHyper):
        r"""Factor on the population latents' prior scales at iteration :math:`k`.

        The population latents :math:`w \sim N(\bar w, s^2)` are a computational device
        (Kuhn & Lavielle 2004): the SAEM estimate of :math:`\bar w` maximises the likelihood
        smoothed by that Gaussian, which equals the fixed-effects maximum as :math:`s \to 0`
        (and for any :math:`s` where the log-likelihood is quadratic). But :math:`s` also sets
        the speed: once the chains are stationary, :math:`\bar w` moves by about
        :math:`s^2 \nabla \log L` per iteration, EM-like, so along weakly identified directions
        (the reference time against the logistic positions) scales of 1 % (Leaspy's) left fits
        of 800 iterations stuck 1.5 years away, 14 log-likelihood units below the maximum. The
        scales shrink geometrically from 1 to ``population_shrink`` (default 10 %) over the
        first half of burn-in and stay there.
        """
        span = jnp.maximum(0.5 * hyper.burn_in, 1.0)
        frac = jnp.clip((k - 1.0) / span, 0.0, 1.0)
        return jnp.exp(jnp.log(self.population_shrink) * frac)

    def kernel_parameters(self, theta, hyper: SAEMHyper, k):
        """The parameters the simulation step of iteration ``k`` targets: ``theta`` annealed (its
        individual variances inflated, if ``annealing``) and ``hyper`` with the population prior
        scales times :meth:`population_scale`."""
        temperature = 1.0
        if self.annealing:
            frac = jnp.clip(1.0 - (k - 1) / self.annealing, 0.0, 1.0)
            temperature = 1.0 + (self.annealing_temperature - 1.0) * frac
        theta_e = self.family.anneal(theta, temperature)
        factor = self.population_scale(k, hyper)
        hyper = hyper._replace(family=hyper.family._replace(
            population_std=jax.tree_util.tree_map(lambda x: x * factor, hyper.family.population_std)
        ))  # fmt: skip
        return theta_e, hyper

    def adapt_log_scale(self, log_scale, k, acceptance, target, hyper: SAEMHyper):
        """Robbins-Monro step of a log proposal scale toward ``target`` during burn-in; frozen afterwards."""
        return jnp.where(k <= hyper.burn_in, robbins_monro_update(log_scale, k, acceptance, target), log_scale)

    @staticmethod
    def population_target(population) -> float:
        """Target acceptance of the joint population proposal: 0.44 in one dimension, else 0.234."""
        return 0.44 if ravel_pytree(population)[0].size == 1 else 0.234

    @staticmethod
    def running_mean(old, new, k):
        """Running mean of the acceptance rates over the last ~50 iterations."""
        weight = 1.0 / jnp.minimum(k, 50).astype(new.dtype)
        return old + weight * (new - old)

    def _chain_step(self, key, theta, data, hyper, chain: ChainState, k, gamma):
        family = self.family
        theta_e, hyper = self.kernel_parameters(theta, hyper, k)

        def sweep(i, carry):
            chain, acc_ind, acc_pop = carry
            k_ind, k_pop, k_sym = rng.split(rng.fold_in(key, i), 3)
            individual, a_ind, terms = self._individual_block(k_ind, theta_e, data, chain)
            chain = chain._replace(individual=individual, terms=terms)
            population, a_pop, terms = self._population_block(k_pop, theta_e, data, hyper, chain)
            terms = materialize(terms)  # computed once for the symmetry moves and the statistics (core.fusion)
            chain = chain._replace(population=population, terms=terms)
            if getattr(self.family, "symmetry_moves", None) is not None:
                population, individual, terms = self.family.symmetry_moves(
                    k_sym, data, theta_e, hyper.family, population, individual, terms
                )
                chain = chain._replace(population=population, individual=individual, terms=terms)
            return chain, acc_ind + a_ind / self.n_mh_steps, acc_pop + a_pop / self.n_mh_steps

        zeros = (jnp.zeros_like(chain.individual_acceptance), jnp.zeros_like(chain.population_acceptance))
        chain, acc_ind, acc_pop = jax.lax.fori_loop(0, self.n_mh_steps, sweep, (chain, *zeros))
        ind_scale = self.adapt_log_scale(chain.individual_log_scale, k, acc_ind, self.target_accept, hyper)
        pop_target = self.population_target(chain.population)
        pop_log_scale = self.adapt_log_scale(chain.population_log_scale, k, acc_pop, pop_target, hyper)
        s_draw = family.sufficient_stats(data, chain.population, chain.individual, chain.terms)
        objective = family.complete_loglik(theta, hyper.family, s_draw, chain.population, chain.individual)
        return (
            chain._replace(
                individual_log_scale=ind_scale,
                population_log_scale=pop_log_scale,
                individual_acceptance=self.running_mean(chain.individual_acceptance, acc_ind, k),
                population_acceptance=self.running_mean(chain.population_acceptance, acc_pop, k),
                stats=stats_interpolate(chain.stats, s_draw, gamma),
                individual_mean=chain.individual_mean + gamma * (chain.individual - chain.individual_mean),
            ),
            s_draw,
            objective,
        )

    # ------------------------------------------------------------------ loop protocol

    def expected_stats(self, key, theta, data, hyper, latent: SAEMLatent):
        """One simulation step of every chain; returns the chain-averaged :math:`S(y, z)`."""
        k = latent.iteration + 1
        gamma = self.step_size(k, hyper).astype(latent.chains.individual.dtype)
        keys = rng.split(key, self.n_chains)
        chains, s_draw, objective = jax.vmap(
            lambda kk, ch: self._chain_step(kk, theta, data, hyper, ch, k, gamma)
        )(keys, latent.chains)
        s_hat = jax.tree_util.tree_map(lambda x: jnp.mean(x, axis=0), s_draw)
        n_obs = jnp.maximum(jnp.sum(data.mask), 1.0)
        return s_hat, jnp.mean(objective) / n_obs, SAEMLatent(chains, k, latent.hyper)

    def m_step(self, stats, hyper, previous):
        del previous
        return self.family.m_step(stats, hyper.family)

    def has_converged(self, old, new, change, tol):
        """Relative change of every parameter below ``tol`` (``-inf``: never; the default)."""
        del change
        a, b = self.family.theta_vector(old), self.family.theta_vector(new)
        return jnp.max(jnp.abs(b - a) / (jnp.abs(a) + 1e-12)) < tol

    def trace(self, theta, latent: SAEMLatent):
        """Per-chain parameters (the M-step of each chain's own statistics), flattened ``(C * n_theta,)``."""
        per_chain = jax.vmap(lambda s: self.family.theta_vector(self.family.m_step(s, latent.hyper.family)))(
            latent.chains.stats
        )
        return per_chain.ravel()
