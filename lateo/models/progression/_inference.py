r"""Inference with the population fixed: individual posteriors, marginal likelihood, standard errors.

Given :math:`\hat\theta` and the population latents at their means
:math:`\bar w`, subjects are independent, with posterior
:math:`p(z_i \mid y_i) \propto p(y_i \mid z_i; \bar w, \hat\sigma) N(\tau_i; 0, \sigma_\tau^2) N(\xi_i; 0, \sigma_\xi^2)`
on :math:`z_i = (\tau_i, \xi_i) \in \mathbb{R}^2`. Every function here is
vectorised over subjects:

* :func:`posterior_mode`: damped Newton (Levenberg-Marquardt) on each
  subject's log-posterior, with the exact 2x2 Hessians (by two
  forward-over-reverse products); returns the mode and the Laplace covariance.
* :func:`posterior_samples`: random-walk Metropolis started at the mode with
  the Laplace covariance as proposal shape (scaled by :math:`2.38/\sqrt 2`).
* :func:`importance_loglik`: :math:`\log p(y_i; \theta) = \log \int p(y_i, z_i) dz_i`
  by importance sampling from a Student-t (4 degrees of freedom) centred at
  the mode with the Laplace scale, with its Monte Carlo standard error.
* :func:`empirical_information`: the empirical Fisher information of the
  subjects' marginal scores (Delattre & Kuhn 2019), each the exact derivative
  of the subject's Laplace-approximated marginal likelihood: the default for
  standard errors;
* :func:`louis_information`: the observed Fisher information of
  :math:`\varphi = (\bar w, \log\sigma_\tau, \log\sigma_\xi, \log\sigma_k)` by
  Louis' formula (1982), :math:`I = \sum_i E[-\nabla^2 \ell_i] - \mathrm{Cov}(\nabla \ell_i)`
  under the posterior draws, subject by subject (subjects are independent).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from . import _model as M


def log_joint(kind, data: M.Data, theta: M.Theta, population, z):
    """Per-subject :math:`\\log p(y_i, z_i)` with all constants, shape ``(N,)``."""
    tau, xi, sources = M.split_individual(z)
    res2 = M.residual_squares(kind, data, population, tau, xi, sources)
    n_obs = M.sum_visits(data.mask)
    noise = -0.5 * jnp.sum(n_obs * (M.LOG_2PI + 2 * jnp.log(theta.noise_std)) + res2 / theta.noise_std**2, axis=-1)
    prior = M.individual_logprior(theta, tau, xi, sources) - 0.5 * z.shape[-1] * M.LOG_2PI
    prior = prior - jnp.log(theta.tau_std) - jnp.log(theta.xi_std)
    return noise + prior


def solve_small(a, b):
    r"""Solve the batched small systems :math:`a_n x_n = b_n` (``a`` ``(N, d, d)``, ``b`` ``(N, d)``).

    Gaussian elimination with partial pivoting, unrolled over the static dimension ``d`` and
    vectorised over the batch: for the 2x2 to 6x6 systems of the subjects' Newton steps it is
    elementwise arithmetic, where ``jnp.linalg.solve`` calls LAPACK once per subject (20x slower on
    CPU, half the cost of a posterior-mode search). A singular system gives non-finite values, as
    LAPACK's does. Larger ``d`` falls back to ``jnp.linalg.solve``.
    """
    d = a.shape[-1]
    if d > 6:
        return jnp.linalg.solve(a, b[..., None])[..., 0]
    rows = [jnp.concatenate([a[..., i, :], b[..., i, None]], axis=-1) for i in range(d)]
    for col in range(d):
        below = jnp.stack(rows[col:], axis=-2)  # (N, d - col, d + 1)
        pivot = jnp.argmax(jnp.abs(below[..., col]), axis=-1)
        top = jnp.take_along_axis(below, pivot[..., None, None], axis=-2)[..., 0, :]
        for offset in range(1, d - col):  # the pivot row and the current row change places
            rows[col + offset] = jnp.where((pivot == offset)[..., None], rows[col], rows[col + offset])
        rows[col] = top
        for r in range(col + 1, d):
            rows[r] = rows[r] - (rows[r][..., col] / top[..., col])[..., None] * top
    x = [None] * d
    for r in reversed(range(d)):
        acc = rows[r][..., d] - sum((rows[r][..., c] * x[c] for c in range(r + 1, d)), start=jnp.zeros_like(rows[r][..., d]))
        x[r] = acc / rows[r][..., r]
    return jnp.stack(x, axis=-1)


def _grad_hess(fn, z):
    """Per-subject gradient ``(N, 2)`` and Hessian ``(N, 2, 2)`` of a sum of independent terms."""

    def grad(z):
        return jax.grad(lambda z: jnp.sum(fn(z)))(z)

    g = grad(z)
    cols = [jax.jvp(grad, (z,), (jnp.zeros_like(z).at[:, j].set(1.0),))[1] for j in range(z.shape[1])]
    return g, jnp.stack(cols, axis=-1)


def posterior_mode(kind, data, theta, population, init, n_iter: int = 50):
    """Each subject's posterior mode (damped Newton) and its Laplace covariance ``(N, 2, 2)``."""

    def fn(z):
        return log_joint(kind, data, theta, population, z)

    eye = jnp.eye(init.shape[1], dtype=init.dtype)

    def body(_, carry):
        z, damping = carry
        value = fn(z)
        g, h = _grad_hess(fn, z)
        step = solve_small(-h + damping[:, None, None] * eye, g)
        candidate = z + step
        better = fn(candidate) > value
        ok = better & jnp.all(jnp.isfinite(candidate), axis=1)
        z = jnp.where(ok[:, None], candidate, z)
        damping = jnp.clip(jnp.where(ok, damping / 3.0, damping * 4.0), 1e-9, 1e9)
        return z, damping

    z, _ = jax.lax.fori_loop(0, n_iter, body, (init, jnp.full(init.shape[0], 1e-3, init.dtype)))
    _, h = _grad_hess(fn, z)
    neg = -h
    # Keep the Laplace covariance positive definite where the mode is a saddle or flat.
    vals, vecs = jnp.linalg.eigh(neg)
    vals = jnp.maximum(vals, 1e-6)
    cov = jnp.einsum("nij,nj,nkj->nik", vecs, 1.0 / vals, vecs)
    return z, cov


