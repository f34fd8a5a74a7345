r"""``ProgressionModel``: disease-progression mixed-effects models fitted by MCMC-SAEM.

Leaspy's data format and model (Schiratti et al. 2017; Koval et al. 2021),
the seed-000 SAEM (:mod:`lateo.algorithms.saem`) on lateo's statistics
loop. See :mod:`lateo.models.progression._model` for the maths.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from ..._config import resolve_dtype
from ..._validation import check_float, check_int, check_option, check_random_key
from ...algorithms import distributed
from ...algorithms.saem import SAEM
from ...core import loop
from ...core.progress import check_progress
from .._base import ParamsMixin, check_is_fitted
from . import _inference as I
from . import _model as M
from ._data import from_dataframe

_BOUNDS = {"logistic": (0.0, 1.0), "linear": None}


def _within_subject_slopes(times, values, mask):
    """Mean over subjects of the least-squares slope of each feature on time (subjects with >= 2 visits)."""
    w = mask
    n = w.sum(1)
    t = times[:, :, None]
    tm = (w * t).sum(1) / np.maximum(n, 1)
    ym = (w * values).sum(1) / np.maximum(n, 1)
    sxy = (w * (t - tm[:, None]) * (values - ym[:, None])).sum(1)
    sxx = (w * (t - tm[:, None]) ** 2).sum(1)
    ok = (n >= 2) & (sxx > 0)
    slopes = np.where(ok, sxy / np.where(ok, sxx, 1.0), np.nan)
    return np.nanmean(slopes, axis=0), tm, ym, n


def _cast_floats(tree, dtype):
    """The floating-point arrays of ``tree`` in ``dtype`` (the others, keys and integers, as they are)."""
    def cast(x):
        return x.astype(dtype) if hasattr(x, "dtype") and jnp.issubdtype(x.dtype, jnp.floating) else x

    return jax.tree_util.tree_map(cast, tree)


class ProgressionModel(ParamsMixin):
    r"""Nonlinear mixed-effects model of disease progression, fitted by MCMC-SAEM.

    Each subject follows the population curve of each feature on its own
    time line :math:`s_{ij} = e^{\xi_i}(t_{ij} - t_0 - \tau_i)`: a shift
    :math:`\tau_i` (onset earlier or later) and an acceleration
    :math:`e^{\xi_i}`, shared by all features (seed 000; Schiratti et al.
    2017, Leaspy).

    Parameters
    ----------
    model : {"logistic", "linear"}
        ``"logistic"``: values in (0, 1), :math:`f_k(s) = 1/(1 + g_k
        e^{-v_k (1+g_k)^2 s / g_k})` (Leaspy's logistic model: position
        :math:`1/(1+g_k)` and speed :math:`v_k` at :math:`t_0`). ``"linear"``:
        :math:`f_k(s) = p_k + v_k s` (seed 000).
    n_iter : int, default=1000
        SAEM iterations (overridden by ``fit(..., n_iter=)``).
    burn_in : float or int, default=0.5
        Burn-in iterations with step size 1, as a fraction of ``n_iter`` or a count.
    alpha : float, default=0.8
        Decay :math:`\gamma_k = (k - K_1)^{-\alpha}` after burn-in, in (1/2, 1].
    n_chains : int, default=2
        MCMC chains; the statistics are averaged over them, and their
        per-chain parameter traces give R-hat (``rhat_``).
    n_mh_steps : int, default=5
        Metropolis-within-Gibbs sweeps per iteration (fewer mix too slowly from
        the starting point: the noise variance then converges late).
    target_accept : float, default=0.3
        Target acceptance of the adaptive proposals (the seed's 20-60 %).
    annealing : int, default=0
        Simulated-annealing iterations (individual variances inflated, from 4x to 1x).
    variance_prior : None or dict, default=None
        ``None``: maximum likelihood. A dict ``{"dof": nu, "tau_std": s, "xi_std": s,
        "noise_std": s}`` puts scaled-inverse-chi-square(nu, s^2) priors on the
        variances and returns the MAP (seed 000).
    population_prior_std : dict, optional
        Prior standard deviations ``{"t0": ..., "position": ..., "speed": ...}``
        of the population latents around their means (defaults scale with the data).
    n_sources : int, default=0
        Number :math:`Q` of independent sources of space shifts (Leaspy's
        ``source_dimension``; needs several features, :math:`Q \le K - 1`).
        Subject :math:`i`'s curves are moved across features by
        :math:`w_i = A s_i`, :math:`s_i \sim N(0, I_Q)`, with :math:`A = B\beta`
        and :math:`B` a basis orthogonal to the population velocity
        (:func:`._model.shift_basis`), so that the shifts do not duplicate the
        time shift. :math:`A` is identified up to a rotation of the sources
        (a sign when :math:`Q = 1`); ``mixing_matrix_`` reports one.
    population_shrink : float, default=0.1
        Final factor on those prior scales, reached halfway through burn-in
        (:meth:`lateo.algorithms.saem.SAEM.population_scale`): smaller scales
        remove the smoothing of the likelihood, larger ones converge faster
        along weakly identified directions.
    tol : float, optional
        Stop when no parameter moves by more than this relative amount in an
        iteration (after burn-in, when the steps are small). Default: run all ``n_iter``.
    refine : {"laplace", None}, default="laplace"
        After SAEM, climb the Laplace-approximated marginal likelihood (the
        approximation the standard errors use) from the SAEM estimate by BHHH
        steps (Berndt et al. 1974) with step halving, until the expected gain is
        below 1e-6 nats. SAEM's stochastic approximation crosses weakly
        identified directions (the reference time against the logistic
        positions) slowly: on a 3-feature logistic cohort of 500 subjects, 800
        iterations stopped 0.5 years short along that ridge, 4.3 log-likelihood
        units (importance sampling) below the refined estimate. The Laplace
        approximation is itself biased where the subjects' posteriors are far
        from Gaussian (noisy data near the curves' plateaus), so the refined
        estimate is kept only if its importance-sampled marginal likelihood beats
        SAEM's by more than twice the Monte Carlo error (``refine_accepted_``,
        ``refine_loglik_gain_``). ``None`` keeps the raw SAEM estimate (always in
        ``params_saem_``); ``refine_steps_`` and ``refine_gain_`` (Laplace
        log-likelihood gained) report the refinement.
    dtype : {"float64", "float32"}, default="float64"
        Precision of the SAEM iterations (the sampler, its statistics and the
        M-step). ``"float32"`` is Leaspy's precision: faster (1.3-1.6x on
        CPU at 2,000 subjects; the precision to use on GPUs), at the cost of single-precision
        residuals, so keep float64 where the noise is below about 1e-4 of the
        data's scale. The start, the Laplace refinement, the likelihood, the
        standard errors and the reported parameters are computed in float64
        either way (where JAX's 64-bit mode is on).
    random_state : None, int or jax key
    progress : {"auto", True, False}
    id_col, time_col : str
        Column names of the long data frame.

    Attributes
    ----------
    features_ : list of str
    t0_, tau_std_, xi_std_ : float
    position_, speed_, noise_std_ : pandas.Series
        Per feature, on the natural scale: position :math:`p_k` (linear) or
        :math:`g_k` (logistic), speed :math:`v_k`.
    params_ : pandas.Series
        All population parameters.
    individual_parameters_ : pandas.DataFrame
        Index ID; columns ``tau``, ``xi``, ``alpha`` (and ``source_0``, ... with
        sources): the stochastic-approximation average of the draws (after
        burn-in), averaged over chains.
    mixing_matrix_ : pandas.DataFrame
        With sources: :math:`A` (features x sources); a subject's space shifts
        are ``mixing_matrix_ @ sources``.
    traces_ : pandas.DataFrame
        Per-iteration parameters of each chain (MultiIndex columns ``(chain, parameter)``).
    rhat_ : pandas.Series
        R-hat (Gelman & Rubin 1992) across chains of the per-chain parameter
        traces over the second half of burn-in, where each chain's
        parameters are the M-step of its current draw (NaN with one chain).
    objective_ : numpy.ndarray
        Complete-data log-likelihood per observation at each iteration.
    acceptance_rate_ : dict
        Final running acceptance rates: ``individual`` (mean over subjects and
        chains) and ``population`` (the joint population proposal, mean over chains).
    """

    def __init__(self, model="logistic", *, n_iter=1000, burn_in=0.5, alpha=0.8, n_chains=2, n_mh_steps=5,
                 target_accept=0.3, annealing=0, variance_prior=None, population_prior_std=None,
                 n_sources=0, population_shrink=0.1, tol=None, refine="laplace", dtype="float64",
                 random_state=None, progress="auto", id_col="ID", time_col="TIME"):  # fmt: skip
        self._store_init_args(locals())

    # ------------------------------------------------------------------ fit

    def _check_params(self, n_iter):
        check_option(self.model, name="model", options=M.MODELS)
        n_iter = check_int(n_iter, name="n_iter", low=1)
        if isinstance(self.burn_in, float) and 0.0 <= self.burn_in < 1.0:
            burn_in = int(round(self.burn_in * n_iter))
        else:
            burn_in = check_int(self.burn_in, name="burn_in", low=0)
        check_int(self.n_chains, name="n_chains", low=1)
        check_int(self.n_mh_steps, name="n_mh_steps", low=1)
        if not 0.0 < check_float(self.target_accept, name="target_accept", low=0.0, inclusive=False) < 1.0:
            raise ValueError(f"target_accept must lie in (0, 1), got {self.target_accept!r}.")
        check_int(self.annealing, name="annealing", low=0)
        check_int(self.n_sources, name="n_sources", low=0)
        if self.refine not in ("laplace", None):
            raise ValueError(f"refine must be 'laplace' or None, got {self.refine!r}.")
        check_progress(self.progress)
        resolve_dtype(self.dtype)
        return n_iter, burn_in

    def _check_sources(self, n_features):
        q = int(self.n_sources)
        if q > max(n_features - 1, 0):
            raise ValueError(
                f"n_sources must be at most the number of features minus one ({n_features - 1}): space shifts "
                f"live in the {n_features - 1}-dimensional space orthogonal to the population velocity; got {q}. "
                "Lower n_sources or add features."
            )
        return q

    def _arrays(self, ld):
        return M.Data(
            jnp.asarray(ld.times), jnp.asarray(ld.values), jnp.asarray(ld.mask, dtype=float),
            jnp.ones(ld.n_subjects),
        )  # fmt: skip

    def _initial(self, ld):
        """Data-driven start: t0, positions and speeds from the data, tau_i by inverting the curve."""
        kind = self.model
        times, values, mask = ld.times, ld.values, ld.mask.astype(float)
        observed_t = np.repeat(times[:, :, None], values.shape[2], axis=2)[ld.mask]
        t0 = float(observed_t.mean())
        t_sd = float(max(observed_t.std(), 1e-3))
        slope, t_mean_i, y_mean_i, n_i = _within_subject_slopes(times, values, mask)
        y_mean = np.array([values[..., k][ld.mask[..., k]].mean() for k in range(values.shape[2])])
        y_sd = np.array([max(values[..., k][ld.mask[..., k]].std(), 1e-6) for k in range(values.shape[2])])
        slope = np.where(np.isfinite(slope), slope, y_sd / t_sd)
        if kind == "logistic":
            p = np.clip(y_mean, 0.05, 0.95)
            position = np.log((1 - p) / p)
            v = np.maximum(slope, 1e-3 * y_sd / t_sd)
            speed = np.log(v)
            g = np.exp(position)
            rate = v * (1 + g) ** 2 / g
            yc = np.clip(y_mean_i, 0.02, 0.98)
            s_i = (np.log(yc / (1 - yc)) + position) / rate
            pop_std = M.Population(jnp.asarray(0.5 * t_sd), jnp.ones(len(p)), jnp.ones(len(p)))
        else:
            position, speed = y_mean, np.where(np.abs(slope) > 0, slope, y_sd / t_sd)
            s_i = (y_mean_i - position) / speed
            pop_std = M.Population(jnp.asarray(0.5 * t_sd), jnp.asarray(y_sd), jnp.asarray(np.abs(speed)))
        observed = n_i > 0
        tau_i = np.where(observed, t_mean_i - t0 - s_i, 0.0)
        tau_i = np.nanmean(np.where(observed, tau_i, np.nan), axis=1)
        tau_i = np.where(np.isfinite(tau_i), tau_i, 0.0)
        tau_i = tau_i - tau_i.mean()
        tau_std = float(max(tau_i.std(), 0.1 * t_sd))
        q = self._check_sources(values.shape[2])
        betas = None if q == 0 else jnp.zeros((values.shape[2] - 1, q))
        population = M.Population(jnp.asarray(t0), jnp.asarray(position), jnp.asarray(speed), betas)
        if q:  # space shifts are displacements of the curves in the data's units
            pop_std = pop_std._replace(betas=jnp.full((values.shape[2] - 1, q), float(np.mean(y_sd))))
        theta = M.Theta(population, jnp.asarray(tau_std), jnp.asarray(0.5), jnp.asarray(np.maximum(0.5 * y_sd, 1e-3)))
        individual = jnp.concatenate([jnp.stack([jnp.asarray(tau_i), jnp.zeros(ld.n_subjects)], axis=1),
                                      jnp.zeros((ld.n_subjects, q))], axis=1)  # fmt: skip
        return theta, individual, self._population_std(pop_std)

    def _refine_start(self, data, theta, individual):
        """Move the data-driven start to the joint posterior mode (:func:`._inference.joint_map`)."""
        population, z, noise = _joint_map_jit(self.model, data, theta, individual)
        ok = bool(np.all(np.isfinite(np.asarray(z)))) and all(
            np.all(np.isfinite(np.asarray(x))) for x in jax.tree_util.tree_leaves(population)
        )
        if not ok:  # keep the simpler start rather than fail
            return theta, individual
        z = np.asarray(z)
        spread = np.maximum(z[:, :2].std(axis=0), [0.1 * float(theta.tau_std), 0.1])
        theta = theta._replace(population=population, noise_std=jnp.maximum(noise, 1e-6),
                               tau_std=jnp.asarray(spread[0]), xi_std=jnp.asarray(max(spread[1], 0.1)))  # fmt: skip
        return theta, jnp.asarray(z)

    def _population_std(self, default):
        user = self.population_prior_std or {}
        unknown = set(user) - {"t0", "position", "speed", "betas"}
        if unknown:
            raise ValueError(
                f"population_prior_std keys must be among t0, position, speed, betas; got {sorted(unknown)}."
            )
        out = default._asdict()
        for name, value in user.items():
            if name == "betas" and out["betas"] is None:
                continue
            arr = np.asarray(value, float)
            if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
                raise ValueError(f"population_prior_std[{name!r}] must be positive and finite, got {value!r}.")
            out[name] = jnp.broadcast_to(jnp.asarray(arr), np.shape(out[name]))
        return M.Population(**out)

    def _hyper(self, population_std, n_features):
        prior = self.variance_prior
        if prior is None:
            return M.Hyper(population_std, jnp.zeros(3), jnp.ones(2 + n_features), jnp.asarray(0.0))
        if not isinstance(prior, dict) or set(prior) - {"dof", "tau_std", "xi_std", "noise_std"}:
            raise ValueError(
                "variance_prior must be None or a dict with keys dof, tau_std, xi_std, noise_std; "
                f"got {prior!r}."
            )
        dof = float(prior.get("dof", 1.0))
        scales = [prior.get("tau_std", 1.0), prior.get("xi_std", 0.5)]
        noise = np.broadcast_to(np.asarray(prior.get("noise_std", 0.1), float), (n_features,))
        s2 = np.concatenate([np.square(scales), noise**2])
        return M.Hyper(population_std, jnp.full(3, dof), jnp.asarray(s2), jnp.asarray(2.0))

    def fit(self, df, n_iter=None, features=None, *, client=None):
        """Fit the model to a long data frame (``ID``, ``TIME``, one column per feature; NaN = missing).

        Parameters
        ----------
        df : pandas.DataFrame or dask.dataframe.DataFrame
            Leaspy's long format; ID and TIME may also be the index. A Dask DataFrame is fitted
            by distributed MCMC-SAEM with the subjects partitioned over the workers of ``client``
            (every row of a subject in one partition, e.g. ``ddf.set_index("ID")``); the Laplace
            refinement is then skipped (see :mod:`lateo.algorithms.distributed_saem`).
        n_iter : int, optional
            SAEM iterations (default: the ``n_iter`` parameter).
        features : list of str, optional
            Feature columns (default: every other column).
        client : distributed.Client, optional
            For a Dask DataFrame (default: the active ``dask.distributed`` Client).

        Returns
        -------
        self
        """
        if distributed.is_dask_input(df):
            from ...algorithms.distributed_saem import fit_progression

            return fit_progression(self, df, n_iter=n_iter, features=features, client=client)
        n_iter, burn_in = self._check_params(self.n_iter if n_iter is None else n_iter)
        ld = from_dataframe(df, features=features, id_col=self.id_col, time_col=self.time_col,
                            bounds=_BOUNDS[self.model])  # fmt: skip
        data = self._arrays(ld)
        theta, individual, pop_std = self._initial(ld)
        theta, individual = self._refine_start(data, theta, individual)
        hyper = self._hyper(pop_std, ld.n_features)
        saem = self._saem()
        hyper = saem.make_hyper(hyper, burn_in)
        key_chains, key_loop = jax.random.split(check_random_key(self.random_state))
        work = partial(_cast_floats, dtype=resolve_dtype(self.dtype))  # the SAEM iterations' precision
        loop_data, loop_theta, hyper = work(data), work(theta), work(hyper)
        latent = _init_latent_jit(saem, key_chains, loop_theta, loop_data, hyper, work(individual))
        state = loop.init(saem, loop_theta, loop_data, hyper, key_loop, latent)
        tol = -np.inf if self.tol is None else check_float(self.tol, name="tol", low=0.0)
        result = loop.run(saem, state, loop_data, hyper, max_iter=n_iter, tol=tol,
                          progress=self.progress, description=f"SAEM ({self.model})")  # fmt: skip
        result = result._replace(state=_cast_floats(result.state, data.times.dtype))
        theta = result.state.params
        names = M.theta_names(list(ld.features), int(self.n_sources))
        self.params_saem_ = pd.Series(self._natural_scale(M.theta_vector(theta)[None, None], names)[0, 0], index=names)
        self.refine_accepted_ = False
        if self.refine == "laplace":
            individual = jnp.mean(result.state.latent.chains.individual_mean, axis=0)
            refined = self._refine(data, theta, individual)
            if self._refinement_is_better(data, theta, refined, individual):
                theta, self.refine_accepted_ = refined, True
        self._store_fit(ld, result, burn_in, theta)
        return self

    def _saem(self) -> SAEM:
        """The SAEM algorithm of these settings."""
        return SAEM(M.ProgressionFamily(self.model), float(self.alpha), int(self.n_chains), int(self.n_mh_steps),
                    float(self.target_accept), int(self.annealing),
                    population_shrink=check_float(self.population_shrink, name="population_shrink", low=0.0,
                                                  inclusive=False))  # fmt: skip

    def _refinement_is_better(self, data, saem, refined, individual, n_samples=1000):
        """Whether ``refined`` has the higher marginal likelihood, by more than twice the Monte Carlo error.

        Importance sampling (:func:`._inference.importance_loglik`, common random numbers) judges:
        the Laplace approximation the refinement climbs is biased where the subjects' posteriors are
        far from Gaussian (noisy data near the curves' plateaus), and there its maximum can lie below
        SAEM's estimate in the exact likelihood. Sets ``refine_loglik_gain_``.
        """
        key = jax.random.key(0)
        totals = []
        for theta in (saem, refined):
            mode, cov = _mode_jit(self.model, data, theta, individual)
            per_subject, se = _loglik_jit(key, self.model, data, theta, mode, cov, n_samples)
            totals.append((float(jnp.sum(per_subject)), float(jnp.sum(se**2))))
        gain = totals[1][0] - totals[0][0]
        self.refine_loglik_gain_ = gain
        return bool(np.isfinite(gain) and gain > 2.0 * np.sqrt(totals[0][1] + totals[1][1]))

    def _refine(self, data, theta, individual, max_steps=50):
        """BHHH ascent of the Laplace log-likelihood from ``theta`` (see ``refine``)."""
        mode, _ = _mode_jit(self.model, data, theta, individual)
        info, phi, score, value = _empirical_jit(self.model, data, theta, mode)
        self.refine_steps_, start = 0, float(value)
        for _ in range(max_steps):
            info, score = np.asarray(info), np.asarray(score)
            step = np.linalg.lstsq(info, score, rcond=1e-10)[0]  # lstsq: source rotations are not identified
            if not np.all(np.isfinite(step)) or 0.5 * score @ step < 1e-6:
                break
            for fraction in 0.5 ** np.arange(6):
                candidate = I.theta_from_phi(theta, phi + fraction * step)
                cand_mode, _ = _mode_jit(self.model, data, candidate, mode)
                cand = _empirical_jit(self.model, data, candidate, cand_mode)
                if np.isfinite(float(cand[3])) and float(cand[3]) > float(value):
                    theta, mode, (info, phi, score, value) = candidate, cand_mode, cand
                    self.refine_steps_ += 1
                    break
            else:
                break
        self.refine_gain_ = float(value) - start
        return theta

    def _store_fit(self, ld, result, burn_in, theta):
        chains = result.state.latent.chains
        self.features_ = list(ld.features)
        self.n_features_in_ = len(self.features_)
        self.theta_ = jax.tree_util.tree_map(np.asarray, theta)
        self.hyper_ = jax.tree_util.tree_map(np.asarray, result.state.latent.hyper.family)
        self.n_iter_ = result.n_iter
        self.burn_in_ = burn_in
        self.converged_ = result.converged
        self.objective_ = result.history
        n_sources = int(self.n_sources)
        names = M.theta_names(self.features_, n_sources)
        n_chains = int(self.n_chains)
        trace = result.trace.reshape(result.trace.shape[0], n_chains, len(names))
        trace = self._natural_scale(trace, names)
        columns = pd.MultiIndex.from_product([range(n_chains), names], names=["chain", "parameter"])
        self.traces_ = pd.DataFrame(trace.reshape(trace.shape[0], -1), columns=columns)
        self.traces_.index.name = "iteration"
        # During burn-in (gamma = 1) each chain's parameters are the M-step of its current draw: a
        # stationary sequence once the chains have converged, so R-hat over burn-in's second half
        # measures whether they agree.
        self.rhat_ = self._rhat(trace[burn_in // 2 : burn_in], names)
        individual = np.asarray(chains.individual_mean).mean(axis=0)
        ids = pd.Index(ld.ids, name=self.id_col)
        self.individual_parameters_ = self._individual_frame(individual, ids)
        self.acceptance_rate_ = {
            "individual": float(np.asarray(chains.individual_acceptance).mean()),
            "population": float(np.asarray(chains.population_acceptance).mean()),
        }
        self.params_ = pd.Series(self._natural_scale(M.theta_vector(theta)[None, None], names)[0, 0], index=names)
        self.t0_ = float(self.params_["t0"])
        self.position_ = pd.Series([self.params_[f"position[{f}]"] for f in self.features_], index=self.features_)
        self.speed_ = pd.Series([self.params_[f"speed[{f}]"] for f in self.features_], index=self.features_)
        self.tau_std_ = float(self.params_["tau_std"])
        self.xi_std_ = float(self.params_["xi_std"])
        self.noise_std_ = pd.Series([self.params_[f"noise_std[{f}]"] for f in self.features_], index=self.features_)
        if n_sources:
            mixing = np.asarray(M.mixing_matrix(self.model, jax.tree_util.tree_map(jnp.asarray, theta.population)))
            self.mixing_matrix_ = pd.DataFrame(mixing, index=self.features_, columns=self._source_columns())

    def _source_columns(self):
        return [f"source_{q}" for q in range(int(self.n_sources))]

    def _individual_columns(self):
        return ["tau", "xi", *self._source_columns()]

    def _individual_frame(self, z, ids, sd=None):
        """Individual parameters ``z`` ``(N, 2 + Q)`` (and standard deviations) as a data frame."""
        cols = self._individual_columns()
        frame = pd.DataFrame(np.asarray(z)[:, : len(cols)], index=ids, columns=cols)
        frame.insert(2, "alpha", np.exp(frame["xi"]))
        if sd is not None:
            for j, c in enumerate(cols):
                frame[f"{c}_sd"] = np.asarray(sd)[:, j]
        return frame

    def _natural_scale(self, vectors, names):
        """Logistic positions and speeds are stored as logs; report g and v."""
        out = np.array(vectors, dtype=float, copy=True)
        if self.model == "logistic":
            cols = [i for i, n in enumerate(names) if n.startswith(("position[", "speed["))]
            out[..., cols] = np.exp(out[..., cols])
        return out

    @staticmethod
    def _rhat(trace, names):
        """Rank-normalised split R-hat (Vehtari et al. 2021) of each parameter across chains.

        Chains that are each constant but sit at different values get ``inf``
        (they have not mixed), not the NaN of a zero within-chain variance.
        """
        from ...inference.mcmc.diagnostics import rhat

        chains, n = trace.shape[1], trace.shape[0]
        if chains < 2 or n < 8:
            return pd.Series(np.nan, index=names)
        x = np.moveaxis(trace, 0, 1)  # (chains, n, p)
        out = []
        for j in range(x.shape[2]):
            xj = x[:, :, j]
            if np.all(xj.std(axis=1) == 0):
                out.append(1.0 if np.ptp(xj) == 0 else np.inf)
            else:
                out.append(float(rhat(xj)))
        return pd.Series(out, index=names)

    # ------------------------------------------------------------------ predictions

    def _population(self):
        return jax.tree_util.tree_map(jnp.asarray, self.theta_.population)

    def predict(self, df, times=None):
        """Fitted values.

        ``predict(df)``: the fitted curve of each row's subject at the row's
        time, as a data frame aligned with ``df`` (same index and row order),
        one column per feature. ``predict(ids, times)``: for a list of fitted
        subject IDs and a 1-D array of times, a long frame (ID, TIME) x features.
        Subjects must be among the fitted ones.
        """
        check_is_fitted(self, "theta_")
        if times is not None:
            ids = list(df)
            times = np.asarray(times, float).ravel()
            frame = pd.DataFrame({self.id_col: np.repeat(ids, len(times)), self.time_col: np.tile(times, len(ids))})
            frame[self.features_] = np.nan
            return self.predict(frame).assign(**{self.id_col: frame[self.id_col].to_numpy(),
                                                 self.time_col: frame[self.time_col].to_numpy()})
        ld = from_dataframe(df, features=self._frame_features(df), id_col=self.id_col, time_col=self.time_col,
                            on_empty="keep", min_visits=0)  # fmt: skip
        individual = self._individual_for(ld.ids)
        fitted = M.predict(self.model, jnp.asarray(ld.times), self._population(),
                           *M.split_individual(jnp.asarray(individual)))  # fmt: skip
        out = ld.to_frame(np.asarray(fitted))
        return out[self.features_]

    def _frame_features(self, df):
        frame = df.reset_index() if self.id_col not in getattr(df, "columns", []) else df
        return [f for f in self.features_ if f in frame.columns] or None

    def _individual_for(self, ids):
        known = self.individual_parameters_.index
        missing = [i for i in ids if i not in known]
        if missing:
            raise ValueError(
                f"predict needs fitted subjects; IDs {missing[:5]} were not in the training data. "
                "Fit on a data frame that includes them."
            )
        table = self.individual_parameters_.loc[list(ids)]
        return table[self._individual_columns()].to_numpy()

    # ------------------------------------------------------------------ inference with the population fixed

    def _fixed(self, df):
        """Arrays of ``df`` and the fitted parameters as JAX arrays."""
        check_is_fitted(self, "theta_")
        ld = from_dataframe(df, features=self._frame_features(df), id_col=self.id_col, time_col=self.time_col,
                            bounds=_BOUNDS[self.model])  # fmt: skip
        if list(ld.features) != self.features_:
            raise ValueError(f"df must hold the fitted features {self.features_}, got {list(ld.features)}.")
        theta = jax.tree_util.tree_map(jnp.asarray, self.theta_)
        known = self.individual_parameters_.reindex(ld.ids)[self._individual_columns()].fillna(0.0).to_numpy()
        return ld, self._arrays(ld), theta, jnp.asarray(known)

    def _modes(self, df):
        ld, data, theta, init = self._fixed(df)
        mode, cov = _mode_jit(self.model, data, theta, init)
        return ld, data, theta, mode, cov

    def personalize(self, df, method="mode", n_samples=1000, random_state=None):
        r"""Individual parameters of (new) subjects with the population fixed at the fit.

        Parameters
        ----------
        df : pandas.DataFrame
            Long data of the subjects (same features).
        method : {"mode", "mean"}
            ``"mode"``: the posterior mode of :math:`(\tau_i, \xi_i)` (damped Newton), with
            Laplace standard deviations. ``"mean"``: the posterior mean and standard deviation
            from ``n_samples`` Metropolis draws per subject.
        n_samples : int
        random_state : None or int

        Returns
        -------
        pandas.DataFrame
            Index ID; columns ``tau``, ``xi``, ``alpha`` (and the sources), then their standard
            deviations ``tau_sd``, ``xi_sd`` (, ``source_0_sd``, ...).
        """
        check_option(method, name="method", options=("mode", "mean"))
        n_samples = check_int(n_samples, name="n_samples", low=2)
        ld, data, theta, mode, cov = self._modes(df)
        if method == "mode":
            est, sd = np.asarray(mode), np.sqrt(np.asarray(jnp.diagonal(cov, axis1=1, axis2=2)))
        else:
            draws, _ = _samples_jit(check_random_key(random_state), self.model, data, theta, mode, cov, n_samples)
            draws = np.asarray(draws)
            est, sd = draws.mean(axis=0), draws.std(axis=0, ddof=1)
        return self._individual_frame(est, pd.Index(ld.ids, name=self.id_col), sd)

    def loglikelihood(self, df, n_samples=1000, random_state=None, return_se=False):
        r"""Marginal log-likelihood :math:`\sum_i \log \int p(y_i, z_i; \hat\theta) dz_i` of ``df``.

        By importance sampling per subject (Student-t proposal at the posterior mode with the
        Laplace scale), the population latents at their fitted means. With ``return_se`` also
        returns the Monte Carlo standard error.
        """
        total, se, _ = self._loglik(df, n_samples, random_state)
        return (total, se) if return_se else total

    def _loglik(self, df, n_samples, random_state):
        """Total log-likelihood, its Monte Carlo standard error, and the number of subjects."""
        n_samples = check_int(n_samples, name="n_samples", low=10)
        ld, data, theta, mode, cov = self._modes(df)
        per_subject, se = _loglik_jit(check_random_key(random_state), self.model, data, theta, mode, cov, n_samples)
        return float(jnp.sum(per_subject)), float(jnp.sqrt(jnp.sum(se**2))), ld.n_subjects

    def _n_params(self):
        """Free parameters: the betas count less the Q(Q-1)/2 rotations of the sources they are blind to."""
        q = int(self.n_sources)
        return len(self.params_) - q * (q - 1) // 2

    def aic(self, df, n_samples=1000, random_state=None):
        r"""Akaike's criterion :math:`-2 \log L + 2 p` with the importance-sampled likelihood."""
        return -2.0 * self.loglikelihood(df, n_samples, random_state) + 2.0 * self._n_params()

    def bic(self, df, n_samples=1000, random_state=None):
        r"""Schwarz's criterion :math:`-2 \log L + p \log N`, N the number of subjects."""
        total, _, n_subjects = self._loglik(df, n_samples, random_state)
        return -2.0 * total + self._n_params() * np.log(n_subjects)

    def standard_errors(self, df, n_samples=500, random_state=None, method="empirical"):
        r"""Standard errors of the population parameters from the Fisher information.

        ``method="empirical"`` (default): the empirical information of the subjects' marginal
        scores (Delattre & Kuhn 2019), each the exact derivative of the subject's
        Laplace-approximated marginal likelihood (deterministic). ``method="louis"``: Louis'
        formula (1982), :math:`E[-\nabla^2] - \mathrm{Cov}(\nabla)` over ``n_samples`` posterior
        draws of every subject's :math:`(\tau_i, \xi_i)`, exact in the limit but a difference of
        two large Monte Carlo terms, unreliable along weakly identified directions. Both hold
        :math:`\hat\theta` fixed and use :math:`\varphi = (t_0, \text{positions}, \text{speeds},
        \log\sigma_\tau, \log\sigma_\xi, \log\sigma_k)` (the population latents as fixed
        effects), mapped to the reported scale by the delta method. Stored in
        ``standard_errors_`` and returned as a Series indexed like ``params_``.
        """
        n_samples = check_int(n_samples, name="n_samples", low=10)
        check_option(method, name="method", options=("empirical", "louis"))
        _, data, theta, mode, cov = self._modes(df)
        if method == "empirical":
            info = _empirical_jit(self.model, data, theta, mode)[0]
        else:
            draws, _ = _samples_jit(check_random_key(random_state), self.model, data, theta, mode, cov, n_samples)
            info, _ = _louis_jit(self.model, data, theta, draws)
        info = np.asarray(info)
        names = list(self.params_.index)
        rotations = int(self.n_sources) >= 2
        try:
            # With 2+ sources the likelihood is blind to rotations of the sources: the information is
            # singular along directions of the betas only, and the pseudo-inverse still gives the
            # exact variances of the other (identified) parameters.
            var = np.diag(np.linalg.pinv(info) if rotations else np.linalg.inv(info))
        except np.linalg.LinAlgError:
            var = np.full(info.shape[0], np.nan)
        is_beta = np.array([n.startswith("beta[") for n in names])
        var = np.where(is_beta & rotations, np.nan, var)
        se_phi = np.sqrt(np.where(var > 0, var, np.nan))
        # delta method: exp-scale entries (standard deviations; logistic g and v) scale by their value
        log_scale = np.array([n.startswith(("tau_std", "xi_std", "noise_std[")) for n in names])
        if self.model == "logistic":
            log_scale |= np.array([n.startswith(("position[", "speed[")) for n in names])
        value = self.params_.to_numpy()
        self.standard_errors_ = pd.Series(np.where(log_scale, value * se_phi, se_phi), index=names)
        return self.standard_errors_

    def simulate(self, n_subjects, visits, random_state=None):
        """A synthetic cohort from the fitted model (or any set ``theta_``).

        Parameters
        ----------
        n_subjects : int
        visits : array-like
            ``(V,)`` visit times relative to each subject's baseline age
            :math:`t_0 + b_i`, :math:`b_i \\sim N(0, \\sigma_\\tau^2)` drawn independently of
            :math:`\\tau_i` (e.g. ``np.arange(-3, 3)``), or ``(n_subjects, V)`` absolute times.
        random_state : None or int

        Returns
        -------
        data : pandas.DataFrame
            Long format (ID, TIME, features).
        individual : pandas.DataFrame
            The true ``tau``, ``xi`` (and sources) of each simulated subject.
        """
        check_is_fitted(self, "theta_")
        n_subjects = check_int(n_subjects, name="n_subjects", low=1)
        rng = np.random.default_rng(random_state)
        return simulate_cohort(self.model, self.theta_, n_subjects, visits, rng, self.features_,
                               self.id_col, self.time_col)  # fmt: skip


@partial(jax.jit, static_argnames=("saem",))
def _init_latent_jit(saem, key, theta, data, hyper, individual):
    return saem.init_latent(key, theta, data, hyper, theta.population, individual)


@partial(jax.jit, static_argnames=("kind",))
def _joint_map_jit(kind, data, theta, individual):
    return I.joint_map(kind, data, theta, individual)


@partial(jax.jit, static_argnames=("kind",))
def _mode_jit(kind, data, theta, init):
    return I.posterior_mode(kind, data, theta, theta.population, init, n_iter=200)


@partial(jax.jit, static_argnames=("kind", "n_samples"))
def _samples_jit(key, kind, data, theta, mode, cov, n_samples):
    return I.posterior_samples(key, kind, data, theta, theta.population, mode, cov, n_samples)


@partial(jax.jit, static_argnames=("kind", "n_samples"))
def _loglik_jit(key, kind, data, theta, mode, cov, n_samples):
    return I.importance_loglik(key, kind, data, theta, theta.population, mode, cov, n_samples)


@partial(jax.jit, static_argnames=("kind",))
def _louis_jit(kind, data, theta, draws):
    return I.louis_information(kind, data, theta, draws)


@partial(jax.jit, static_argnames=("kind",))
def _empirical_jit(kind, data, theta, mode):
    return I.empirical_information(kind, data, theta, mode)


def simulate_cohort(kind, theta, n_subjects, visits, rng, features, id_col="ID", time_col="TIME"):
    """Simulate a long data frame from ``theta`` (see :meth:`ProgressionModel.simulate`)."""
    visits = np.asarray(visits, float)
    tau = rng.normal(0.0, float(theta.tau_std), n_subjects)
    if visits.ndim == 1:
        # Baselines independent of tau_i: a visit schedule that depended on the latent onset would
        # be informative, and a likelihood that ignores it would be biased.
        baseline = rng.normal(0.0, float(theta.tau_std), n_subjects)
        times = float(np.asarray(theta.population.t0)) + baseline[:, None] + visits[None, :]
    elif visits.shape[0] == n_subjects:
        times = visits
    else:
        raise ValueError(f"visits must be (V,) offsets or (n_subjects, V) times, got shape {visits.shape}.")
    xi = rng.normal(0.0, float(theta.xi_std), n_subjects)
    population = jax.tree_util.tree_map(jnp.asarray, theta.population)
    n_sources = 0 if population.betas is None else population.betas.shape[1]
    sources = rng.normal(size=(n_subjects, n_sources))
    mean = np.asarray(M.predict(kind, jnp.asarray(times), population, jnp.asarray(tau), jnp.asarray(xi),
                                jnp.asarray(sources) if n_sources else None))  # fmt: skip
    values = mean + rng.normal(size=mean.shape) * np.asarray(theta.noise_std, float)
    if kind == "logistic":
        values = np.clip(values, 1e-4, 1 - 1e-4)
    ids = np.repeat(np.arange(n_subjects), times.shape[1])
    frame = pd.DataFrame({id_col: ids, time_col: times.ravel()})
    for k, name in enumerate(features):
        frame[name] = values[..., k].ravel()
    individual = pd.DataFrame({"tau": tau, "xi": xi}, index=pd.Index(np.arange(n_subjects), name=id_col))
    for q in range(n_sources):
        individual[f"source_{q}"] = sources[:, q]
    return frame, individual
