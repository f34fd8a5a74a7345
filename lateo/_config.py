"""Precision policy and the persistent compilation cache.

lateo computes in **float64 by default**, like scikit-learn: EM statistics are
sums over up to millions of points and float32 loses digits that the
differential tests against scikit-learn need. Importing lateo therefore turns
on JAX's 64-bit mode (``jax_enable_x64``). Estimators then take
``dtype="float32"`` to run in single precision (for GPU speed); their inputs
are cast once and every jitted computation stays in that dtype.

Environment switches, read once at import:

``LATEO_ENABLE_X64=0``
    leave JAX's global 64-bit flag alone (then only ``dtype="float32"`` is
    available; asking for float64 raises a clear error).
``LATEO_CACHE_DIR``
    folder of JAX's persistent compilation cache (default
    ``~/.cache/lateo/jax``; ``LATEO_CACHE_DIR=""`` disables it). Compiled fits
    are reused across processes, which is what keeps test suites and CLI
    start-up fast.
"""

from __future__ import annotations

import os
from pathlib import Path

import jax
import numpy as np

_X64_ENV = "LATEO_ENABLE_X64"
_CACHE_ENV = "LATEO_CACHE_DIR"
_DTYPES = {"float64": np.float64, "float32": np.float32}


def _configure() -> None:
    if os.environ.get(_X64_ENV, "1") != "0":
        jax.config.update("jax_enable_x64", True)
    cache = os.environ.get(_CACHE_ENV, str(Path.home() / ".cache" / "lateo" / "jax"))
    if cache:
        try:
            Path(cache).mkdir(parents=True, exist_ok=True)
            jax.config.update("jax_compilation_cache_dir", cache)
            jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
        except OSError:  # read-only home: run without the cache
            pass


def x64_enabled() -> bool:
    """Whether JAX computes in 64-bit here (lateo turns it on at import)."""
    return bool(jax.config.read("jax_enable_x64"))


def resolve_dtype(dtype) -> np.dtype:
    """Map an estimator's ``dtype`` argument to a numpy dtype, or raise.

    Parameters
    ----------
    dtype : {"float64", "float32"} or numpy dtype
        The requested working precision.
    """
    name = np.dtype(dtype).name if not isinstance(dtype, str) else dtype
    if name not in _DTYPES:
        raise ValueError(
            f"dtype must be 'float64' or 'float32', got {dtype!r}; "
            "pass dtype='float32' for single precision."
        )
    if name == "float64" and not x64_enabled():
        raise ValueError(
            "dtype='float64' needs JAX's 64-bit mode, which is off because "
            f"{_X64_ENV}=0; unset it or pass dtype='float32'."
        )
    return np.dtype(_DTYPES[name])


_configure()
