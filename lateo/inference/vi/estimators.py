r"""Reparameterised Monte Carlo estimators of the ELBO (seed 003 "SGVI", seed 004 "ELBO").

For a target :math:`\log p(u)` (unnormalised, on the unconstrained space) and
a reparameterised family :math:`u = g_\phi(\varepsilon)`,
:math:`\varepsilon \sim \mathcal N(0, I)`,

.. math:: \mathcal L(\phi) = E_{q_\phi}[\log p(u) - \log q_\phi(u)]
   = E_\varepsilon\big[\log p(g_\phi(\varepsilon)) - \log q_\phi(g_\phi(\varepsilon))\big]
   \le \log \int p,

estimated with ``S`` draws :math:`\varepsilon_1, \dots, \varepsilon_S`:

* ``"standard"``: :math:`\hat{\mathcal L} = \frac1S\sum_s \log p(u_s) - \log q_\phi(u_s)`;
  its gradient differentiates :math:`\log q_\phi` through both :math:`u_s`
  and :math:`\phi`.
* ``"stl"`` (sticking the landing; Roeder, Wu & Duvenaud 2017): the same
  value, but :math:`\log q` is evaluated at :math:`\bot(\phi)` (stop-gradient
  on the variational parameters), which drops the score term
  :math:`-\frac1S \sum_s \nabla_\phi \log q_\phi(u)|_{u = u_s}`. That term
  has expectation zero, so the gradient stays unbiased; when :math:`q = p`
  the remaining path derivative is exactly zero for every draw, so the
  variance vanishes as :math:`q` approaches the posterior.
* ``"analytic"``: :math:`\frac1S\sum_s \log p(u_s) + H[q_\phi]` with the
  Gaussian entropy in closed form (:mod:`lateo.inference.vi.kl`), the
  "closed-form entropy" estimator of Kucukelbir et al. (2017).
* With a Gaussian prior :math:`N(m, \mathrm{diag}(t^2))` on :math:`u` split
  off the target (``prior=``), the ELBO is written as in seed 004,
  :math:`E_q[\log p(y \mid u)] - D_{KL}(q \,\|\, \text{prior})`, with the KL
  in closed form (:mod:`lateo.inference.vi.kl`) and only the likelihood
  estimated by Monte Carlo (as in the VAE's ELBO).
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp

ESTIMATORS = ("stl", "standard", "analytic")


@dataclass(frozen=True)
class Problem:
    """Everything static about one VI fit (hashable: a jit static argument).

    Attributes
    ----------
    logdensity : callable
        The user's log-density (or log-likelihood when ``has_prior``) of a constrained pytree.
    layout : lateo.inference.vi.transforms.Layout
        Constrained pytree <-> flat unconstrained vector.
    family : MeanField, FullRank or LowRank
    estimator : {"stl", "standard", "analytic"}
    num_samples : int
        Monte Carlo draws per ELBO estimate.
    has_prior : bool
        Whether a diagonal Gaussian prior on ``u`` is split off (KL-form ELBO).
    """

    logdensity: object
    layout: object
    family: object
    estimator: str
    num_samples: int
    has_prior: bool

    def target(self, u):
        r""":math:`\log p_x(T(u)) + \log|\det J_T(u)|` for one flat ``u`` (no Jacobian when ``has_prior``:
        the prior is already a density of ``u``)."""
        x, log_det = self.layout.constrain(u)
        value = self.logdensity(x)
        return value if self.has_prior else value + log_det

    def draws(self, params, key, num_samples=None):
        """``(S, d)`` reparameterised draws from ``q`` with noise from ``key``."""
        n = self.num_samples if num_samples is None else num_samples
        noise = jax.random.normal(key, (n, self.family.noise_dim(self.layout.dim)), params.loc.dtype)
        return self.family.sample(params, noise)


def _safe(x):
    """NaN (a log-density evaluated outside its support) becomes -inf."""
    return jnp.where(jnp.isnan(x), -jnp.inf, x)


def elbo(problem: Problem, params, key, prior=None, estimator=None, num_samples=None):
    r"""One Monte Carlo estimate of the ELBO at ``params`` (differentiable in ``params``).

    Parameters
    ----------
    problem : Problem
    params : family parameters (NamedTuple pytree)
    key : jax.Array
        Noise for the ``S`` draws.
    prior : tuple (loc, scale), optional
        The split-off Gaussian prior on ``u``, arrays broadcastable to ``(d,)``
        (required when ``problem.has_prior``).
    estimator : {"stl", "standard", "analytic"}, optional
        Overrides ``problem.estimator`` (the value is the same; the gradient differs).
    num_samples : int, optional
        Overrides ``problem.num_samples``.

    Returns
    -------
    jax.Array
        Scalar estimate; all three estimators have the same expectation.
    """
    estimator = problem.estimator if estimator is None else estimator
    u = problem.draws(params, key, num_samples)
    log_p = _safe(jax.vmap(problem.target)(u))
    fam = problem.family
    if problem.has_prior:
        return jnp.mean(log_p) - fam.kl_to_diag(params, prior[0], prior[1])
    if estimator == "analytic":
        return jnp.mean(log_p) + fam.entropy(params)
    q_params = jax.lax.stop_gradient(params) if estimator == "stl" else params
    return jnp.mean(log_p - fam.log_prob(q_params, u))


def elbo_grad(problem: Problem, params, key, prior=None, estimator=None):
    """``(value, gradient)`` of :func:`elbo` with respect to ``params``."""
    return jax.value_and_grad(lambda p: elbo(problem, p, key, prior, estimator))(params)


__all__ = ["ESTIMATORS", "Problem", "elbo", "elbo_grad"]
