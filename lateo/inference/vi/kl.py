r"""Closed-form Kullback-Leibler divergences (seed 004, "KL divergence").

.. math:: D_{KL}(q \,\|\, p) = E_q\Big[\ln \frac{q(X)}{p(X)}\Big] \ge 0 .

* Uniforms (seed 004): for :math:`q = U(a_1, b_1)`, :math:`p = U(a_2, b_2)`,

  .. math:: D_{KL}(q\|p) = \ln\frac{b_2 - a_2}{b_1 - a_1}
     \quad\text{if } [a_1, b_1] \subseteq [a_2, b_2], \quad +\infty \text{ otherwise}

  (outside :math:`p`'s support :math:`\ln q/p = +\infty` on a set of positive
  :math:`q`-mass).
* Gaussians in :math:`k` dimensions (seed 004, derived there from
  :math:`E_q[(x-\mu_p)^T \Sigma_p^{-1} (x-\mu_p)] = \mathrm{tr}(\Sigma_p^{-1}\Sigma_q) +
  (\mu_q-\mu_p)^T\Sigma_p^{-1}(\mu_q-\mu_p)`):

  .. math:: D_{KL}(\mathcal N(\mu_q,\Sigma_q)\|\mathcal N(\mu_p,\Sigma_p)) = \tfrac12\Big[
     \ln\frac{|\Sigma_p|}{|\Sigma_q|} - k + \mathrm{tr}(\Sigma_p^{-1}\Sigma_q)
     + (\mu_q-\mu_p)^T\Sigma_p^{-1}(\mu_q-\mu_p)\Big],

  with the univariate and diagonal cases written out so no matrix is formed.
  The full-covariance version works on Cholesky factors: with
  :math:`\Sigma = L L^T`, :math:`\ln|\Sigma| = 2\sum_i \ln L_{ii}`,
  :math:`\mathrm{tr}(\Sigma_p^{-1}\Sigma_q) = \|L_p^{-1} L_q\|_F^2` and the
  Mahalanobis term is :math:`\|L_p^{-1}(\mu_q - \mu_p)\|^2` (two triangular solves).

The argument order is always ``(q, p)``: the divergence of the first
distribution from the second. Everything is written in ``jax.numpy`` (jittable,
differentiable) and broadcasts over leading batch axes.
"""

from __future__ import annotations

import jax.numpy as jnp
from jax.scipy.linalg import solve_triangular


def kl_uniform(a1, b1, a2, b2):
    r""":math:`D_{KL}(U(a_1, b_1) \| U(a_2, b_2))`; ``inf`` when :math:`[a_1, b_1] \not\subseteq [a_2, b_2]`.

    Parameters
    ----------
    a1, b1 : array_like
        Support of ``q``, ``a1 < b1``.
    a2, b2 : array_like
        Support of ``p``, ``a2 < b2``.

    Returns
    -------
    jax.Array
        :math:`\ln\frac{b_2 - a_2}{b_1 - a_1}` where the support of ``q`` lies in
        that of ``p``, :math:`+\infty` elsewhere (seed 004).
    """
    a1, b1, a2, b2 = (jnp.asarray(v, dtype=jnp.result_type(float)) for v in (a1, b1, a2, b2))
    inside = (a2 <= a1) & (b1 <= b2)
    return jnp.where(inside, jnp.log(b2 - a2) - jnp.log(b1 - a1), jnp.inf)


def kl_normal(loc_q, scale_q, loc_p, scale_p):
    r"""Univariate :math:`D_{KL}(\mathcal N(\mu_q, \sigma_q^2) \| \mathcal N(\mu_p, \sigma_p^2))`, elementwise.

    .. math:: \ln\frac{\sigma_p}{\sigma_q} + \frac{\sigma_q^2 + (\mu_q - \mu_p)^2}{2\sigma_p^2} - \frac12

    Parameters
    ----------
    loc_q, scale_q, loc_p, scale_p : array_like
        Means and standard deviations (``scale > 0``); broadcast together.
    """
    loc_q, scale_q, loc_p, scale_p = (jnp.asarray(v, dtype=jnp.result_type(float))
                                      for v in (loc_q, scale_q, loc_p, scale_p))  # fmt: skip
    ratio = scale_q / scale_p
    return -jnp.log(ratio) + 0.5 * (ratio**2 + ((loc_q - loc_p) / scale_p) ** 2) - 0.5


