"""Online EM for the HMM estimators: minibatches of sequences (Cappé & Moulines 2009).

The statistics of Baum-Welch (:mod:`lateo.models._hmm_em`) are sums over
sequences, so a minibatch of ``batch_size`` sequences, scaled by ``N /
|B|`` (``N`` sequences in all), estimates the full statistics and online EM
(:mod:`lateo.algorithms.online_em`) applies unchanged. Data are a list of
sequences or concatenated rows with ``lengths`` (reshuffled each pass), or a
stream of chunks, each chunk a list of sequences, a 2-D array (one
sequence) or a tuple ``(X, lengths)``. ``partial_fit(X, lengths)`` makes
one step with those sequences as the minibatch.

Options: ``em_algorithm`` ("batch"/"online"), ``batch_size`` (sequences per
minibatch) and ``step_size`` are constructor parameters of
:class:`lateo.GaussianHMM`; every HMM estimator that keeps ``BaseHMM.fit``
accepts ``fit(..., algorithm=, batch_size=)``. The per-pass objective is
the sum of the minibatch log-likelihoods, each at the parameters entering
its step (the total log-likelihood once the parameters settle).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from .._config import resolve_dtype
from .._validation import check_random_key
from ..algorithms import online_em
from ..core.progress import FitProgress
from ..core.sequences import split_sequences
from ._hmm_em import HiddenMarkovEM, HMMParams


def _chunk_sequences(chunk, index):
    if isinstance(chunk, tuple) and len(chunk) == 2 and not np.isscalar(chunk[1]) and np.ndim(chunk[1]) == 1:
        return split_sequences(chunk[0], chunk[1], name=f"chunk {index} of X")
    return split_sequences(chunk, None, name=f"chunk {index} of X")


def _sequence_batches(seq_chunks, batch_size: int):
    """Groups of ``batch_size`` sequences (the last may be smaller) from chunks of sequences."""
    pending = []
    for seqs in seq_chunks:
        pending.extend(seqs)
        while len(pending) >= batch_size:
            yield pending[:batch_size]
            pending = pending[batch_size:]
    if pending:
        yield pending


class OnlineHMMMixin:
    """``fit(..., algorithm="online")`` and ``partial_fit`` for :class:`BaseHMM` subclasses."""

    def _online_options(self, algorithm, batch_size):
        algorithm = getattr(self, "em_algorithm", "batch") if algorithm is None else algorithm
        batch_size = getattr(self, "batch_size", 16) if batch_size is None else batch_size
        algorithm, batch_size = online_em.check_options(algorithm, batch_size)
        return algorithm, batch_size, online_em.check_schedule(getattr(self, "step_size", None))

    def _online_setup(self, seqs, dtype):
        """Initial parameters, shift, hyper-parameters, model and loop key from the sequences at hand."""
        key, init_key, loop_key, shuffle_key = jax.random.split(check_random_key(self.random_state), 4)
        shift = self._shift(seqs)
        X_all = np.concatenate(seqs)
        start, trans = self._initial_transitions(dtype)
        params0 = HMMParams(start, trans, self._initial_emission(init_key, X_all, shift, dtype))
        hyper = self._hyper(X_all, dtype)
        model = HiddenMarkovEM(self._family(), self.params, self.implementation)
        return params0, shift, hyper, model, loop_key, shuffle_key

    def _online_step(self, model, schedule, state, seqs, shift, hyper, n_total, dtype):
        batch = self._buckets(seqs, shift, dtype).batches
        if state is None:
            return batch
        scale = jnp.asarray(n_total / len(seqs), dtype)
        return online_em.online_step(model, schedule, state, batch, scale, hyper)

    def _fit_online(self, X, lengths, batch_size: int, schedule):
        """Online EM over an in-memory list of sequences or a stream of chunks of sequences."""
        stream = online_em.as_stream(X)
        dtype = resolve_dtype(self.dtype)
        if stream is None:
            seqs = self._sequences(X, lengths)
            first = seqs
        else:
            if lengths is not None:
                raise ValueError("lengths must be None when X is a stream; give each chunk as (X, lengths).")
            first = self._check_sequences(_chunk_sequences(stream.first(), 0))
        params0, shift, hyper, model, loop_key, shuffle_key = self._online_setup(first, dtype)
        example = self._online_step(model, schedule, None, first[:batch_size], shift, hyper, 1, dtype)
        state = online_em.init_state(model, params0, example, hyper, loop_key)
        rng = np.random.default_rng(int(jax.random.randint(shuffle_key, (), 0, 2**31 - 1)))
        history, seen, n_total, converged = [], 0, None, False
        with FitProgress(self.n_iter, type(self).__name__, self.progress) as bar:
            for epoch in range(self.n_iter):
                if stream is None:
                    chunks = [[seqs[i] for i in rng.permutation(len(seqs))]]
                else:
                    chunks = (self._check_sequences(_chunk_sequences(c, i)) for i, c in enumerate(stream))
                total = 0.0
                for group in _sequence_batches(chunks, batch_size):
                    seen += len(group) if epoch == 0 else 0
                    size = n_total if n_total is not None else (len(seqs) if stream is None else seen)
                    state, objective = self._online_step(model, schedule, state, group, shift, hyper, size, dtype)
                    total += float(objective)
                history.append(total)
                n_total = n_total if n_total is not None else seen
                bar.update(epoch + 1, total)
                if len(history) > 1 and history[-1] - history[-2] < self.tol:
                    converged = True
                    break
                if stream is not None and not stream.reiterable:
                    break
        self._store_fit(state.params, shift, converged, len(history), history, first[0].shape[1])
        self._online_ = {"state": state, "shift": shift, "hyper": hyper, "model": model, "n_seen": n_total}
        self.n_steps_ = int(state.iteration)
        return self

    def partial_fit(self, X, lengths=None):
        """One online-EM step with the sequences of ``X`` as the minibatch; returns ``self``.

        The first call initialises the parameters from ``X`` as ``fit``
        would; later calls continue the statistics and step count. The
        statistics are scaled to the sequences seen so far.
        """
        self._validate_hyperparameters()
        _, _, schedule = self._online_options(None, None)
        seqs = self._sequences(X, lengths)
        dtype = resolve_dtype(self.dtype)
        online = getattr(self, "_online_", None)
        if online is None:
            params0, shift, hyper, model, loop_key, _ = self._online_setup(seqs, dtype)
            example = self._online_step(model, schedule, None, seqs, shift, hyper, 1, dtype)
            state = online_em.init_state(model, params0, example, hyper, loop_key)
            online = self._online_ = {"state": state, "shift": shift, "hyper": hyper, "model": model, "n_seen": 0}
        elif seqs[0].shape[1] != self.n_features_in_:
            raise ValueError(f"X has {seqs[0].shape[1]} features, but {type(self).__name__} is expecting "
                             f"{self.n_features_in_} features as input.")
        online["n_seen"] += len(seqs)
        state, objective = self._online_step(online["model"], schedule, online["state"], seqs, online["shift"],
                                             online["hyper"], online["n_seen"], dtype)
        online["state"] = state
        history = list(getattr(self, "lower_bounds_", [])) if getattr(self, "n_steps_", 0) else []
        self._store_fit(state.params, online["shift"], False, int(state.iteration), history + [float(objective)],
                        seqs[0].shape[1])
        self.n_steps_ = int(state.iteration)
        return self
