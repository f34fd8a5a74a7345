"""The anisotropic Gaussian-mixture workload shared by the GMM benchmarks."""

from __future__ import annotations

import numpy as np


def anisotropic_mixture(n, d, k, seed=0):
    """``(X, rng)``: ``n`` points from ``k`` anisotropic Gaussians in ``d`` dimensions (offset from 0),
    and the generator, to draw the benchmark's initialisation from the same stream."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=4.0, size=(k, d))
    labels = rng.integers(k, size=n)
    A = rng.normal(size=(k, d, d)) / np.sqrt(d)
    X = rng.normal(size=(n, d))
    for j in range(k):  # component by component: no N x D x D temporary
        rows = labels == j
        X[rows] = X[rows] @ A[j] + centers[j] + 5.0
    return X, rng


def shared_init(X, k, idx):
    """The GMM benchmarks' common start: equal weights, the rows ``idx`` as means, the data precision."""
    d = X.shape[1]
    return dict(weights_init=np.full(k, 1.0 / k), means_init=X[idx],
                precisions_init=np.broadcast_to(np.linalg.inv(np.cov(X, rowvar=False)), (k, d, d)).copy())  # fmt: skip