def kl_diag_normal(loc_q, scale_q, loc_p, scale_p):
    r""":math:`D_{KL}` between Gaussians with diagonal covariances: the sum over the last axis of :func:`kl_normal`.

    Parameters
    ----------
    loc_q, scale_q : array_like, shape (..., k)
        Mean and standard deviations of ``q``.
    loc_p, scale_p : array_like, broadcastable to (..., k)
        Mean and standard deviations of ``p``.
    """
    return jnp.sum(kl_normal(loc_q, scale_q, loc_p, scale_p), axis=-1)


def kl_mvn(loc_q, cov_q, loc_p, cov_p):
    r""":math:`D_{KL}(\mathcal N(\mu_q, \Sigma_q) \| \mathcal N(\mu_p, \Sigma_p))` with full covariances (seed 004).

    Parameters
    ----------
    loc_q, loc_p : array_like, shape (..., k)
    cov_q, cov_p : array_like, shape (..., k, k)
        Symmetric positive-definite covariances.

    See Also
    --------
    kl_mvn_tril : the same from Cholesky factors (cheaper and more accurate).
    """
    return kl_mvn_tril(loc_q, jnp.linalg.cholesky(jnp.asarray(cov_q)), loc_p, jnp.linalg.cholesky(jnp.asarray(cov_p)))


def kl_mvn_tril(loc_q, tril_q, loc_p, tril_p):
    r""":math:`D_{KL}(\mathcal N(\mu_q, L_q L_q^T) \| \mathcal N(\mu_p, L_p L_p^T))` from lower Cholesky factors.

    .. math:: \sum_i \ln\frac{(L_p)_{ii}}{(L_q)_{ii}} + \tfrac12\Big[\|L_p^{-1} L_q\|_F^2
       + \|L_p^{-1}(\mu_q - \mu_p)\|^2 - k\Big]

    Parameters
    ----------
    loc_q, loc_p : array_like, shape (..., k)
    tril_q, tril_p : array_like, shape (..., k, k)
        Lower-triangular factors with positive diagonals.
    """
    dtype = jnp.result_type(float)
    loc_q, tril_q, loc_p, tril_p = (jnp.asarray(v, dtype) for v in (loc_q, tril_q, loc_p, tril_p))
    k = loc_q.shape[-1]
    shape = jnp.broadcast_shapes(tril_q.shape, tril_p.shape)
    tril_q, tril_p = jnp.broadcast_to(tril_q, shape), jnp.broadcast_to(tril_p, shape)
    diff = jnp.broadcast_to(loc_q - loc_p, shape[:-1])
    m = solve_triangular(tril_p, tril_q, lower=True)
    z = solve_triangular(tril_p, diff[..., None], lower=True)[..., 0]
    log_det = jnp.sum(jnp.log(jnp.diagonal(tril_p, axis1=-2, axis2=-1)) - jnp.log(jnp.diagonal(tril_q, axis1=-2, axis2=-1)), -1)
    return log_det + 0.5 * (jnp.sum(m**2, axis=(-2, -1)) + jnp.sum(z**2, axis=-1) - k)


def gaussian_entropy_tril(tril):
    r"""Differential entropy of :math:`\mathcal N(\mu, L L^T)` in :math:`k` dimensions:
    :math:`\tfrac k2 (1 + \ln 2\pi) + \sum_i \ln L_{ii}`.

    It is :math:`-D_{KL}` from the Lebesgue measure, the term the ELBO
    :math:`E_q[\ln p] + H[q]` needs when no Gaussian prior is split off.
    """
    tril = jnp.asarray(tril)
    k = tril.shape[-1]
    return 0.5 * k * (1.0 + jnp.log(2 * jnp.pi)) + jnp.sum(jnp.log(jnp.diagonal(tril, axis1=-2, axis2=-1)), -1)


__all__ = ["gaussian_entropy_tril", "kl_diag_normal", "kl_mvn", "kl_mvn_tril", "kl_normal", "kl_uniform"]
