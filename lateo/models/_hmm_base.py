"""What every HMM estimator shares: validation, initial parameters, the fit
loop, scoring, decoding and sampling, with hmmlearn's names.

Subclasses choose the emission family and define five hooks:
``_family()``, ``_check_sequences(seqs)``, ``_emission_hyper(X, dtype)``,
``_initial_emission(key, X, shift, dtype)`` (honouring ``init_params`` and
attributes set by the user), ``_store_emission(emission, shift)`` and
``_n_emission_parameters()``. Gaussian-type subclasses set ``_center =
True``: the data are centred before the natural-parameter E-step (as for
mixtures) and the means shifted back.
"""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np

from .._config import resolve_dtype
from .._validation import check_float, check_int, check_option, check_random_key
from ..core import loop
from ..core.progress import check_progress
from ..inference.hmm import IMPLEMENTATIONS
from ..core.sequences import bucket_sequences, split_sequences, unbucket
from ._base import ParamsMixin, check_is_fitted
from ..algorithms import distributed
from ..algorithms.online_em import as_stream
from ._hmm_em import HiddenMarkovEM, HMMHyper, HMMParams, posterior_batch, sample_hmm, viterbi_batch
from ._hmm_online import OnlineHMMMixin

_ATTRIBUTE_OF = {"s": "startprob_", "t": "transmat_"}


def check_stochastic(value, name: str, shape) -> np.ndarray:
    """A copy of ``value`` as probabilities of the given shape whose last axis sums to 1."""
    arr = np.array(value, dtype=np.float64)
    if arr.shape != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {arr.shape}.")
    if not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise ValueError(f"{name} must hold non-negative finite probabilities.")
    sums = arr.sum(axis=-1)
    if not np.allclose(sums, 1.0, rtol=0, atol=1e-6):
        raise ValueError(f"the rows of {name} must sum to 1; got sums {np.round(sums, 6).tolist()}. Normalise each row.")
    return arr


