"""HMMs with discrete observations: categorical symbols and Poisson counts.

``CategoricalHMM`` (hmmlearn's name; one symbol per step) and
``PoissonHMM`` (a vector of counts per step) share everything but the
emission family with :class:`lateo.models.hmm.GaussianHMM`: the fit loop,
scoring, decoding and sampling of :class:`lateo.models._hmm_base.BaseHMM`
and Baum-Welch on the statistics loop (Rabiner 1989, section III-C; seed
004, lectures 2-3). The emission maths lives in
:mod:`lateo.families.categorical` and :mod:`lateo.families.poisson`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from .._validation import check_int
from ..families import categorical, poisson
from ._hmm_base import BaseHMM, check_stochastic


def check_counts(seqs, what: str):
    """Sequences of non-negative integers (any numeric dtype), as float64 copies."""
    out = []
    for i, s in enumerate(seqs):
        if s.dtype.kind not in "biuf":
            raise ValueError(f"sequence {i} of X must hold numbers, got dtype {s.dtype}.")
        arr = np.asarray(s, np.float64)
        if np.isnan(arr).any():
            raise ValueError(f"sequence {i} of X contains NaN; {what} must be non-negative integers. Remove or impute them.")
        if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
            raise ValueError(f"sequence {i} of X holds non-integer values; {what} must be non-negative integers.")
        if np.any(arr < 0):
            raise ValueError(f"sequence {i} of X holds negative values (min {arr.min():g}); {what} must be "
                             "non-negative integers.")
        out.append(arr)
    return out


def broadcast_prior(value, shape, name: str) -> np.ndarray:
    """``value`` broadcast to ``shape`` as float64, or a ValueError naming ``name``."""
    arr = np.asarray(value, np.float64)
    try:
        return np.broadcast_to(arr, shape)
    except ValueError:
        raise ValueError(f"{name} must be a number or broadcast to {tuple(shape)}, got shape {arr.shape}.") from None


class _DiscreteHMM(BaseHMM):
    """The hyper-parameters common to the discrete HMMs (not used directly)."""

    def _format_samples(self, X):
        return np.rint(X).astype(np.int64)

    def _given(self, name, letter, shape):
        """The user-set attribute ``name`` when ``letter`` is not in ``init_params``."""
        if not hasattr(self, name):
            raise ValueError(f"init_params lacks {letter!r}, so {name} must be set before fit.")
        value = np.array(getattr(self, name), dtype=np.float64)
        if value.shape != tuple(shape):
            raise ValueError(f"{name} must have shape {tuple(shape)}, got {value.shape}.")
        return value


class CategoricalHMM(_DiscreteHMM):
    """Hidden Markov model with categorical (discrete symbol) emissions.

    Each step emits one symbol ``x_t in {0, ..., M-1}`` with probability
    ``emissionprob_[z_t, x_t]`` (Rabiner 1989, sections II-III). Baum-Welch
    updates ``emissionprob_[k, m]`` to the expected number of times state
    ``k`` emitted ``m`` over the expected time spent in ``k`` (Rabiner 1989
    eq. 40c), or its Dirichlet MAP version (see
    :mod:`lateo.families.categorical`).

    Parameters
    ----------
    n_components : int, default=1
        Number of hidden states ``K``.
    startprob_prior, transmat_prior, emissionprob_prior : float or array, default=1.0
        Dirichlet concentrations (1 = maximum likelihood; zeros stay zero).
    n_features : int, optional
        Number of symbols ``M``; if None, ``emissionprob_.shape[1]`` when it
        is given, else ``max(X) + 1``.
    algorithm : {"viterbi", "map"}, default="viterbi"
    random_state : int, numpy RNG or JAX key, optional
    n_iter : int, default=10
    tol : float, default=1e-2
    params, init_params : str, default="ste"
        Letters: "s" start probabilities, "t" transitions, "e" emission
        probabilities. Set ``emissionprob_`` before ``fit`` and leave "e"
        out of ``init_params`` to start from it.
    implementation : {"auto", "log", "scaling", "parallel"}, default="auto"
        Sequential or parallel-in-time passes (see :class:`lateo.models.hmm.GaussianHMM`).
    dtype : {"float64", "float32"}, default="float64"
    progress : {"auto", True, False}, default="auto"
    em_algorithm, batch_size, step_size
        Online EM over minibatches of sequences, as
        :class:`lateo.models.hmm.GaussianHMM`; with a stream of chunks set
        ``n_features`` (the symbols are resolved from the first chunk otherwise).

    Attributes
    ----------
    startprob_ (K,), transmat_ (K, K), emissionprob_ (K, M)
    converged_, n_iter_, lower_bounds_

    Notes
    -----
    ``X`` has shape (n_samples, 1) (or 1-D), holding integer symbols
    (integer or integral float dtype). ``n_features`` is not modified by
    ``fit`` (scikit-learn's convention; hmmlearn overwrites it); the number
    of symbols of a fitted model is ``emissionprob_.shape[1]``.
    ``emissionprob_`` is initialised with uniform random rows, normalised
    (hmmlearn's rule), drawn from ``random_state``.
    """

    _emission_letters = "e"

    def __init__(self, n_components=1, *, startprob_prior=1.0, transmat_prior=1.0, emissionprob_prior=1.0,
                 n_features=None, algorithm="viterbi", random_state=None, n_iter=10, tol=1e-2, params="ste",
                 init_params="ste", implementation="auto", dtype="float64", progress="auto", em_algorithm="batch",
                 batch_size=16, step_size=None):  # fmt: skip
        self._store_init_args(locals())

    def _validate_hyperparameters(self):
        super()._validate_hyperparameters()
        if self.n_features is not None:
            check_int(self.n_features, name="n_features", low=1)

    def fit(self, X, lengths=None, **kwargs):
        """Baum-Welch (or online EM: ``algorithm``, ``batch_size``, as :meth:`BaseHMM.fit`) on integer
        symbols ``X`` (n_samples, 1); returns ``self``."""
        self._n_symbols = None  # resolved from n_features, emissionprob_ or the data in _initial_emission
        try:
            return super().fit(X, lengths, **kwargs)
        finally:
            del self._n_symbols

    def _symbols(self):
        """The number of symbols ``M``: while fitting, as resolved (None before); otherwise
        the width of ``emissionprob_`` (also for a model restored from its attributes)."""
        if hasattr(self, "_n_symbols"):
            return self._n_symbols
        return np.shape(self.emissionprob_)[1] if hasattr(self, "emissionprob_") else None

    def _check_sequences(self, seqs):
        seqs = check_counts(seqs, "symbols")
        if seqs[0].shape[1] != 1:
            raise ValueError(f"CategoricalHMM expects one symbol per row, X of shape (n_samples, 1); got "
                             f"{seqs[0].shape[1]} columns. Encode each observation as one integer symbol.")
        bound = self._symbols()
        top = max(int(s.max()) for s in seqs)
        if bound is not None and top >= bound:
            raise ValueError(f"the largest symbol in X is {top}, but the model emits symbols 0..{bound - 1} "
                             f"(n_features={bound}); symbols must be < n_features.")
        return seqs

    def _family(self):
        return categorical.CategoricalFamily(int(self._symbols()))

    def _resolve_symbols(self, X) -> int:
        top = int(X.max())
        given = None if "e" in self.init_params or not hasattr(self, "emissionprob_") else np.shape(self.emissionprob_)
        n = self.n_features
        if n is None:
            n = given[-1] if given is not None and len(given) == 2 else top + 1
        if top >= n:
            raise ValueError(f"the largest symbol in X is {top}, but n_features={n}; symbols must be < n_features "
                             "(leave n_features=None to infer it from the data).")
        return int(n)

    def _initial_emission(self, key, X, shift, dtype):
        self._n_symbols = self._resolve_symbols(X)
        shape = (self.n_components, self._n_symbols)
        broadcast_prior(self.emissionprob_prior, shape, "emissionprob_prior")  # fail before compiling
        if "e" in self.init_params:
            raw = jax.random.uniform(key, shape, dtype)
            return categorical.CategoricalParams(raw / raw.sum(axis=1, keepdims=True))
        if not hasattr(self, "emissionprob_"):
            raise ValueError("init_params lacks 'e', so emissionprob_ must be set before fit.")
        return categorical.CategoricalParams(jnp.asarray(check_stochastic(self.emissionprob_, "emissionprob_", shape), dtype))

    def _emission_hyper(self, X, dtype):
        prior = broadcast_prior(self.emissionprob_prior, (self.n_components, self._n_symbols), "emissionprob_prior")
        return categorical.CategoricalHyper(jnp.asarray(prior, dtype))

    def _store_emission(self, emission, shift):
        self.emissionprob_ = np.asarray(emission.emissionprob, np.float64)

    def _emission_from_attributes(self, shift, dtype):
        shape = (self.n_components, self._symbols())
        return categorical.CategoricalParams(jnp.asarray(check_stochastic(self.emissionprob_, "emissionprob_", shape), dtype))

    def _n_emission_parameters(self) -> int:
        k, m = self.emissionprob_.shape
        return k * (m - 1) if "e" in self.params else 0


class PoissonHMM(_DiscreteHMM):
    """Hidden Markov model with independent Poisson count emissions.

    Each step emits ``D`` counts, ``x_td ~ Poisson(lambdas_[z_t, d])``.
    Baum-Welch updates ``lambdas_[k] = sum_t gamma_t(k) x_t / sum_t
    gamma_t(k)`` (seed 004, lectures 2-3), or with hmmlearn's Gamma prior
    ``(lambdas_prior + sum_t gamma_t(k) x_t) / (lambdas_weight + sum_t
    gamma_t(k))`` (see :mod:`lateo.families.poisson`).

    Parameters
    ----------
    n_components : int, default=1
    startprob_prior, transmat_prior : float or array, default=1.0
    lambdas_prior, lambdas_weight : float or array (K, D), default=0.0
        Gamma prior ``a`` (shape) and ``b`` (rate); 0, 0 = maximum likelihood.
    algorithm, random_state, n_iter, tol, implementation, dtype, progress, em_algorithm, batch_size, step_size
        As for :class:`CategoricalHMM`.
    params, init_params : str, default="stl"
        Letters "s", "t" and "l" (``lambdas_``). Set ``lambdas_`` before
        ``fit`` and leave "l" out of ``init_params`` to start from it.

    Attributes
    ----------
    startprob_ (K,), transmat_ (K, K), lambdas_ (K, D)
    converged_, n_iter_, lower_bounds_

    Notes
    -----
    ``lambdas_`` is initialised as hmmlearn does, by drawing from a Gamma
    distribution with the mean and variance of all entries of ``X``
    (method of moments), from ``random_state``; constant data give
    ``lambdas_`` equal to their mean.
    """

    _emission_letters = "l"

    def __init__(self, n_components=1, *, startprob_prior=1.0, transmat_prior=1.0, lambdas_prior=0.0,
                 lambdas_weight=0.0, algorithm="viterbi", random_state=None, n_iter=10, tol=1e-2, params="stl",
                 init_params="stl", implementation="auto", dtype="float64", progress="auto", em_algorithm="batch",
                 batch_size=16, step_size=None):  # fmt: skip
        self._store_init_args(locals())

    def _check_sequences(self, seqs):
        return check_counts(seqs, "Poisson counts")

    def _family(self):
        return poisson.PoissonFamily()

    def _initial_emission(self, key, X, shift, dtype):
        shape = (self.n_components, X.shape[1])
        self._emission_hyper(X, dtype)  # fail on bad priors before compiling
        if "l" in self.init_params:
            mean, var = float(X.mean()), float(X.var())
            if var == 0 or mean == 0:
                return poisson.PoissonParams(jnp.full(shape, mean, dtype))
            draws = jax.random.gamma(key, mean**2 / var, shape, dtype) * jnp.asarray(var / mean, dtype)
            return poisson.PoissonParams(draws)
        lambdas = self._given("lambdas_", "l", shape)
        if not np.all(np.isfinite(lambdas)) or np.any(lambdas < 0):
            raise ValueError("lambdas_ must hold non-negative finite rates.")
        return poisson.PoissonParams(jnp.asarray(lambdas, dtype))

    def _emission_hyper(self, X, dtype):
        shape = (self.n_components, X.shape[1])
        out = []
        for name in ("lambdas_prior", "lambdas_weight"):
            value = broadcast_prior(getattr(self, name), shape, name)
            if not np.all(np.isfinite(value)) or np.any(value < 0):
                raise ValueError(f"{name} must be non-negative and finite.")
            out.append(jnp.asarray(value, dtype))
        return poisson.PoissonHyper(*out)

    def _store_emission(self, emission, shift):
        self.lambdas_ = np.asarray(emission.lambdas, np.float64)

    def _emission_from_attributes(self, shift, dtype):
        return poisson.PoissonParams(jnp.asarray(self.lambdas_, dtype))

    def _n_emission_parameters(self) -> int:
        return self.lambdas_.size if "l" in self.params else 0


__all__ = ["CategoricalHMM", "PoissonHMM", "check_counts"]