def posterior_samples(key, kind, data, theta, population, mode, cov, n_samples: int, n_warmup: int = 100):
    """``(n_samples, N, 2)`` draws of each subject's posterior by random-walk Metropolis."""

    def fn(z):
        return log_joint(kind, data, theta, population, z)

    chol = jnp.linalg.cholesky(cov) * (2.38 / np.sqrt(2.0))

    def step(carry, key):
        z, value = carry
        k1, k2 = jax.random.split(key)
        eps = jax.random.normal(k1, z.shape, z.dtype)
        proposal = z + jnp.einsum("nij,nj->ni", chol, eps)
        new = fn(proposal)
        accept = jnp.log(jax.random.uniform(k2, value.shape, value.dtype)) < jnp.nan_to_num(new - value, nan=-jnp.inf)
        z = jnp.where(accept[:, None], proposal, z)
        return (z, jnp.where(accept, new, value)), (z, accept)

    keys = jax.random.split(key, n_warmup + n_samples)
    _, (draws, accepted) = jax.lax.scan(step, (mode, fn(mode)), keys)
    return draws[n_warmup:], jnp.mean(accepted[n_warmup:])


def chi_square(key, df: float, shape, dtype):
    r"""Chi-square draws with ``df`` degrees of freedom: :math:`-2 \sum_{k \le df/2} \log U_k` for an
    even integer ``df`` (a sum of exponentials, exact, 25x faster on CPU than the gamma sampler's
    rejection loop), otherwise :math:`2\,\mathrm{Gamma}(df/2)`."""
    half = df / 2.0
    if float(half).is_integer() and 1 <= half <= 8:
        u = jax.random.uniform(key, (int(half), *shape), dtype, minval=jnp.finfo(dtype).tiny)
        return -2.0 * jnp.sum(jnp.log(u), axis=0)
    return 2.0 * jax.random.gamma(key, half, shape, dtype)


