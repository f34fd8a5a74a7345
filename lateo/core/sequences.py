"""Batches of sequences of different lengths: padded, masked, bucketed.

Sequences are accepted in hmmlearn's convention (rows of all sequences
concatenated, plus ``lengths``) or as a list of arrays. They are grouped into
buckets whose padded length is a power of two (at least 16), and the number
of sequences per bucket is rounded up too (a power of two up to 16, then a
multiple of 16), so that many sequences go through one compiled call and a
new length rarely triggers a recompilation. Padding steps and padding
sequences carry ``length`` masks; inference ignores them.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

_MIN_BUCKET_LENGTH = 16


class SequenceBatch(NamedTuple):
    """One bucket: ``X`` (S, T, D) zero-padded, ``lengths`` (S,) (0 = padding sequence)."""

    X: jax.Array
    lengths: jax.Array


class Buckets(NamedTuple):
    """All buckets plus where each input sequence went.

    ``batches`` is a tuple of :class:`SequenceBatch`; ``index[i] = (b, s)``
    locates input sequence ``i`` in bucket ``b``, slot ``s``; ``lengths`` are
    the input lengths.
    """

    batches: tuple
    index: tuple
    lengths: tuple


def split_sequences(X, lengths=None, *, name: str = "X") -> list[np.ndarray]:
    """Sequences as a list of 2-D arrays, validated.

    ``X`` is either a list/tuple of arrays (then ``lengths`` must be None) or
    an array of concatenated rows split by ``lengths`` (all rows form one
    sequence when ``lengths`` is None). 1-D sequences become one column.
    """
    if isinstance(X, (list, tuple)) and len(X) and not np.isscalar(X[0]) and np.ndim(X[0]) >= 1:
        if lengths is not None:
            raise ValueError(f"lengths must be None when {name} is a list of sequences (each item is one "
                             f"sequence); pass either a list or concatenated {name} with lengths, not both.")
        seqs = [np.asarray(s) for s in X]
        seqs = [s[:, None] if s.ndim == 1 else s for s in seqs]
    else:
        arr = np.asarray(X)
        if arr.ndim == 1:
            arr = arr[:, None]
        if arr.ndim != 2:
            raise ValueError(f"{name} must be 2-D (n_samples, n_features) or a list of 2-D sequences; got shape {arr.shape}.")
        seqs = _split_by_lengths(arr, lengths, name)
    if not seqs:
        raise ValueError(f"{name} holds no sequence; pass at least one sequence of length >= 1.")
    for i, s in enumerate(seqs):
        if s.ndim != 2:
            raise ValueError(f"sequence {i} of {name} must be 1-D or 2-D, got shape {s.shape}.")
        if s.shape[0] == 0:
            raise ValueError(f"sequence {i} of {name} has length 0; every sequence needs at least one observation.")
        if s.shape[1] != seqs[0].shape[1]:
            raise ValueError(f"all sequences need the same number of features: sequence {i} has {s.shape[1]}, sequence 0 has {seqs[0].shape[1]}.")
    return seqs


def _split_by_lengths(arr, lengths, name):
    if lengths is None:
        return [arr]
    lengths = np.asarray(lengths)
    if lengths.ndim != 1 or lengths.dtype.kind not in "iu":
        raise ValueError(f"lengths must be a 1-D array of integers, got {lengths!r}.")
    if np.any(lengths <= 0):
        raise ValueError(f"lengths must be positive integers: got a sequence of length {int(lengths.min())}; "
                         "every sequence needs at least one observation.")
    if lengths.sum() != arr.shape[0]:
        raise ValueError(f"lengths sum to {int(lengths.sum())} but {name} has {arr.shape[0]} rows; they must be equal.")
    return np.split(arr, np.cumsum(lengths)[:-1])


def _round_up_pow2(n: int, low: int) -> int:
    return max(low, 1 << max(n - 1, 0).bit_length())


def _round_count(n: int) -> int:
    return _round_up_pow2(n, 1) if n <= 16 else -(-n // 16) * 16


def bucket_sequences(seqs, dtype) -> Buckets:
    """Pad sequences into power-of-two length buckets (see the module docstring)."""
    lengths = [s.shape[0] for s in seqs]
    bucket_of = [_round_up_pow2(n, _MIN_BUCKET_LENGTH) for n in lengths]
    batches, index = [], [None] * len(seqs)
    for b, size in enumerate(sorted(set(bucket_of))):
        members = [i for i, t in enumerate(bucket_of) if t == size]
        count = _round_count(len(members))
        X = np.zeros((count, size, seqs[0].shape[1]), dtype=dtype)
        lens = np.zeros(count, dtype=np.int32)
        for slot, i in enumerate(members):
            X[slot, : lengths[i]] = seqs[i]
            lens[slot] = lengths[i]
            index[i] = (b, slot)
        batches.append(SequenceBatch(jnp.asarray(X), jnp.asarray(lens)))
    return Buckets(tuple(batches), tuple(index), tuple(lengths))


def unbucket(values, buckets: Buckets) -> list[np.ndarray]:
    """Per-step outputs, one (S, T, ...) array per bucket, back to a list per sequence."""
    host = [np.asarray(v) for v in values]
    return [host[b][s, :n] for (b, s), n in zip(buckets.index, buckets.lengths)]
