"""Row blocks: bounded-memory passes over large data inside one jitted call.

Data are padded to ``n_blocks * block_size`` rows and reshaped to
``(n_blocks, block_size, ...)``; a weight of 0 marks padding. A pass over the
data is a ``lax.scan`` over blocks, so intermediates such as an ``N x K``
responsibility matrix never exist for more than one block at a time
(DESIGN.md convention 7). Block sizes are powers of two, so data sets of
similar size share one compiled program.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

#: Bytes of working memory one block may use (per-row floats x 8 x rows).
DEFAULT_BLOCK_BYTES = 4 * 2**20
_MIN_BLOCK_ROWS = 64


class Blocks(NamedTuple):
    """Row-blocked data.

    Attributes
    ----------
    X : array, shape (n_blocks, block_size, n_features)
        The rows, zero-padded at the end.
    weight : array, shape (n_blocks, block_size)
        1 for a real row, 0 for padding.
    n_samples : scalar array
        The number of real rows (as a float of X's dtype).
    """

    X: jax.Array
    weight: jax.Array
    n_samples: jax.Array


def choose_block_size(n_samples: int, floats_per_row: int, block_bytes: int = DEFAULT_BLOCK_BYTES) -> int:
    """Rows per block: a power of two within the memory budget, >= 64.

    Small data sets fit in one block of the next power of two at or above
    ``n_samples``.
    """
    budget_rows = max(block_bytes // (8 * max(floats_per_row, 1)), _MIN_BLOCK_ROWS)
    cap = 1 << (int(budget_rows).bit_length() - 1)
    need = 1 << max(int(n_samples) - 1, 1).bit_length()
    return int(max(min(cap, need), _MIN_BLOCK_ROWS))


def make_blocks(X: np.ndarray, block_size: int, *, shift=None, dtype=np.float64) -> Blocks:
    """Copy ``X - shift`` into padded row blocks of the working dtype.

    The caller's array is read, never modified: the only copy made is the
    padded one.
    """
    X = np.asarray(X)
    n, d = X.shape
    n_blocks = max(-(-n // block_size), 1)
    padded = np.zeros((n_blocks * block_size, d), dtype=dtype)
    if shift is None:
        padded[:n] = X
    else:
        np.subtract(X, np.asarray(shift, dtype=np.float64), out=padded[:n], casting="unsafe")
    weight = np.zeros(n_blocks * block_size, dtype=dtype)
    weight[:n] = 1.0
    return Blocks(
        X=jnp.asarray(padded.reshape(n_blocks, block_size, d)),
        weight=jnp.asarray(weight.reshape(n_blocks, block_size)),
        n_samples=jnp.asarray(n, dtype=dtype),
    )


def block_sum(fn, blocks: Blocks, *args, rows=()):
    """Sum ``fn(X_block, weight_block, *row_slices, *args)`` over all blocks.

    ``fn`` returns a pytree and must already weight each row's contribution
    by ``weight_block`` so that padding contributes zero. ``rows`` is a tuple
    of arrays with a leading ``n_blocks`` axis (per-row labels, block
    indices, ...) whose slice for the current block is passed after the
    weights; ``args`` are passed whole to every block.
    """
    rows = tuple(rows)
    sliced = jax.tree.map(lambda a: a[0], rows)
    first = jax.eval_shape(fn, blocks.X[0], blocks.weight[0], *sliced, *args)
    init = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), first)

    def body(total, block):
        xb, wb, extra = block
        return jax.tree.map(jnp.add, total, fn(xb, wb, *extra, *args)), None

    total, _ = jax.lax.scan(body, init, (blocks.X, blocks.weight, rows))
    return total


def block_rows(fn, blocks: Blocks, *args):
    """Per-row outputs of ``fn(X_block, *args)``, flattened to ``(n_padded, ...)``.

    Trim to the real rows on the host with ``[:n_samples]``.
    """

    def body(_, xb):
        return None, fn(xb, *args)

    _, out = jax.lax.scan(body, None, blocks.X)
    return jax.tree.map(lambda a: a.reshape((-1,) + a.shape[2:]), out)


def to_block_rows(values, blocks: Blocks):
    """Pad per-row host values (n_samples, ...) into the blocks' (n_blocks, B, ...) layout."""
    n_blocks, block_size = blocks.weight.shape
    values = np.asarray(values)
    padded = np.zeros((n_blocks * block_size,) + values.shape[1:], dtype=values.dtype)
    padded[: values.shape[0]] = values
    return jnp.asarray(padded.reshape((n_blocks, block_size) + values.shape[1:]))