class BaseHMM(OnlineHMMMixin, ParamsMixin):
    """Shared machinery of lateo's HMM estimators (not used directly)."""

    _estimator_type = "density_estimator"
    _emission_letters = ""
    _center = False

    # ---------------------------------------------------------- validation
    def _validate_hyperparameters(self) -> None:
        check_int(self.n_components, name="n_components", low=1)
        check_int(self.n_iter, name="n_iter", low=0)
        check_float(self.tol, name="tol", low=-np.inf, finite=False)  # -inf: never stop early
        check_option(self.algorithm, name="algorithm", options=("viterbi", "map"))
        check_option(self.implementation, name="implementation", options=IMPLEMENTATIONS)
        check_progress(self.progress)
        allowed = set("st" + self._emission_letters)
        for name in ("params", "init_params"):
            value = getattr(self, name)
            if not isinstance(value, str) or set(value) - allowed:
                raise ValueError(f"{name} must be a string of letters from {''.join(sorted(allowed))!r}, got {value!r}.")

    def _sequences(self, X, lengths):
        return self._check_sequences(split_sequences(X, lengths))

    def _shift(self, seqs):
        return np.concatenate(seqs).mean(axis=0) if self._center else None

    def _buckets(self, seqs, shift, dtype):
        centred = seqs if shift is None else [s - shift for s in seqs]
        return bucket_sequences(centred, dtype)

    # -------------------------------------------------------------- fit
    def _initial_transitions(self, dtype):
        k = self.n_components
        out = {}
        for letter, attr in _ATTRIBUTE_OF.items():
            if letter in self.init_params:
                if hasattr(self, attr):
                    warnings.warn(f"{attr} is set but init_params contains {letter!r}, so it will be overwritten; "
                                  f"remove {letter!r} from init_params to start from it.", UserWarning, stacklevel=3)
                shape = (k,) if letter == "s" else (k, k)
                out[letter] = np.full(shape, 1.0 / k)
            elif not hasattr(self, attr):
                raise ValueError(f"init_params lacks {letter!r}, so {attr} must be set before fit.")
            else:
                shape = (k,) if letter == "s" else (k, k)
                out[letter] = check_stochastic(getattr(self, attr), attr, shape)
        return jnp.asarray(out["s"], dtype), jnp.asarray(out["t"], dtype)

    def _hyper(self, X, dtype) -> HMMHyper:
        k = self.n_components
        start = np.broadcast_to(np.asarray(self.startprob_prior, np.float64), (k,))
        trans = np.broadcast_to(np.asarray(self.transmat_prior, np.float64), (k, k))
        return HMMHyper(jnp.asarray(start, dtype), jnp.asarray(trans, dtype), self._emission_hyper(X, dtype))

    def fit(self, X, lengths=None, *, algorithm=None, batch_size=None, client=None):
        """Estimate the parameters by Baum-Welch (EM); returns ``self``.

        ``X``: concatenated sequences (n_samples, n_features) with ``lengths``,
        or a list of sequences, or (online EM) a stream of chunks of
        sequences (:mod:`lateo.models._hmm_online`). ``algorithm`` ("batch"
        or "online": the EM variant, not the decoder) and ``batch_size``
        (sequences per minibatch) override ``em_algorithm`` and
        ``batch_size`` where the estimator has them.

        A Dask bag of sequences (or a list of ``dask.delayed`` sequences) is
        fitted by distributed Baum-Welch on the workers of ``client``
        (default: the active ``dask.distributed`` Client); see
        :mod:`lateo.algorithms.distributed`.
        """
        self._validate_hyperparameters()
        algorithm, batch_size, schedule = self._online_options(algorithm, batch_size)
        if distributed.is_dask_input(X):
            if lengths is not None or algorithm != "batch":
                raise ValueError("Dask input to an HMM is a bag (or delayed list) of whole sequences, fitted by "
                                 "batch Baum-Welch: pass lengths=None and algorithm='batch'.")
            return distributed.fit_sequences(self, X, client=client)
        if algorithm == "online" or as_stream(X) is not None:
            if algorithm == "batch":
                raise ValueError("a stream of chunks is fitted by online EM: pass algorithm='online'.")
            return self._fit_online(X, lengths, batch_size, schedule)
        self.__dict__.pop("_online_", None)
        self.__dict__.pop("n_steps_", None)
        seqs = self._sequences(X, lengths)
        dtype = resolve_dtype(self.dtype)
        shift = self._shift(seqs)
        buckets = self._buckets(seqs, shift, dtype)
        X_all = np.concatenate(seqs)
        key, init_key, loop_key = jax.random.split(check_random_key(self.random_state), 3)
        start, trans = self._initial_transitions(dtype)
        emission = self._initial_emission(init_key, X_all, shift, dtype)
        params0 = HMMParams(start, trans, emission)
        hyper = self._hyper(X_all, dtype)
        model = HiddenMarkovEM(self._family(), self.params, self.implementation)
        state = loop.init(model, params0, buckets.batches, hyper, loop_key)
        result = loop.run(model, state, buckets.batches, hyper, max_iter=self.n_iter, tol=self.tol,
                          progress=self.progress, description=type(self).__name__)
        self._store_fit(loop.final(result.state), shift, result.converged, result.n_iter, result.history,
                        seqs[0].shape[1])
        return self

    def _store_fit(self, params, shift, converged, n_iter, history, n_features) -> None:
        params = jax.device_get(params)
        self.startprob_ = np.asarray(params.startprob, np.float64)
        self.transmat_ = np.asarray(params.transmat, np.float64)
        self._store_emission(params.emission, shift)
        self.converged_ = bool(converged)
        self.n_iter_ = int(n_iter)
        self.lower_bounds_ = np.asarray(history, np.float64)
        self.n_features_in_ = int(n_features)

    # ---------------------------------------------------------- scoring
    def _fitted_params(self, shift, dtype) -> HMMParams:
        check_is_fitted(self, "transmat_")
        return HMMParams(jnp.asarray(self.startprob_, dtype), jnp.asarray(self.transmat_, dtype),
                         self._emission_from_attributes(shift, dtype))

    def _prepare(self, X, lengths):
        check_is_fitted(self, "transmat_")
        seqs = self._sequences(X, lengths)
        expected = getattr(self, "n_features_in_", None)  # None: parameters set by hand, not fitted
        if expected is not None and seqs[0].shape[1] != expected:
            raise ValueError(f"X has {seqs[0].shape[1]} features, but {type(self).__name__} is expecting "
                             f"{expected} features as input.")
        dtype = resolve_dtype(self.dtype)
        shift = self._scoring_shift()
        return self._buckets(seqs, shift, dtype), self._fitted_params(shift, dtype)

    def _scoring_shift(self):
        return None

    def _posteriors(self, X, lengths):
        buckets, params = self._prepare(X, lengths)
        family = self._family()
        outs = [posterior_batch(family, params, batch, self.implementation) for batch in buckets.batches]
        log_liks = unbucket([o[0][:, None] for o in outs], _scalar_view(buckets))
        gammas = unbucket([o[1] for o in outs], buckets)
        return np.array([float(v[0]) for v in log_liks]), np.concatenate(gammas)

    def score_samples(self, X, lengths=None):
        """``(log p(X), posteriors)``: the total log-likelihood and ``p(z_t | x)`` (n_samples, K)."""
        log_liks, gamma = self._posteriors(X, lengths)
        return float(log_liks.sum()), gamma

    def score(self, X, lengths=None):
        """Total log-likelihood ``sum_seq log p(x_seq)``."""
        return float(self._posteriors(X, lengths)[0].sum())

    def predict_proba(self, X, lengths=None):
        """State posteriors ``p(z_t = k | x)``, (n_samples, K)."""
        return self._posteriors(X, lengths)[1]

    def decode(self, X, lengths=None, algorithm=None):
        """``(log_prob, states)`` by Viterbi (joint log-probability of the best
        path) or "map" (per-step most probable states; ``log_prob`` is
        ``sum_t log max_k p(z_t = k | x)``)."""
        algorithm = check_option(algorithm or self.algorithm, name="algorithm", options=("viterbi", "map"))
        if algorithm == "map":
            _, gamma = self._posteriors(X, lengths)
            return float(np.log(gamma.max(axis=1)).sum()), gamma.argmax(axis=1)
        buckets, params = self._prepare(X, lengths)
        outs = [viterbi_batch(self._family(), params, batch, self.implementation) for batch in buckets.batches]
        log_probs = unbucket([o[0][:, None] for o in outs], _scalar_view(buckets))
        paths = unbucket([o[1] for o in outs], buckets)
        return float(sum(float(v[0]) for v in log_probs)), np.concatenate(paths).astype(np.int64)

    def predict(self, X, lengths=None):
        """Most probable state sequence(s) (``algorithm``, Viterbi by default)."""
        return self.decode(X, lengths)[1]

    def sample(self, n_samples=1, random_state=None):
        """``(X, states)``: one sequence of ``n_samples`` steps drawn from the model."""
        n_samples = check_int(n_samples, name="n_samples", low=1)
        dtype = resolve_dtype(self.dtype)
        shift = self._scoring_shift()
        params = self._fitted_params(shift, dtype)
        key = check_random_key(self.random_state if random_state is None else random_state)
        X, states = sample_hmm(self._family(), params, key, n_samples)
        X = np.asarray(X, np.float64)
        if shift is not None:
            X = X + shift
        return self._format_samples(X), np.asarray(states, np.int64)

    def _format_samples(self, X):
        return X

    def _n_parameters(self) -> int:
        k = self.n_components
        count = {"s": k - 1, "t": k * (k - 1)}
        return sum(v for letter, v in count.items() if letter in self.params) + self._n_emission_parameters()

    def bic(self, X, lengths=None):
        """``-2 log L + p log n`` with ``p`` the free parameters in ``params``."""
        n = sum(len(s) for s in self._sequences(X, lengths))
        return -2 * self.score(X, lengths) + self._n_parameters() * np.log(n)

    def aic(self, X, lengths=None):
        """``-2 log L + 2 p``."""
        return -2 * self.score(X, lengths) + 2 * self._n_parameters()


def _scalar_view(buckets):
    """The buckets' index with every sequence of length 1 (for per-sequence scalars)."""
    return buckets._replace(lengths=tuple(1 for _ in buckets.lengths))