def importance_loglik(key, kind, data, theta, population, mode, cov, n_samples: int, df: float = 4.0):
    """Per-subject :math:`\\log p(y_i)` and its Monte Carlo standard error, by importance sampling."""
    n, d = mode.shape
    chol = jnp.linalg.cholesky(cov)
    k1, k2 = jax.random.split(key)
    normal = jax.random.normal(k1, (n_samples, n, d), mode.dtype)
    scale = jnp.sqrt(df / chi_square(k2, df, (n_samples, n), mode.dtype))
    # z = mode + scale L eps (L eps as a broadcast product: d is small)
    z = mode + scale[..., None] * jnp.sum(chol * normal[:, :, None, :], axis=-1)
    # log density of the multivariate t (df, mode, cov) at z; its whitened deviation
    # L^-1 (z - mode) is scale * eps exactly, so no triangular solve
    maha = scale**2 * jnp.sum(normal**2, axis=-1)
    log_det = jnp.sum(jnp.log(jnp.diagonal(chol, axis1=-2, axis2=-1)), axis=-1)
    log_q = (
        jax.scipy.special.gammaln((df + d) / 2) - jax.scipy.special.gammaln(df / 2)
        - 0.5 * d * jnp.log(df * jnp.pi) - log_det - 0.5 * (df + d) * jnp.log1p(maha / df)
    )  # fmt: skip
    log_w = jax.vmap(lambda zz: log_joint(kind, data, theta, population, zz))(z) - log_q
    log_mean = jax.scipy.special.logsumexp(log_w, axis=0) - jnp.log(n_samples)
    w = jnp.exp(log_w - log_mean)  # normalised to mean 1
    se = jnp.std(w, axis=0) / jnp.sqrt(n_samples)  # delta method: sd of log(mean) ~ sd(w) / (mean sqrt(M))
    return log_mean, se


def _phi(theta: M.Theta):
    """Unconstrained parameters in :func:`._model.theta_vector`'s order (t0, positions, speeds, log standard
    deviations, betas) and the map back to :class:`._model.Theta`."""
    pop = theta.population
    flat_pop, unravel = ravel_pytree(pop._replace(betas=None))
    flat_betas, unravel_betas = ravel_pytree(pop.betas)
    logs = jnp.concatenate([jnp.log(jnp.stack([theta.tau_std, theta.xi_std])), jnp.log(theta.noise_std)])
    p, s = flat_pop.size, logs.size

    def to_theta(phi):
        population = unravel(phi[:p])._replace(betas=unravel_betas(phi[p + s :]) if pop.betas is not None else None)
        return M.Theta(population, jnp.exp(phi[p]), jnp.exp(phi[p + 1]), jnp.exp(phi[p + 2 : p + s]))

    return jnp.concatenate([flat_pop, logs, flat_betas]), to_theta


def louis_information(kind, data, theta, draws):
    r"""Observed information of :math:`\varphi` (see :func:`_phi`) by Louis' formula over posterior ``draws``."""
    phi, to_theta = _phi(theta)

    def per_subject(phi, z):
        th = to_theta(phi)
        return log_joint(kind, data, th, th.population, z)

    def moments(z):
        # forward mode: D (or D^2) passes over all subjects, not one reverse pass per subject
        g = jax.jacfwd(per_subject)(phi, z)  # (N, D)
        h = jax.jacfwd(jax.jacfwd(per_subject))(phi, z)  # (N, D, D)
        return g, h

    grads, hess = jax.lax.map(moments, draws)  # (S, N, D), (S, N, D, D)
    mean_g = grads.mean(axis=0)
    cov_g = jnp.einsum("snd,sne->nde", grads - mean_g, grads - mean_g) / (grads.shape[0] - 1)
    info = jnp.sum(-hess.mean(axis=0) - cov_g, axis=0)
    return info, phi


