r"""The result of :func:`lateo.vi.fit`: a Gaussian on the unconstrained space, pushed through the transforms.

If :math:`q(u) = \mathcal N(\mu, \Sigma)` is the fitted family on the flat
unconstrained vector, the approximate posterior of the constrained
parameters is the law of :math:`x = T(u)`. The unconstrained moments
(``loc``, ``covariance``, ``std``, ``correlation``) are exact; ``mean`` is
:math:`E_q[T(u)]`: exact for real leaves (:math:`\mu`) and ``"positive"``
leaves (log-normal, :math:`e^{\mu_i + \Sigma_{ii}/2}`), a Monte Carlo average
of :data:`MEAN_DRAWS` draws (fixed key, so it is reproducible) for the others.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property, partial

import jax
import jax.numpy as jnp
import numpy as np

from . import families, kl
from .estimators import Problem, elbo
from .transforms import Exp, Identity

MEAN_DRAWS = 20 * 1024
"""Monte Carlo draws behind ``ApproxPosterior.mean`` for leaves with no closed-form mean."""


DRAW_BATCH = 1024
"""Draws per jitted batch in ``sample``: one compilation serves every ``n``."""


@partial(jax.jit, static_argnames=("problem",))
def _draw_batch(problem, params, key):
    """``DRAW_BATCH`` draws: unconstrained ``(B, d)`` and the constrained pytree with a leading axis ``B``."""
    u = problem.draws(params, key, DRAW_BATCH)
    x = jax.vmap(lambda v: problem.layout.constrain(v)[0])(u)
    return u, x


def _draw(problem, params, key, n):
    """``n`` draws as numpy arrays, in batches of ``DRAW_BATCH`` with keys ``fold_in(key, batch)``."""
    batches = [_draw_batch(problem, params, jax.random.fold_in(key, b)) for b in range(-(-n // DRAW_BATCH))]
    u = np.concatenate([np.asarray(b[0]) for b in batches])[:n]
    x = jax.tree_util.tree_map(lambda *leaves: np.concatenate([np.asarray(v) for v in leaves])[:n],
                               *[b[1] for b in batches])  # fmt: skip
    return u, x


@partial(jax.jit, static_argnames=("problem", "n", "estimator"))
def _elbo_estimate(problem, params, key, prior, n, estimator):
    return elbo(problem, params, key, prior, estimator=estimator, num_samples=n)


def _as_key(key):
    from ..._validation import check_random_key

    return check_random_key(key)


@dataclass(frozen=True)
class ApproxPosterior:
    """A fitted Gaussian variational approximation (ADVI).

    Attributes
    ----------
    problem : lateo.inference.vi.estimators.Problem
        Log-density, layout (transforms), family, estimator.
    params : NamedTuple of numpy arrays
        The variational parameters (see :mod:`lateo.inference.vi.families`).
    elbo : numpy.ndarray
        ``(num_steps,)`` the ELBO estimate of every optimisation step (noisy;
        see :meth:`estimate_elbo` for a precise final value).
    prior : tuple or None
        The split-off Gaussian prior ``(loc, scale)`` on the unconstrained vector.
    num_skipped : int
        Steps skipped for a non-finite ELBO or gradient.
    """

    problem: Problem
    params: tuple
    elbo: np.ndarray
    prior: tuple | None
    num_skipped: int

    @property
    def family(self) -> str:
        return self.problem.family.name

    @property
    def dim(self) -> int:
        """Dimension ``d`` of the unconstrained vector."""
        return self.problem.layout.dim

    @property
    def loc(self) -> np.ndarray:
        """``(d,)`` mean of ``q`` on the unconstrained space."""
        return np.asarray(self.params.loc)

    @cached_property
    def covariance(self) -> np.ndarray:
        """``(d, d)`` covariance of ``q`` on the unconstrained space."""
        params = jax.tree_util.tree_map(jnp.asarray, self.params)
        return np.asarray(families.covariance(self.problem.family, params))

    @property
    def std(self) -> np.ndarray:
        """``(d,)`` standard deviations of ``q`` on the unconstrained space."""
        return np.sqrt(np.diag(self.covariance))

    @property
    def correlation(self) -> np.ndarray:
        """``(d, d)`` correlation matrix of ``q`` on the unconstrained space."""
        s = self.std
        return self.covariance / np.outer(s, s)

    @property
    def scale_tril(self) -> np.ndarray:
        """``(d, d)`` lower Cholesky factor of :attr:`covariance`."""
        return np.linalg.cholesky(self.covariance)

    @cached_property
    def coordinate_names(self) -> list:
        """A label for every unconstrained coordinate (``"sigma"``, ``"w[0]"``, ...)."""
        layout, out = self.problem.layout, []
        for name, shape, t in zip(layout.names(), layout.shapes, layout.transforms):
            idx = list(np.ndindex(t.unconstrained_shape(shape)))
            out.extend([name if not i else f"{name}[{','.join(map(str, i))}]" for i in idx])
        return out

    @property
    def unconstrained_mean(self):
        """The mean of ``q`` as a pytree of unconstrained leaves."""
        layout = self.problem.layout
        leaves = [np.asarray(x) for x in layout.unflatten_unconstrained(self.loc)]
        return jax.tree_util.tree_unflatten(layout.treedef, leaves)

    @cached_property
    def mean(self):
        """:math:`E_q[T(u)]` as a pytree in the constrained space (see the module docstring)."""
        layout = self.problem.layout
        _, draws = self.sample(jax.random.key(0), MEAN_DRAWS, return_unconstrained=True)
        mc = [x.mean(axis=0) for x in layout.treedef.flatten_up_to(draws)]
        loc = layout.unflatten_unconstrained(self.loc)
        var = layout.unflatten_unconstrained(np.diag(self.covariance))
        exact = []
        for t, m, mu, v in zip(layout.transforms, mc, loc, var):
            if isinstance(t, Identity):
                m = np.asarray(mu)
            elif isinstance(t, Exp):
                m = np.exp(np.asarray(mu) + 0.5 * np.asarray(v))
            exact.append(np.asarray(m))
        return jax.tree_util.tree_unflatten(layout.treedef, exact)

    def sample(self, key, n: int, return_unconstrained: bool = False):
        """``n`` draws of the constrained parameters: a pytree of numpy arrays with leading axis ``n``.

        Parameters
        ----------
        key : int or jax.Array
        n : int
        return_unconstrained : bool
            Also return the ``(n, d)`` unconstrained draws (first).
        """
        from ..._validation import check_int

        n = check_int(n, name="n", low=1)
        params = jax.tree_util.tree_map(jnp.asarray, self.params)
        u, x = _draw(self.problem, params, _as_key(key), n)
        return (u, x) if return_unconstrained else x

    def estimate_elbo(self, key=0, num_samples: int = 100_000, estimator: str = "standard") -> float:
        """A precise Monte Carlo estimate of the final ELBO (``num_samples`` draws, one batch)."""
        params = jax.tree_util.tree_map(jnp.asarray, self.params)
        prior = None if self.prior is None else tuple(jnp.asarray(p) for p in self.prior)
        return float(_elbo_estimate(self.problem, params, _as_key(key), prior, num_samples, estimator))

    def kl(self, other: ApproxPosterior) -> float:
        r""":math:`D_{KL}(q_{self} \| q_{other})` between two fits on the same unconstrained space (closed form)."""
        if other.dim != self.dim:
            raise ValueError(f"other has dimension {other.dim}, but this approximation has {self.dim}.")
        return float(kl.kl_mvn_tril(self.loc, self.scale_tril, other.loc, other.scale_tril))

    def to_arviz(self, num_samples: int = 1000, key=0):
        """``num_samples`` draws as an ``arviz.InferenceData`` (one chain; one variable per leaf).

        Needs the optional dependency arviz (``pip install "arviz==0.23.*"``).
        """
        try:
            import arviz
        except ImportError as exc:
            raise ImportError('to_arviz needs arviz: pip install "arviz==0.23.*"') from exc
        draws = self.sample(key, num_samples)
        layout = self.problem.layout
        leaves = layout.treedef.flatten_up_to(draws)
        posterior = {name: np.asarray(x)[None] for name, x in zip(layout.names(), leaves)}
        return arviz.from_dict(posterior=posterior, attrs={"inference": f"ADVI ({self.family})"})

    def __repr__(self) -> str:
        last = self.elbo[-min(len(self.elbo), 100):]
        return (f"ApproxPosterior(family={self.family!r}, dim={self.dim}, steps={len(self.elbo)}, "
                f"elbo~{np.nanmean(last):.6g})")  # fmt: skip


__all__ = ["ApproxPosterior", "DRAW_BATCH", "MEAN_DRAWS"]
