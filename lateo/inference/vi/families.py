r"""Gaussian variational families on a flat unconstrained vector :math:`u \in \mathbb{R}^d`.

Each family is reparameterised (Kingma & Welling 2014; seed 001 and seed 003,
"SGVI"): a draw is a differentiable map of standard normal noise,
:math:`u = \mu + S\varepsilon`, so the ELBO's gradient moves inside the
expectation.

* :class:`MeanField`: :math:`q = \mathcal N(\mu, \mathrm{diag}(\sigma^2))`,
  :math:`\sigma = e^{\omega}` (ADVI's mean-field family; Kucukelbir et al. 2017).
* :class:`FullRank`: :math:`q = \mathcal N(\mu, L L^T)`, :math:`L` lower
  triangular with diagonal :math:`e^{\mathrm{diag}(\Lambda)}` and strictly
  lower part :math:`\Lambda` (ADVI's full-rank family).
* :class:`LowRank`: :math:`q = \mathcal N(\mu, \mathrm{diag}(s^2) + F F^T)`,
  :math:`F \in \mathbb{R}^{d\times r}` (Ong, Nott & Smith 2018): a draw is
  :math:`\mu + s\odot\varepsilon_1 + F\varepsilon_2`, and the density is
  evaluated in :math:`O(d r^2)` with the Woodbury identity and the matrix
  determinant lemma. With :math:`W = \mathrm{diag}(s)^{-1} F`,
  :math:`C = I_r + W^T W = L_C L_C^T` and :math:`y = (u - \mu)/s`:

  .. math:: \ln|\Sigma| = 2\sum_i \ln s_i + 2\sum_j \ln (L_C)_{jj}, \qquad
     (u-\mu)^T\Sigma^{-1}(u-\mu) = \|y\|^2 - \|L_C^{-1} W^T y\|^2 .

Every family is a frozen (hashable) dataclass, so it can be a static
argument of ``jax.jit``; its parameters are a NamedTuple pytree.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.scipy.linalg import solve_triangular

from . import kl

_LOG_2PI = math.log(2 * math.pi)


class MeanFieldParams(NamedTuple):
    loc: jax.Array  # (d,)
    log_scale: jax.Array  # (d,)


class FullRankParams(NamedTuple):
    loc: jax.Array  # (d,)
    raw_tril: jax.Array  # (d, d): strictly lower part of L, log of its diagonal


class LowRankParams(NamedTuple):
    loc: jax.Array  # (d,)
    log_diag: jax.Array  # (d,)
    factor: jax.Array  # (d, r)


def _normal_log_prob(maha, log_det, d):
    return -0.5 * (maha + log_det + d * _LOG_2PI)


@dataclass(frozen=True)
class MeanField:
    r"""Diagonal Gaussian :math:`\mathcal N(\mu, \mathrm{diag}(e^{2\omega}))`."""

    name = "meanfield"

    def init(self, key, loc, scale):
        del key
        return MeanFieldParams(loc, jnp.full_like(loc, jnp.log(scale)))

    def noise_dim(self, d):
        return d

    def sample(self, params, eps):
        """``(n, d)`` draws from ``(n, d)`` standard normal noise."""
        return params.loc + jnp.exp(params.log_scale) * eps

    def log_prob(self, params, u):
        """``log q(u)`` for ``(n, d)`` points."""
        y = (u - params.loc) * jnp.exp(-params.log_scale)
        return _normal_log_prob(jnp.sum(y**2, -1), 2 * jnp.sum(params.log_scale), u.shape[-1])

    def scale_tril(self, params):
        return jnp.diag(jnp.exp(params.log_scale))

    def entropy(self, params):
        return 0.5 * params.loc.shape[-1] * (1 + _LOG_2PI) + jnp.sum(params.log_scale)

    def kl_to_diag(self, params, loc_p, scale_p):
        return kl.kl_diag_normal(params.loc, jnp.exp(params.log_scale), loc_p, scale_p)


@dataclass(frozen=True)
class FullRank:
    r"""Gaussian :math:`\mathcal N(\mu, L L^T)` with a dense Cholesky factor."""

    name = "fullrank"

    def init(self, key, loc, scale):
        del key
        return FullRankParams(loc, jnp.diag(jnp.full_like(loc, jnp.log(scale))))

    def noise_dim(self, d):
        return d

    def scale_tril(self, params):
        raw = params.raw_tril
        return jnp.tril(raw, -1) + jnp.diag(jnp.exp(jnp.diagonal(raw)))

    def sample(self, params, eps):
        return params.loc + eps @ self.scale_tril(params).T

    def log_prob(self, params, u):
        tril = self.scale_tril(params)
        y = solve_triangular(tril, (u - params.loc).T, lower=True)  # (d, n)
        return _normal_log_prob(jnp.sum(y**2, 0), 2 * jnp.sum(jnp.diagonal(params.raw_tril)), u.shape[-1])

    def entropy(self, params):
        return kl.gaussian_entropy_tril(self.scale_tril(params))

    def kl_to_diag(self, params, loc_p, scale_p):
        d = params.loc.shape[-1]
        return kl.kl_mvn_tril(params.loc, self.scale_tril(params), jnp.broadcast_to(loc_p, (d,)),
                              jnp.diag(jnp.broadcast_to(scale_p, (d,))))  # fmt: skip


@dataclass(frozen=True)
class LowRank:
    r"""Gaussian :math:`\mathcal N(\mu, \mathrm{diag}(s^2) + F F^T)`, ``F`` of rank ``rank``."""

    rank: int = 1
    name = "lowrank"

    def init(self, key, loc, scale):
        # F = 0 is a saddle point of the ELBO (it is symmetric in F -> -F): start from a small random factor.
        factor = 0.01 * scale * jax.random.normal(key, (loc.shape[-1], self.rank), loc.dtype)
        return LowRankParams(loc, jnp.full_like(loc, jnp.log(scale)), factor)

    def noise_dim(self, d):
        return d + self.rank

    def sample(self, params, eps):
        d = params.loc.shape[-1]
        return params.loc + jnp.exp(params.log_diag) * eps[..., :d] + eps[..., d:] @ params.factor.T

    def _capacitance(self, params):
        w = params.factor * jnp.exp(-params.log_diag)[:, None]  # diag(s)^-1 F
        return w, jnp.linalg.cholesky(jnp.eye(self.rank, dtype=w.dtype) + w.T @ w)

    def log_prob(self, params, u):
        w, lc = self._capacitance(params)
        y = (u - params.loc) * jnp.exp(-params.log_diag)  # (n, d)
        v = solve_triangular(lc, w.T @ y.T, lower=True)  # (r, n)
        maha = jnp.sum(y**2, -1) - jnp.sum(v**2, 0)
        log_det = 2 * jnp.sum(params.log_diag) + 2 * jnp.sum(jnp.log(jnp.diagonal(lc)))
        return _normal_log_prob(maha, log_det, u.shape[-1])

    def covariance(self, params):
        return jnp.diag(jnp.exp(2 * params.log_diag)) + params.factor @ params.factor.T

    def scale_tril(self, params):
        return jnp.linalg.cholesky(self.covariance(params))

    def entropy(self, params):
        _, lc = self._capacitance(params)
        d = params.loc.shape[-1]
        return 0.5 * d * (1 + _LOG_2PI) + jnp.sum(params.log_diag) + jnp.sum(jnp.log(jnp.diagonal(lc)))

    def kl_to_diag(self, params, loc_p, scale_p):
        d = params.loc.shape[-1]
        return kl.kl_mvn_tril(params.loc, self.scale_tril(params), jnp.broadcast_to(loc_p, (d,)),
                              jnp.diag(jnp.broadcast_to(scale_p, (d,))))  # fmt: skip


FAMILIES = ("meanfield", "fullrank", "lowrank")


def get_family(family, rank=None, dim=None):
    """The family object for ``family`` (``rank`` only for ``"lowrank"``), or a clear error."""
    if family == "meanfield" or family == "fullrank":
        if rank is not None:
            raise ValueError(f"rank is only used by family='lowrank', got rank={rank!r} with family={family!r}.")
        return MeanField() if family == "meanfield" else FullRank()
    if family == "lowrank":
        rank = 1 if rank is None else rank
        if isinstance(rank, bool) or not isinstance(rank, numbers.Integral) or rank < 1 or (dim is not None and rank >= dim):
            bound = f" and < the dimension {dim} (use family='fullrank' for a dense covariance)" if dim else ""
            raise ValueError(f"rank must be an integer >= 1{bound}, got {rank!r}.")
        return LowRank(int(rank))
    raise ValueError(f"family must be one of {list(FAMILIES)}, got {family!r}.")


def covariance(family, params):
    """The covariance matrix of ``q`` (``(d, d)``)."""
    if isinstance(family, LowRank):
        return family.covariance(params)
    tril = family.scale_tril(params)
    return tril @ tril.T