def laplace_scores(kind, data, theta, mode):
    r"""Each subject's marginal score :math:`\nabla_\varphi \log p(y_i; \varphi)` under the Laplace approximation.

    :math:`\log p(y_i) \approx \log p(y_i, \hat z_i) - \tfrac12 \log\det(-\nabla^2_z \log p(y_i, \hat z_i)) + \text{const}`,
    with the mode :math:`\hat z_i(\varphi)` written as one Newton step from the converged mode,
    which has the exact first derivative :math:`-H^{-1} \partial_\varphi \nabla_z` there (implicit
    function theorem). Deterministic: no Monte Carlo noise, which matters because the subjects'
    scores are small differences along weakly identified directions. Returns the scores ``(N, D)``,
    the subjects' Laplace log-marginals ``(N,)`` (without the :math:`\tfrac q2 \log 2\pi`) and :math:`\varphi`.
    """
    phi, to_theta = _phi(theta)
    mode = jax.lax.stop_gradient(mode)

    def marginal(phi):
        th = to_theta(phi)

        def fn(z):
            return log_joint(kind, data, th, th.population, z)

        g, h = _grad_hess(fn, mode)
        z = mode - solve_small(h, g)
        _, h2 = _grad_hess(fn, z)
        value = fn(z) - 0.5 * jnp.linalg.slogdet(-h2)[1]
        return value, value

    scores, values = jax.jacfwd(marginal, has_aux=True)(phi)
    return scores, values, phi


def empirical_information(kind, data, theta, mode):
    r"""Empirical Fisher information :math:`\sum_i (\Delta_i - \bar\Delta)(\Delta_i - \bar\Delta)^\top`
    of the subjects' marginal scores :math:`\Delta_i` (Delattre & Kuhn 2019), here the Laplace
    scores of :func:`laplace_scores`; also returns :math:`\varphi`, the summed score and the Laplace
    log-likelihood (for the Laplace refinement of a fit)."""
    delta, values, phi = laplace_scores(kind, data, theta, mode)
    centred = delta - delta.mean(axis=0)
    return centred.T @ centred, phi, delta.sum(axis=0), values.sum()


def theta_from_phi(theta, phi):
    """:class:`._model.Theta` at unconstrained parameters ``phi`` (the inverse of :func:`_phi`)."""
    return _phi(theta)[1](phi)


def joint_map(kind, data, theta, individual, n_steps: int = 500, learning_rate: float = 0.02):
    r"""Joint posterior mode of the population latents and every subject's :math:`(\tau_i, \xi_i)`.

    Maximises :math:`\sum_i \log p(y_i \mid z_i, w) + \log p(z_i)` over :math:`(w, z)` by Adam,
    with the individual standard deviations held at ``theta``'s and the noise profiled out
    (:math:`\sigma_k^2` = mean squared residual) at every step. A cheap, deterministic start for
    SAEM close to the maximum along the weakly identified directions (the reference time
    against the positions), which the stochastic algorithm would otherwise cross slowly.
    Returns ``(population, individual, noise_std)``.
    """
    import optax

    flat, unravel = ravel_pytree(theta.population)
    n_obs = jnp.maximum(jnp.sum(data.mask, axis=(0, 1)), 1.0)

    def loss(params, noise):
        w, z = params
        th = theta._replace(population=unravel(w), noise_std=noise)
        ll = M.subject_loglik(kind, data, th, th.population, *M.split_individual(z))
        return -(jnp.sum(ll) + jnp.sum(M.individual_logprior(th, *M.split_individual(z)))) / jnp.sum(n_obs)

    def noise_of(params):
        w, z = params
        res2 = jnp.sum(M.residual_squares(kind, data, unravel(w), *M.split_individual(z)), axis=0)
        return jnp.sqrt(jnp.maximum(res2 / n_obs, 1e-12))

    optimiser = optax.adam(learning_rate)

    def step(carry, _):
        params, state = carry
        grads = jax.grad(loss)(params, jax.lax.stop_gradient(noise_of(params)))
        updates, state = optimiser.update(grads, state, params)
        return (optax.apply_updates(params, updates), state), None

    params = (flat, individual)
    (params, _), _ = jax.lax.scan(step, (params, optimiser.init(params)), None, length=n_steps)
    return unravel(params[0]), params[1], noise_of(params)
