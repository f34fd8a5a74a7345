"""Online EM and out-of-core data for row-data estimators (GaussianMixture, PPCA).

The estimator-side half of :mod:`lateo.algorithms.online_em`. An estimator
mixes in :class:`OnlineRowsMixin` and defines four hooks:

``_online_model()``
    its statistics-loop model (hashable) and the floats per row that size a block;
``_online_init(rows, key, dtype)``
    ``(params0, shift, hyper)`` from the rows available (all of an array, or
    the first chunk of a stream), in coordinates centred on ``shift``;
``_online_check_chunk(chunk, index)``
    one chunk validated as a 2-D float array (named in errors);
``_online_store(params, shift, history, converged, n_iter, names)``
    the fitted attributes.

Options (constructor, overridable per call of ``fit``): ``em_algorithm``
("batch": exact EM, "online": online EM), ``batch_size`` (rows per minibatch)
and ``step_size`` (a schedule of :mod:`lateo.core.schedules`). ``fit``
accepts an array or a stream of chunks (:class:`lateo.algorithms.online_em.
ChunkStream`, a callable returning an iterator, or an iterator);
``partial_fit`` makes one online-EM step on the rows it is given.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from .._config import resolve_dtype
from .._validation import check_random_key
from ..algorithms import online_em
from ..core.blocks import choose_block_size, make_blocks


class OnlineRowsMixin:
    """Online EM, exact EM over streams and ``partial_fit`` for row-data estimators."""

    def _online_options(self, algorithm, batch_size):
        algorithm = self.em_algorithm if algorithm is None else algorithm
        batch_size = self.batch_size if batch_size is None else batch_size
        algorithm, batch_size = online_em.check_options(algorithm, batch_size)
        return algorithm, batch_size, online_em.check_schedule(self.step_size)

    def _chunk_checker(self, n_features: int):
        """``check_chunk(chunk, index)``: the hook's validation plus the same width as the first chunk."""

        def check(chunk, index):
            rows = self._online_check_chunk(chunk, index)
            if rows.shape[1] != n_features:
                where = "X" if index is None else f"chunk {index} of X"
                raise ValueError(f"{where} has {rows.shape[1]} features, but {type(self).__name__} is expecting "
                                 f"{n_features} features as input (those of the first chunk or of the fitted model).")
            return rows

        return check

    def _fit_rows(self, X, algorithm: str, batch_size: int, names=None):
        """Fit by online EM (array or stream) or by exact EM over a stream."""
        stream = online_em.as_stream(X)
        schedule = online_em.check_schedule(self.step_size)
        dtype = resolve_dtype(self.dtype)
        self.__dict__.pop("_partial_history_", None)
        if stream is None:
            first = self._online_check_chunk(X, None)
        else:
            first = self._online_check_chunk(stream.first(), 0)
        check_chunk = self._chunk_checker(first.shape[1])
        key, init_key, loop_key, shuffle_key = jax.random.split(check_random_key(self.random_state), 4)
        params0, shift, hyper = self._online_init(first, init_key, dtype)
        model, floats = self._online_model()
        n_rows, n_features = first.shape
        if stream is not None:
            del first  # hold no chunk beyond the one being processed
        if algorithm == "batch":  # exact EM over a re-iterable stream
            block_size = choose_block_size(n_rows, floats)
            params, _, history, converged = online_em.run_rows_exact(
                model, params0, stream, hyper, check_chunk=check_chunk, max_iter=self._max_iter(),
                tol=self.tol, progress=self.progress, description=type(self).__name__,
                make_data=lambda rows: make_blocks(rows, block_size, shift=shift, dtype=dtype))
            self._online_store(params, shift, history, converged, len(history), names)
            self.__dict__.pop("_online_", None)
            return self
        layout = online_em.minibatch_layout(batch_size, floats)
        state = online_em.init_state(model, params0, online_em.example_blocks(layout, n_features, dtype),
                                     hyper, loop_key)
        rng = np.random.default_rng(int(jax.random.randint(shuffle_key, (), 0, 2**31 - 1)))
        state, history, converged, n_total = online_em.run_rows(
            model, state, first if stream is None else stream, hyper, batch_size=batch_size, layout=layout,
            shift=shift, dtype=dtype, schedule=schedule, max_epochs=self._max_iter(), tol=self.tol,
            check_chunk=check_chunk, rng=rng, progress=self.progress,
            description=type(self).__name__)
        self._online_store(state.params, shift, history, converged, len(history), names)
        self._online_ = {"state": state, "shift": shift, "hyper": hyper, "n_seen": n_total}
        self.n_steps_ = int(state.iteration)
        return self

    def _max_iter(self) -> int:
        return int(self.max_iter)

    def partial_fit(self, X, y=None):
        """One online-EM step with the rows of ``X`` as the minibatch; returns ``self``.

        The first call (or the first after a batch ``fit``) initialises the
        parameters from ``X`` as ``fit`` would; later calls continue the
        statistics ``S_k`` and the step count ``k`` of the previous call
        (``gamma_k`` from ``step_size``). The statistics are scaled to the
        rows seen so far, ``N / |B|``.
        """
        del y
        online_em.check_schedule(self.step_size)
        rows = self._online_check_chunk(X, None)
        if getattr(self, "_online_", None) is not None:
            rows = self._chunk_checker(self.n_features_in_)(rows, None)
        dtype = resolve_dtype(self.dtype)
        model, floats = self._online_model()
        n_rows = rows.shape[0]
        width = 1 << max(n_rows - 1, 0).bit_length()  # power-of-two layouts: few compilations
        layout = online_em.minibatch_layout(width, floats)
        if getattr(self, "_online_", None) is None:
            key, init_key, loop_key, _ = jax.random.split(check_random_key(self.random_state), 4)  # as fit
            params0, shift, hyper = self._online_init(rows, init_key, dtype)
            state = online_em.init_state(model, params0, online_em.example_blocks(layout, rows.shape[1], dtype),
                                         hyper, loop_key)
            self._online_ = {"state": state, "shift": shift, "hyper": hyper, "n_seen": 0}
        online = self._online_
        online["n_seen"] += n_rows
        blocks, _ = online_em.stack_minibatches(rows, width, layout, shift=online["shift"], dtype=dtype)
        batch = jax.tree.map(lambda a: a[0], blocks)
        scale = jnp.asarray(online["n_seen"] / n_rows, dtype)
        state, objective = online_em.online_step(model, online_em.check_schedule(self.step_size), online["state"],
                                                 batch, scale, online["hyper"])
        online["state"] = state
        history = np.concatenate([getattr(self, "_partial_history_", np.zeros(0)), [float(objective)]])
        self._online_store(state.params, online["shift"], history, False, int(state.iteration), None)
        self._partial_history_ = history
        self.n_steps_ = int(state.iteration)
        return self
