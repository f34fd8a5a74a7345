"""Probabilistic PCA as pure functions: closed form, EM with missing values, scoring.

The model (Tipping & Bishop 1999, "Probabilistic principal component
analysis", JRSS-B 61(3); seed 001)::

    z ~ N(0, I_q),   x | z ~ N(W z + mu, sigma^2 I_D),   x ~ N(mu, C),  C = W W^T + sigma^2 I_D.

**Closed form** (Tipping & Bishop 1999, eqs. 7-8): with ``lambda_1 >= ... >=
lambda_D`` and ``U`` the eigen-decomposition of the maximum-likelihood
covariance ``S = (1/N) sum_i (x_i - xbar)(x_i - xbar)^T``,
``sigma^2 = mean(lambda_{q+1..D})`` and ``W = U_q (Lambda_q - sigma^2 I)^{1/2}``
(up to a rotation ``R``, here ``I``).

**EM with missing values** (seed 001's EM; Tipping & Bishop 1999, appendix
B; the missing-data E-step of Ilin & Raiko 2010, "Practical approaches to
principal component analysis in the presence of missing values", JMLR 11).
Row ``i`` observes the coordinates ``O_i`` (mask ``m_id``). With
``M_i = sigma^2 I + W_O^T W_O`` the posterior of ``z_i`` given ``x_{i,O}`` is
``N(M_i^{-1} W_O^T (x_O - mu_O), sigma^2 M_i^{-1})``. Writing ``z~ = (z, 1)``
and ``w~_d = (w_d, mu_d)`` (row ``d`` of ``[W, mu]``), the complete-data
log-likelihood has the sufficient statistics (sums, additive over rows)::

    A_d = sum_i m_id E[z~_i z~_i^T],   b_d = sum_i m_id x_id E[z~_i],
    c   = sum_i sum_d m_id x_id^2,       n_obs = sum_i sum_d m_id,

and the M-step is ``w~_d = A_d^{-1} b_d``, ``sigma^2 = (c - sum_d w~_d . b_d)
/ n_obs``. With no missing value this is seed 001's EM for ``(W, mu,
sigma)``; its fixed points are the closed form. The objective is the mean
per-row log-likelihood of the observed coordinates,
``log N(x_O | mu_O, W_O W_O^T + sigma^2 I)``, evaluated through ``M_i``
(matrix determinant lemma and Woodbury): ``log det C_OO = (|O| - q) log
sigma^2 + log det M_i`` and ``r^T C_OO^{-1} r = (|r|^2 - r^T W_O M_i^{-1}
W_O^T r) / sigma^2``. Everything is vectorised over the rows of a block.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ..core.blocks import Blocks, block_rows, block_sum

_LOG_2PI = float(np.log(2 * np.pi))


class PPCAParams(NamedTuple):
    """``W`` (D, q) loadings, ``mean`` (D,) and ``noise_variance`` sigma^2 (scalar)."""

    W: jax.Array
    mean: jax.Array
    noise_variance: jax.Array


class PPCAStats(NamedTuple):
    """Sums over rows: ``A`` (D, q+1, q+1), ``b`` (D, q+1), ``c``, ``n_obs`` and, for
    the parameter expansion, ``zz`` = sum E[z~ z~^T] (q+1, q+1) over all rows
    (its last entry is the row count)."""

    A: jax.Array
    b: jax.Array
    c: jax.Array
    n_obs: jax.Array
    zz: jax.Array


def closed_form(X, n_components: int):
    """Maximum-likelihood ``(W, mean, sigma^2, eigenvalues)`` of complete data (numpy).

    ``eigenvalues`` are those of the ``1/N`` sample covariance, descending.
    """
    mean = X.mean(axis=0)
    Xc = X - mean
    cov = Xc.T @ Xc / X.shape[0]
    lam, U = np.linalg.eigh(cov)
    lam, U = np.maximum(lam[::-1], 0.0), U[:, ::-1]
    sigma2 = float(lam[n_components:].mean())
    W = U[:, :n_components] * np.sqrt(np.maximum(lam[:n_components] - sigma2, 0.0))
    return W, mean, sigma2, lam


def _posterior(xb, wb, params: PPCAParams):
    """Per row: mask, residual ``r`` (observed, centred), Cholesky of ``M_i``, ``W_O^T r`` and ``E[z]``."""
    mask = (jnp.isfinite(xb) & (wb[:, None] > 0)).astype(xb.dtype)
    x0 = jnp.where(mask > 0, xb, 0.0)
    r = (x0 - params.mean) * mask
    q = params.W.shape[1]
    M = params.noise_variance * jnp.eye(q, dtype=xb.dtype) + jnp.einsum("bd,di,dj->bij", mask, params.W, params.W)
    L = jnp.linalg.cholesky(M)
    wtr = r @ params.W
    ez = jax.scipy.linalg.cho_solve((L, True), wtr[..., None])[..., 0]
    return mask, x0, r, L, wtr, ez


def _row_log_lik(mask, r, L, wtr, ez, sigma2):
    """``log N(x_O | mu_O, C_OO)`` per row (0 for a row with nothing observed)."""
    n_o = jnp.sum(mask, axis=1)
    q = L.shape[-1]
    logdet = (n_o - q) * jnp.log(sigma2) + 2 * jnp.sum(jnp.log(jnp.diagonal(L, axis1=-2, axis2=-1)), axis=-1)
    quad = (jnp.sum(r * r, axis=1) - jnp.sum(wtr * ez, axis=1)) / sigma2
    return -0.5 * (n_o * _LOG_2PI + logdet + quad)


def _block_stats(xb, wb, params: PPCAParams):
    """Statistics and log-likelihood sum of one block of rows."""
    mask, x0, r, L, wtr, ez = _posterior(xb, wb, params)
    q = params.W.shape[1]
    eye = jnp.broadcast_to(jnp.eye(q, dtype=xb.dtype), L.shape)
    cov_z = params.noise_variance * jax.scipy.linalg.cho_solve((L, True), eye)
    ezz = cov_z + ez[:, :, None] * ez[:, None, :]
    ones = jnp.ones(ez.shape[:1] + (1,), xb.dtype)
    ez_aug = jnp.concatenate([ez, ones], axis=1)
    top = jnp.concatenate([ezz, ez[:, :, None]], axis=2)
    ezz_aug = jnp.concatenate([top, ez_aug[:, None, :]], axis=1)
    stats = PPCAStats(
        A=jnp.einsum("bd,bij->dij", mask, ezz_aug),
        b=jnp.einsum("bd,bi->di", mask * x0, ez_aug),
        c=jnp.sum(mask * x0 * x0),
        n_obs=jnp.sum(mask),
        zz=jnp.einsum("b,bij->ij", wb, ezz_aug),
    )
    log_lik = _row_log_lik(mask, r, L, wtr, ez, params.noise_variance)
    return stats, jnp.sum(jnp.where(wb > 0, log_lik, 0.0))


def e_step(params: PPCAParams, blocks: Blocks):
    """Expected statistics and the total observed-data log-likelihood."""
    return block_sum(_block_stats, blocks, params)


def m_step(stats: PPCAStats, previous: PPCAParams) -> PPCAParams:
    """PX-EM M-step: ``[W, mu]_d = A_d^{-1} b_d``, ``sigma^2 = (c - sum_d w~_d . b_d) / n_obs``,
    then the expansion's reduction ``mu <- mu + W nu``, ``W <- W chol(Sigma_z)``.

    Parameter expansion (Liu, Rubin & Wu 1998, "Parameter expansion to
    accelerate EM", Biometrika 85(4)): let the prior of ``z`` be ``N(nu,
    Sigma_z)`` in the expanded model; its M-step gives ``nu = mean E[z]``,
    ``Sigma_z = mean E[z z^T] - nu nu^T``, and mapping back to ``N(0, I)``
    moves them into ``mu`` and ``W``. The fixed points are EM's (there ``nu =
    0``, ``Sigma_z = I``); the step removes EM's slow mode along the scale
    of ``W`` and stays monotone.
    """
    del previous
    w_aug = jnp.linalg.solve(stats.A, stats.b[..., None])[..., 0]
    sigma2 = (stats.c - jnp.sum(w_aug * stats.b)) / stats.n_obs
    floor = jnp.finfo(stats.c.dtype).eps * stats.c / stats.n_obs
    W, mean = w_aug[:, :-1], w_aug[:, -1]
    n_rows = stats.zz[-1, -1]
    nu = stats.zz[:-1, -1] / n_rows
    cov_z = stats.zz[:-1, :-1] / n_rows - jnp.outer(nu, nu)
    return PPCAParams(W @ jnp.linalg.cholesky(cov_z), mean + W @ nu, jnp.maximum(sigma2, floor))


@dataclass(frozen=True)
class PPCAEM:
    """PPCA (missing values allowed) as a model of the statistics loop; objective: mean log-likelihood."""

    def expected_stats(self, key, params: PPCAParams, data: Blocks, hyper=None):
        del key, hyper  # exact E-step, no hyper-parameters
        stats, log_lik = e_step(params, data)
        return stats, log_lik / data.n_samples

    def m_step(self, stats: PPCAStats, hyper=None, previous=None):
        del hyper
        return m_step(stats, previous)


def _block_scores(xb, params: PPCAParams):
    wb = jnp.ones(xb.shape[0], xb.dtype)
    mask, _, r, L, wtr, ez = _posterior(xb, wb, params)
    return _row_log_lik(mask, r, L, wtr, ez, params.noise_variance), ez


@jax.jit
def score_and_transform(params: PPCAParams, blocks: Blocks):
    """Per-row observed log-likelihood (N_pad,) and posterior mean ``E[z | x_O]`` (N_pad, q)."""
    return block_rows(partial(_block_scores), blocks, params)
