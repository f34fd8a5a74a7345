"""Shared test setup: a project-local JAX compilation cache and shared data."""

import os
from pathlib import Path

os.environ.setdefault("LATEO_CACHE_DIR", str(Path(__file__).resolve().parent.parent / ".jax_cache"))
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import lateo  # noqa: E402,F401  (turns on float64 before any test builds arrays)


@pytest.fixture(scope="session")
def faithful():
    """Old Faithful (272 x 2) as a float array."""
    from lateo.datasets import load_old_faithful

    return load_old_faithful(as_frame=False)


@pytest.fixture(scope="session")
def blobs3():
    """500 x 3 data from 3 overlapping, anisotropic Gaussian clusters, offset from 0."""
    rng = np.random.default_rng(42)
    means = np.array([[0.0, 0.0, 0.0], [3.0, 1.0, -1.0], [-2.0, 3.0, 2.0]]) + 10.0
    covs = [np.diag([1.0, 0.5, 2.0]), np.array([[1.0, 0.6, 0.0], [0.6, 1.0, 0.3], [0.0, 0.3, 0.8]]), 0.4 * np.eye(3)]
    labels = rng.integers(3, size=500)
    X = np.stack([rng.multivariate_normal(means[k], covs[k]) for k in labels])
    return X


@pytest.fixture(scope="module", autouse=True)
def _release_compiled_code():
    """Drop JAX's compiled executables after each test module.

    Every XLA:CPU executable keeps a few memory mappings of its machine code until JAX's caches
    let it go. A long-lived test worker compiles tens of thousands of programs, and past the
    kernel's ``vm.max_map_count`` (65,530 by default) LLVM's next allocation crashes the
    process inside compilation. Clearing the caches per module bounds the count; the
    persistent compilation cache keeps the cost of the programs shared between modules low.
    """
    yield
    import gc

    import jax

    jax.clear_caches()
    gc.collect()


@pytest.fixture(scope="module")
def client():
    """A Dask client on two in-process workers (threads, ``inproc://`` transport): fast, enough for
    the distributed fits' equality and error tests (the suite runs these in their own process)."""
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as c:
        yield c
