r"""Distributed MCMC-SAEM on a Dask cluster: the subjects partitioned, their chains where their data live.

Mixed-effects models are sums over subjects given the population latents
:math:`w`: with the subjects split into partitions :math:`P_1, \dots, P_m`,

.. math::

    \log p(y \mid z, w; \theta) = \sum_{j=1}^m \sum_{i \in P_j} \ell_i(z_i, w), \qquad
    S(y, z) = \Big(w, \sum_{j=1}^m S_j(y_{P_j}, z_{P_j})\Big),

so the Markov kernel of :class:`lateo.algorithms.saem.SAEM` (Metropolis-within-Gibbs, with the
model's symmetry moves) runs with each partition's subjects on its worker and only scalars,
parameters and proposals travelling. One iteration :math:`k` of :func:`run_saem`, per sweep
:math:`s = 1, \dots, S` (``n_mh_steps``):

1. *workers* (round trip A): the individual random-walk block of every subject (local: the
   subjects are independent given :math:`w`); then, at the population proposal :math:`w'`
   drawn on the client, the partition's part :math:`\sum_{i \in P_j} \ell_i(w') - \ell_i(w)` of
   the log acceptance ratio, and the four individual log-prior sums the time-shift and
   speed-scale moves can need
   (:meth:`~lateo.models.progression._model.ProgressionFamily.symmetry_prior_sums`).
2. *client*: adds the partitions' parts and the population prior ratio, accepts or rejects
   :math:`w'` (:meth:`~lateo.algorithms.saem.SAEM.population_accept`), then decides the shift
   and scale moves from the prior sums
   (:meth:`~lateo.models.progression._model.ProgressionFamily.shift_scale_moves`) and proposes
   the ridge move.
3. *workers* (round trip B): apply those decisions, and return the ridge move's
   :math:`\sum_i \ell_i' - \ell_i` and individual log prior
   (:meth:`~lateo.models.progression._model.ProgressionFamily.ridge_terms`).
4. *client*: accepts or rejects the ridge move
   (:meth:`~lateo.models.progression._model.ProgressionFamily.ridge_accept`); the workers apply
   the decision at the start of their next task.

Then (round trip C) the workers adapt the individual proposal scales, update the average of the
individual draws and return the partition statistics :math:`S_j`, added in a tree reduction on
the workers; the client runs the population adaptation, the stochastic approximation
:math:`S_{k+1} = S_k + \gamma_k (S(y, z^{(k)}) - S_k)` and the closed-form M-step with the
single-process code (:meth:`~lateo.algorithms.saem.SAEM.kernel_parameters`,
:meth:`~lateo.algorithms.saem.SAEM.adapt_log_scale`, :func:`lateo.core.stats.stats_interpolate`,
:meth:`~lateo.algorithms.saem.SAEM.m_step`, :meth:`~lateo.algorithms.saem.SAEM.trace`). So an
iteration costs :math:`2S + 1` round trips (11 with the default ``n_mh_steps=5``), each carrying
the parameters and proposals out (a few hundred bytes) and a few floats per partition and chain
back (:math:`S_j` once per iteration). The data, and the chains' per-subject state (individual
latents, log proposal scales, acceptance rates, terms, the average of the draws) stay on the
workers as futures: each task takes the previous state's future, so neither travels. Several
chains (``n_chains``) run side by side (vmapped), as in the single-process fit.

The kernel is the single-process one, piece for piece, so the fit targets the same posterior
and the same SAEM limit. Random numbers: the client draws the population proposals, the
symmetry moves' steps and every acceptance uniform of the population-level tests from the loop's
keys as the single-process fit does; partition :math:`j` draws its subjects' proposals and
uniforms from ``fold_in(key, j)`` of the single-process key (the key itself when there is one
partition). A distributed fit is therefore reproducible from ``random_state`` for a given
partitioning, and with one partition it reproduces the single-process fit (to rounding; the
tests check ``params_`` to 1e-10).

Usage
-----
``ProgressionModel(...).fit(ddf)`` with ``ddf`` a Dask DataFrame in long format (ID, TIME, one
column per feature; ID may be the index) runs this on the active ``dask.distributed`` Client
(or ``fit(ddf, client=client)``). Every row of a subject must lie in one partition:
``ddf.set_index("ID")`` or ``ddf.shuffle(on="ID")`` arranges that (a subject split across
partitions raises an error saying so). Each partition is validated and packed into padded
arrays on its worker (:func:`~lateo.models.progression._data.from_dataframe`), padded to the
largest partition's subjects and visits so that one compiled program serves all of them, and
kept there for the fit. The start comes from the subjects computed to the client: all of them
when there are at most ``lateo.distributed.sample-subjects`` (Dask config, default 2,000; then
the start equals the single-process fit's), else that many drawn at random for the population
start, each partition's subjects then starting at their posterior modes given it. The Laplace
refinement (``refine="laplace"``) is skipped for Dask input (``refine_accepted_`` is False);
:meth:`~lateo.models.progression.estimator.ProgressionModel.standard_errors` and the other
methods take a pandas frame as usual.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from ..core.progress import FitProgress
from ..core.stats import stats_interpolate
from ..inference.mcmc.kernels import select_tree
from .distributed import SPLIT_EVERY, _config, _Opaque, get_client, tree_reduce
from .saem import ChainState, SAEMLatent

SAMPLE_SUBJECTS = 2_000


# ------------------------------------------------------------------ partitions (workers)


class SubjectState(NamedTuple):
    """The chains' state of one partition's subjects (leading axis: chains), kept on its worker.

    ``sweep_acceptance`` accumulates the acceptance probabilities of the current iteration's
    sweeps; ``terms_proposal`` are the terms at the pending population proposal,
    ``individual_ridge`` and ``terms_ridge`` the subjects at the pending ridge move.
    """

    individual: Any
    individual_log_scale: Any
    individual_acceptance: Any
    individual_mean: Any
    terms: Any
    sweep_acceptance: Any
    terms_proposal: Any
    individual_ridge: Any
    terms_ridge: Any


def _partition_cohort(part, features, id_col, time_col, bounds):
    """A partition's rows as :class:`~lateo.models.progression._data.LongitudinalData` (None if empty).

    Raises like the single-process fit on a subject without any observation (a feature may be
    unobserved within one partition).
    """
    from ..models.progression._data import from_dataframe

    if len(part) == 0:
        return None
    ld = from_dataframe(part, features=features, id_col=id_col, time_col=time_col, bounds=bounds,
                        on_empty="keep")  # fmt: skip
    empty = ~ld.mask.any(axis=(1, 2))
    if empty.any():
        raise ValueError(f"{int(empty.sum())} subject(s) have no observation at all (every feature is NaN on "
                         f"every visit): {list(ld.ids[empty][:5])}; drop them from df.")
    return ld


def _cohort_meta(ld):
    """``(ids, n_visits)`` of a partition (``None`` if empty)."""
    return None if ld is None else (np.asarray(ld.ids), ld.n_visits_max)


def _padded_data(ld, n_subjects: int, n_visits: int):
    r"""The partition as :class:`~lateo.models.progression._model.Data` padded to ``n_subjects``
    subjects and ``n_visits`` visits (numpy; padding subjects have ``subject_mask`` 0, no
    observations and the first subject's times, so their terms are 0 and they add nothing)."""
    from ..models.progression._model import Data

    n, v = ld.times.shape
    times = np.concatenate([ld.times, np.repeat(ld.times[:, -1:], n_visits - v, axis=1)], axis=1)
    times = np.concatenate([times, np.repeat(times[:1], n_subjects - n, axis=0)], axis=0)
    pad = ((0, n_subjects - n), (0, n_visits - v), (0, 0))
    values = np.pad(ld.values, pad)
    mask = np.pad(ld.mask.astype(np.float64), pad)
    subject_mask = np.concatenate([np.ones(n), np.zeros(n_subjects - n)])
    return Data(times, values, mask, subject_mask)


def _select_subjects(part, ids, id_col):
    """The rows of ``part`` (a pandas frame) whose subject is in ``ids``."""
    column = part[id_col] if id_col in part.columns else part.index.get_level_values(id_col)
    return part[np.asarray(column.isin(ids))]


@dataclass
class Cohort:
    """A cohort partitioned over a cluster: one padded :class:`Data` future per non-empty partition."""

    client: Any
    data: list  # futures of Data, one per partition
    ids: list  # per partition, the subject IDs in the order of the arrays
    parts: list  # the Dask DataFrame's delayed partitions (non-empty ones)
    n_subjects: int  # padded subjects per partition
    n_visits: int  # padded visits per partition
    features: list
    id_col: str = "ID"

    @property
    def n_total(self) -> int:
        return int(sum(len(i) for i in self.ids))


def cohort_partitions(ddf, client, *, features=None, id_col="ID", time_col="TIME", bounds=None) -> Cohort:
    """Validate a long Dask DataFrame and pack each partition into padded arrays on its worker.

    One round trip gathers every partition's subject IDs (checked: a subject must not have rows
    in two partitions) and visit count; a second builds the padded
    :class:`~lateo.models.progression._model.Data`, which stays on the worker.

    Raises
    ------
    TypeError
        If ``ddf`` is not a Dask DataFrame.
    ValueError
        If a subject's rows are in several partitions, every partition is empty, a named
        feature is not a column, or a partition fails the single-process checks.
    """
    import dask

    if not (hasattr(ddf, "to_delayed") and hasattr(ddf, "columns") and hasattr(ddf, "npartitions")):
        raise TypeError(f"a distributed ProgressionModel fit needs a Dask DataFrame in long format (ID, TIME, one "
                        f"column per feature), got {type(ddf).__name__}; e.g. dask.dataframe.from_pandas(df, "
                        "npartitions=8).set_index('ID').")
    columns = [c for c in ddf.columns if c not in (id_col, time_col)]
    if features is None:
        features = columns
    features = [features] if isinstance(features, str) else list(features)
    unknown = [f for f in features if f not in columns]
    if unknown or not features:
        raise ValueError(f"features {unknown or features} are not feature columns of the Dask DataFrame "
                         f"(found {columns}); fix the names.")
    parts = ddf.to_delayed()
    build = dask.delayed(_partition_cohort, pure=True)
    cohorts = client.compute([build(p, features, id_col, time_col, bounds) for p in parts])
    meta = client.gather([client.submit(_cohort_meta, c, pure=False) for c in cohorts])
    keep = [j for j, m in enumerate(meta) if m is not None]
    if not keep:
        raise ValueError("the Dask DataFrame has no rows: every partition is empty.")
    ids = [meta[j][0] for j in keep]
    _check_disjoint(ids, id_col)
    n_subjects = max(len(i) for i in ids)
    n_visits = max(meta[j][1] for j in keep)
    data = [client.submit(_padded_data, cohorts[j], n_subjects, n_visits, pure=False) for j in keep]
    return Cohort(client, data, ids, [parts[j] for j in keep], n_subjects, n_visits, features, id_col)


def _check_disjoint(ids, id_col):
    """Raise unless every subject's rows lie in one partition."""
    import pandas as pd

    all_ids = pd.Index(np.concatenate(ids))
    if not all_ids.is_unique:
        split = list(all_ids[all_ids.duplicated()].unique()[:5])
        raise ValueError(f"subject(s) {split} have rows in several partitions of the Dask DataFrame; every row of a "
                         f"subject must be in one partition (each partition's subjects are sampled on its worker). "
                         f"Group them first: ddf = ddf.set_index({id_col!r}) or ddf.shuffle(on={id_col!r}).")


def gather_subjects(cohort: Cohort, key=None, size=None):
    """Rows of all subjects (``key=None`` or at most ``size`` subjects) or of ``size`` drawn at random.

    Returns a pandas frame (the partitions concatenated in order) and whether it holds every subject.
    """
    import dask
    import pandas as pd

    size = int(_config("sample-subjects", SAMPLE_SUBJECTS) if size is None else size)
    client = cohort.client
    if cohort.n_total <= size:
        frames = client.gather(client.compute(cohort.parts))
        return pd.concat(frames), True
    all_ids = np.concatenate(cohort.ids)
    seed = int(jax.random.randint(jax.random.fold_in(key, 0x5A3), (), 0, 2**31 - 1))
    chosen = all_ids[np.sort(np.random.default_rng(seed).choice(len(all_ids), size=size, replace=False))]
    pick = dask.delayed(_select_subjects)
    frames = client.gather(client.compute([pick(p, chosen, cohort.id_col) for p in cohort.parts]))
    return pd.concat(frames), False


# ------------------------------------------------------------------ worker tasks


def _wrap_keys(key_data, impl):
    return jax.random.wrap_key_data(key_data, impl=impl)


def _chain_init(saem, data, theta, key1, population, individual):
    """One chain's subjects at the start (the individual half of :meth:`SAEM.init_latent`'s jitter)."""
    family = saem.family
    ind = saem.jitter_individual(key1, theta, individual)
    terms = family.subject_terms(data, population, ind)
    zeros = jnp.zeros(individual.shape[0], individual.dtype)
    return SubjectState(ind, zeros, zeros, ind, terms, zeros, terms, ind, terms)


@partial(jax.jit, static_argnums=(0, 6))
def _init_task(saem, data, theta, keys, populations, individual, impl):
    """Start of a partition: its chains, and its statistics and observation count at the start."""
    family = saem.family
    terms0 = family.subject_terms(data, theta.population, individual)
    stats0 = family.sufficient_stats(data, theta.population, individual, terms0)
    keys = _wrap_keys(keys, impl)
    state = jax.vmap(lambda k, p: _chain_init(saem, data, theta, k, p, individual))(keys, populations)
    return state, (stats0, jnp.sum(data.mask))


@partial(jax.jit, static_argnums=(0,))
def _mode_task(saem, data, theta):
    """Posterior modes of a partition's subjects given ``theta`` (the start when not all subjects were sampled)."""
    from ..models.progression import _inference as I

    n, q = data.times.shape[0], saem.family.individual_std(theta).shape[0]
    z, _ = I.posterior_mode(saem.family.kind, data, theta, theta.population, jnp.zeros((n, q), data.times.dtype),
                            n_iter=200)  # fmt: skip
    return jnp.where(jnp.all(jnp.isfinite(z), axis=1, keepdims=True), z, 0.0)


def _sweep_start_chain(saem, data, state, pending, first, key, theta_e, population, proposal, draws):
    """One chain: the pending ridge decision, the individual block, and the population and prior sums."""
    family = saem.family
    individual = jnp.where(pending, state.individual_ridge, state.individual)
    terms = jnp.where(pending, state.terms_ridge, state.terms)
    chain = ChainState(population, individual, state.individual_log_scale, None, None, None, None, None, terms)
    individual, a_ind, terms = saem._individual_block(key, theta_e, data, chain)
    acc = jnp.where(first, jnp.zeros_like(a_ind), state.sweep_acceptance) + a_ind / saem.n_mh_steps
    partial_pop, terms_proposal = saem.population_partial(theta_e, data, proposal, individual, terms)
    sums = family.symmetry_prior_sums(theta_e, individual, draws, data.subject_mask)
    state = state._replace(individual=individual, terms=terms, sweep_acceptance=acc, terms_proposal=terms_proposal)
    return state, (partial_pop, sums)


@partial(jax.jit, static_argnums=(0, 10))
def _sweep_start(saem, data, state, pending, first, keys, theta_e, populations, proposals, draws, impl):
    keys = _wrap_keys(keys, impl)
    fn = partial(_sweep_start_chain, saem, data)
    return jax.vmap(fn, in_axes=(0, 0, None, 0, None, 0, 0, 0))(state, pending, first, keys, theta_e, populations,
                                                                 proposals, draws)  # fmt: skip


def _sweep_ridge_chain(saem, data, state, accept_pop, shifted, scaled, draws, theta_e, ridged):
    """One chain: apply the population and shift/scale decisions, evaluate the ridge move."""
    family = saem.family
    terms = jnp.where(accept_pop, state.terms_proposal, state.terms)
    individual = family.apply_shift_scale(state.individual, draws, shifted, scaled)
    partial_r, prior_new, ind_new, terms_new = family.ridge_terms(data, theta_e, ridged, individual, terms, draws,
                                                                 data.subject_mask)  # fmt: skip
    state = state._replace(individual=individual, terms=terms, individual_ridge=ind_new, terms_ridge=terms_new)
    return state, (partial_r, prior_new)


@partial(jax.jit, static_argnums=(0,))
def _sweep_ridge(saem, data, state, accept_pop, shifted, scaled, draws, theta_e, ridged):
    fn = partial(_sweep_ridge_chain, saem, data)
    return jax.vmap(fn, in_axes=(0, 0, 0, 0, 0, None, 0))(state, accept_pop, shifted, scaled, draws, theta_e, ridged)


def _iteration_end_chain(saem, data, state, pending, k, gamma, hyper, population):
    """One chain: the pending ridge decision, the individual adaptation and average, and :math:`S_j`."""
    individual = jnp.where(pending, state.individual_ridge, state.individual)
    terms = jnp.where(pending, state.terms_ridge, state.terms)
    acc = state.sweep_acceptance
    log_scale = saem.adapt_log_scale(state.individual_log_scale, k, acc, saem.target_accept, hyper)
    s_draw = saem.family.sufficient_stats(data, population, individual, terms)
    state = state._replace(
        individual=individual, terms=terms, individual_log_scale=log_scale,
        individual_acceptance=saem.running_mean(state.individual_acceptance, acc, k),
        individual_mean=state.individual_mean + gamma * (individual - state.individual_mean),
    )  # fmt: skip
    return state, s_draw


@partial(jax.jit, static_argnums=(0,))
def _iteration_end(saem, data, state, pending, k, gamma, hyper, populations):
    fn = partial(_iteration_end_chain, saem, data)
    return jax.vmap(fn, in_axes=(0, 0, None, None, None, 0))(state, pending, k, gamma, hyper, populations)


def _run_task(task, payload, data, carry):
    """Run the task named ``task``, ``task(saem, data, state, *args)``, on a worker: ``carry`` is the
    previous ``(state, small)`` (or None at the start); returns the new ``(state, small)``, ``small``
    as numpy. Tasks travel by name: a jitted function sent by value would be a new function, and
    recompile, at every call."""
    task = globals()[task]
    saem, args = payload.value
    state = () if carry is None else (carry[0],)
    new_state, small = task(saem, data, *state, *args)
    return new_state, jax.device_get(small)


def _run_plain(task, payload, data):
    """``task(saem, data, *args)`` (``task`` a name) on a worker, as numpy."""
    task = globals()[task]
    saem, args = payload.value
    return jax.device_get(task(saem, data, *args))


def _combine_task(combine, *smalls):
    return combine(list(smalls))


def _host(tree):
    return jax.device_get(tree)


# ------------------------------------------------------------------ client


class _Partitions:
    """The client's handle on the partitions' state futures: submit a task to all, gather the small results."""

    def __init__(self, client, saem, data, impl):
        self.client, self.saem, self.data, self.impl = client, saem, data, impl
        self.carry = [None] * len(data)

    def run(self, task, args_per_partition, gather=True):
        submit = self.client.submit
        outs = [submit(_run_task, task, _Opaque((self.saem, _host(args))), d, c, pure=False)
                for d, c, args in zip(self.data, self.carry, args_per_partition)]  # fmt: skip
        self.carry = outs
        smalls = [submit(operator.itemgetter(1), o, pure=False) for o in outs]
        return self.client.gather(smalls) if gather else smalls

    def tree_combine(self, smalls, combine, split_every=SPLIT_EVERY):
        """Combine per-partition results in a tree on the workers (``split_every`` per node); gathers the root."""
        node = partial(self.client.submit, _combine_task, combine, pure=False)
        return self.client.gather(tree_reduce(smalls, node, split_every))

    def gather_state(self):
        return self.client.gather([self.client.submit(operator.itemgetter(0), c, pure=False) for c in self.carry])


@partial(jax.jit, static_argnums=(0,))
def _jitter_populations(saem, keys, hyper, population):
    """Per chain: the keys of the individual jitter and the jittered population (as :meth:`SAEM.init_latent`)."""
    def one(k):
        k1, k2 = jax.random.split(k)
        return k1, saem.jitter_population(k2, hyper, population)

    return jax.vmap(one)(keys)


@partial(jax.jit, static_argnums=(2,))
def _partition_keys(keys, index, single):
    """``fold_in(key, index)`` of each chain's key as key data (the keys themselves if ``single``)."""
    keys = keys if single else jax.vmap(lambda k: jax.random.fold_in(k, index))(keys)
    return jax.random.key_data(keys)


@partial(jax.jit, static_argnums=(0,))
def _iteration_setup(saem, theta, hyper, k):
    """The step size :math:`\\gamma_k` and the kernel's parameters of iteration ``k`` (as :meth:`SAEM.expected_stats`)."""
    gamma = saem.step_size(k, hyper).astype(jax.tree_util.tree_leaves(theta)[0].dtype)
    return (gamma, *saem.kernel_parameters(theta, hyper, k))


@partial(jax.jit, static_argnums=(0,))
def _propose(saem, keys, i, theta_e, hyper_k, populations, log_scales, n):
    """Per chain, from the sweep's key: the individual key, the population proposal, its acceptance
    key and the symmetry moves' draws (the splits of :meth:`SAEM._chain_step`)."""
    def one(key, population, log_scale):
        k_ind, k_pop, k_sym = jax.random.split(jax.random.fold_in(key, i), 3)
        proposal, key_acc = saem.population_proposal(k_pop, hyper_k, population, log_scale)
        return k_ind, proposal, key_acc, saem.family.symmetry_draws(k_sym, theta_e, n, log_scale.dtype)

    return jax.vmap(one)(keys, populations, log_scales)


@partial(jax.jit, static_argnums=(0,))
def _decide_population(saem, key_acc, theta_e, hyper_k, populations, proposals, partials, sums, draws, acc_pop):
    """Per chain: the population decision, then the shift and scale moves and the ridge proposal."""
    family = saem.family

    def one(key_acc, population, proposal, partial_pop, sums, draws, acc):
        accept, probability = saem.population_accept(key_acc, theta_e, hyper_k, population, proposal, partial_pop)
        population = select_tree(accept, proposal, population)

        def prior_sum(shifted, scaled):
            return jnp.where(shifted, jnp.where(scaled, sums[3], sums[1]), jnp.where(scaled, sums[2], sums[0]))

        population, shifted, scaled, current = family.shift_scale_moves(theta_e, hyper_k.family, population, draws,
                                                                        prior_sum)  # fmt: skip
        ridged = family.ridge_proposal(theta_e, population, draws)
        return population, accept, shifted, scaled, current, ridged, acc + probability / saem.n_mh_steps

    return jax.vmap(one)(key_acc, populations, proposals, partials, sums, draws, acc_pop)


@partial(jax.jit, static_argnums=(0,))
def _decide_ridge(saem, theta_e, hyper_k, populations, ridged, draws, partials, priors, current):
    def one(population, ridged, draws, partial_r, prior_new, current):
        accept = saem.family.ridge_accept(theta_e, hyper_k.family, ridged, draws, partial_r, prior_new, current)
        return select_tree(accept, ridged, population), accept

    return jax.vmap(one)(populations, ridged, draws, partials, priors, current)


@partial(jax.jit, static_argnums=(0,))
def _client_update(saem, theta, hyper, stats, chain_stats, populations, log_scales, acceptance, acc_pop, s_draw, k,
                   n_obs, previous, tol):  # fmt: skip
    r"""The client's end of an iteration: population adaptation, :math:`S_{k+1}`, :math:`\theta_{k+1}`,
    the objective, the convergence test and the per-chain trace (as :meth:`SAEM.expected_stats` and
    :func:`lateo.core.loop.step`)."""
    family = saem.family
    dtype = log_scales.dtype
    gamma = saem.step_size(k, hyper).astype(dtype)
    _, hyper_k = saem.kernel_parameters(theta, hyper, k)

    def one(population, log_scale, acc, acc_k, s, chain_s):
        target = saem.population_target(population)
        log_scale = saem.adapt_log_scale(log_scale, k, acc_k, target, hyper)
        objective = family.complete_loglik(theta, hyper_k.family, s, population, None)
        return log_scale, saem.running_mean(acc, acc_k, k), stats_interpolate(chain_s, s, gamma), objective

    log_scales, acceptance, chain_stats, objective = jax.vmap(one)(populations, log_scales, acceptance, acc_pop,
                                                                   s_draw, chain_stats)  # fmt: skip
    s_hat = jax.tree_util.tree_map(lambda x: jnp.mean(x, axis=0), s_draw)
    objective = jnp.mean(objective) / n_obs
    stats = stats_interpolate(stats, s_hat, saem.step_size(k, hyper).astype(objective.dtype))
    params = saem.m_step(stats, hyper, theta)
    converged = saem.has_converged(theta, params, objective - previous, tol)
    latent = SAEMLatent(ChainState(None, None, None, None, None, None, chain_stats, None, None), k, hyper)
    return params, stats, chain_stats, log_scales, acceptance, objective, converged, saem.trace(params, latent)


def _stack_sum(parts):
    """Left-to-right sum of per-partition arrays (exact for one partition)."""
    total = parts[0]
    for p in parts[1:]:
        total = total + p
    return total


class SAEMResult(NamedTuple):
    """What :func:`run_saem` returns: the state in :class:`lateo.core.loop.LoopResult`'s shape."""

    state: Any
    history: np.ndarray
    converged: bool
    n_iter: int
    trace: np.ndarray


def run_saem(saem, theta, hyper, cohort: Cohort, key_chains, key_loop, individual, *, max_iter: int, tol: float,
             progress="auto", description="SAEM"):  # fmt: skip
    r"""MCMC-SAEM with the subjects on the workers (see the module docstring); :class:`SAEMResult`.

    Parameters
    ----------
    saem : SAEM
        The algorithm (its family must have the pieces of
        :meth:`~lateo.models.progression._model.ProgressionFamily.symmetry_moves`).
    theta, hyper
        Initial parameters and :class:`~lateo.algorithms.saem.SAEMHyper`.
    cohort : Cohort
        From :func:`cohort_partitions`.
    key_chains, key_loop
        The keys of the single-process fit's ``init_latent`` and ``loop.init``.
    individual : list or None
        Per partition, the starting individual latents ``(n_subjects, q)`` (padded rows
        included), or None for the posterior modes at ``theta``.
    max_iter, tol, progress, description
        As :func:`lateo.core.loop.run`.

    Returns
    -------
    SAEMResult
        ``state`` is a :class:`lateo.core.loop.LoopState` whose latent holds the per-subject
        fields gathered to the client (real subjects, partitions concatenated).
    """
    from ..core.loop import LoopState, _strong

    client = get_client(cohort.client)
    family, n_chains, m = saem.family, saem.n_chains, len(cohort.data)
    impl = str(jax.random.key_impl(key_chains))
    theta = _strong(theta)
    parts = _Partitions(client, saem, cohort.data, impl)
    if individual is None:
        modes = [client.submit(_run_plain, "_mode_task", _Opaque((saem, (_host(theta),))), d, pure=False)
                 for d in cohort.data]  # fmt: skip
        individual = client.gather(modes)
    chain_keys = jax.random.split(key_chains, n_chains)
    jitter_keys, populations = _jitter_populations(saem, chain_keys, hyper.family, theta.population)
    init = parts.run("_init_task", [(theta, _partition_keys(jitter_keys, j, m == 1), populations, individual[j], impl)
                                  for j in range(m)])  # fmt: skip
    stats0 = family.combine_stats([s for s, _ in init])
    n_obs = jnp.maximum(_stack_sum([jnp.asarray(n) for _, n in init]), 1.0)
    dtype = jnp.asarray(n_obs).dtype
    n_pop = ravel_pytree(theta.population)[0].size
    log_scales = jnp.full(n_chains, jnp.log(jnp.asarray(2.38 / jnp.sqrt(n_pop), dtype)))
    acceptance = jnp.zeros(n_chains, dtype)
    chain_stats = jax.tree_util.tree_map(lambda x: jnp.broadcast_to(x, (n_chains,) + jnp.shape(x)), stats0)
    stats = jax.tree_util.tree_map(jnp.zeros_like, stats0)
    n = jnp.maximum(jnp.asarray(float(cohort.n_total), dtype), 1.0)
    tol = jnp.asarray(tol, dtype)
    key, objective, converged, k = key_loop, jnp.asarray(-jnp.inf, dtype), False, 0
    history, traces = [], []
    with FitProgress(max_iter, description, progress) as bar:
        while k < max_iter and not converged:
            key, sub = jax.random.split(key)
            keys = jax.random.split(sub, n_chains)
            k += 1
            k_arr = jnp.asarray(k, jnp.int32)
            gamma, theta_e, hyper_k = _iteration_setup(saem, theta, hyper, k_arr)
            acc_pop = jnp.zeros(n_chains, dtype)
            pending = np.zeros(n_chains, bool)
            for i in range(saem.n_mh_steps):
                k_ind, proposals, key_acc, draws = _propose(saem, keys, jnp.asarray(i, jnp.int32), theta_e, hyper_k,
                                                            populations, log_scales, n)  # fmt: skip
                out = parts.run("_sweep_start", [(pending, i == 0, _partition_keys(k_ind, j, m == 1), theta_e,
                                                populations, proposals, draws, impl) for j in range(m)])  # fmt: skip
                partial_pop = _stack_sum([jnp.asarray(p) for p, _ in out])
                sums = _stack_sum([jnp.asarray(s) for _, s in out])
                populations, accept_pop, shifted, scaled, current, ridged, acc_pop = _decide_population(
                    saem, key_acc, theta_e, hyper_k, populations, proposals, partial_pop, sums, draws, acc_pop)
                out = parts.run("_sweep_ridge", [(accept_pop, shifted, scaled, draws, theta_e, ridged)] * m)
                partial_r = _stack_sum([jnp.asarray(p) for p, _ in out])
                priors = _stack_sum([jnp.asarray(s) for _, s in out])
                populations, pending = _decide_ridge(saem, theta_e, hyper_k, populations, ridged, draws, partial_r,
                                                     priors, current)  # fmt: skip
            smalls = parts.run("_iteration_end", [(pending, k_arr, gamma, hyper, populations)] * m, gather=False)
            s_draw = parts.tree_combine(smalls, family.combine_stats)
            s_draw = jax.tree_util.tree_map(jnp.asarray, s_draw)
            theta, stats, chain_stats, log_scales, acceptance, objective, converged, trace = _client_update(
                saem, theta, hyper, stats, chain_stats, populations, log_scales, acceptance, acc_pop, s_draw, k_arr,
                n_obs, objective, tol)
            converged = bool(converged)
            history.append(float(objective))
            traces.append(np.asarray(trace))
            bar.update(k, float(objective))
    states = parts.gather_state()
    chains = _gathered_chains(states, cohort, populations, log_scales, acceptance, chain_stats)
    latent = SAEMLatent(chains, jnp.asarray(k, jnp.int32), hyper)
    state = LoopState(theta, stats, jnp.asarray(k, jnp.int32), objective, jnp.asarray(converged), key, latent)
    return SAEMResult(state, np.asarray(history), converged, k, np.stack(traces) if traces else None)


def _gathered_chains(states, cohort: Cohort, populations, log_scales, acceptance, chain_stats) -> ChainState:
    """The chains as one :class:`ChainState` (leading axis chains), the real subjects of the partitions in order."""
    def cat(field):
        return np.concatenate([np.asarray(getattr(s, field))[:, :len(ids)] for s, ids in zip(states, cohort.ids)],
                              axis=1)  # fmt: skip

    return ChainState(populations, cat("individual"), cat("individual_log_scale"), log_scales,
                      cat("individual_acceptance"), acceptance, chain_stats, cat("individual_mean"), cat("terms"))


# ------------------------------------------------------------------ estimator glue


def fit_progression(est, ddf, *, n_iter=None, features=None, client=None):
    """Fit a :class:`~lateo.models.progression.estimator.ProgressionModel` to a long Dask DataFrame.

    The start, the keys and the SAEM settings are the single-process fit's (see the module
    docstring for the start when there are more subjects than the client-side sample); the fit is
    stored by the estimator's ``_store_fit``, so ``params_``, ``individual_parameters_``,
    ``traces_``, ``predict`` and the other methods work as after a pandas fit. The Laplace
    refinement is skipped: ``refine_accepted_`` is False and ``params_`` equals ``params_saem_``.
    """
    import pandas as pd

    from .._config import resolve_dtype
    from .._validation import check_float, check_random_key
    from ..models.progression import _model as M
    from ..models.progression._data import from_dataframe
    from ..models.progression.estimator import _BOUNDS

    n_iter, burn_in = est._check_params(est.n_iter if n_iter is None else n_iter)
    if resolve_dtype(est.dtype) != np.float64:
        raise ValueError(f"dtype={est.dtype!r} is for in-memory fits: a Dask DataFrame is fitted in float64; "
                         "pass dtype='float64' or fit a pandas DataFrame.")  # fmt: skip
    client = get_client(client)
    bounds = _BOUNDS[est.model]
    cohort = cohort_partitions(ddf, client, features=features, id_col=est.id_col, time_col=est.time_col,
                               bounds=bounds)  # fmt: skip
    key = check_random_key(est.random_state)
    frame, complete = gather_subjects(cohort, key)
    ld = from_dataframe(frame, features=cohort.features, id_col=est.id_col, time_col=est.time_col, bounds=bounds)
    data = est._arrays(ld)
    theta, individual, pop_std = est._initial(ld)
    theta, individual = est._refine_start(data, theta, individual)
    if complete:  # the single-process start, row by row in each partition's order
        rows = pd.Index(ld.ids).get_indexer(np.concatenate(cohort.ids))
        z = np.asarray(individual)[rows]
        bounds_ = np.cumsum([0] + [len(i) for i in cohort.ids])
        starts = [np.pad(z[a:b], ((0, cohort.n_subjects - (b - a)), (0, 0))) for a, b in zip(bounds_[:-1], bounds_[1:])]
    else:
        starts = None
    hyper = est._hyper(pop_std, ld.n_features)
    saem = est._saem()
    hyper = saem.make_hyper(hyper, burn_in)
    key_chains, key_loop = jax.random.split(key)
    tol = -np.inf if est.tol is None else check_float(est.tol, name="tol", low=0.0)
    result = run_saem(saem, theta, hyper, cohort, key_chains, key_loop, starts, max_iter=n_iter, tol=tol,
                      progress=est.progress, description=f"SAEM ({est.model}, {len(cohort.data)} partitions)")
    theta = result.state.params
    names = M.theta_names(list(cohort.features), int(est.n_sources))
    est.params_saem_ = pd.Series(est._natural_scale(M.theta_vector(theta)[None, None], names)[0, 0], index=names)
    est.refine_accepted_ = False
    fitted = _FittedCohort(tuple(cohort.features), np.concatenate(cohort.ids))
    est._store_fit(fitted, result, burn_in, theta)
    est.n_partitions_ = len(cohort.data)
    return est


class _FittedCohort(NamedTuple):
    """What ``_store_fit`` reads of the data: the features and the subject IDs (in the chains' order)."""

    features: tuple
    ids: np.ndarray


__all__ = ["Cohort", "SAEMResult", "SubjectState", "cohort_partitions", "fit_progression", "gather_subjects",
           "run_saem"]
