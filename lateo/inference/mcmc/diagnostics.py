"""MCMC convergence diagnostics on arrays of draws (host-side numpy/scipy).

Univariate diagnostics follow Vehtari, Gelman, Simpson, Carpenter & Bürkner
(2021), "Rank-normalization, folding, and localization: an improved R̂ for
assessing convergence of MCMC", *Bayesian Analysis* 16(2):667-718, and
reproduce ArviZ 0.23 (``arviz.rhat(method="rank")``, ``arviz.ess`` with
``method="bulk" | "tail" | "mean"``, ``arviz.mcse`` with ``method="mean" |
"sd"``) to floating-point rounding. The multivariate ESS is the batch-means
estimator of Vats, Flegal & Jones (2019), *Biometrika* 106(2):321-337.

Every function takes ``draws`` shaped ``(n_chains, n_draws)`` and returns a
float, or ``(n_chains, n_draws, *param_shape)`` and returns an array of shape
``param_shape`` (one value per scalar parameter). JAX arrays are accepted;
they are copied to the host. Draws must be finite and at least 4 per chain.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence

import numpy as np
from scipy.fft import next_fast_len
from scipy.special import ndtri

from ...exceptions import ConvergenceWarning

__all__ = [
    "check_convergence",
    "ess_bulk",
    "ess_mean",
    "ess_tail",
    "mcse_mean",
    "mcse_sd",
    "multivariate_ess",
    "rhat",
    "summary",
]

#: Thresholds recommended by Vehtari et al. (2021), section 4: R̂ below 1.01 and
#: bulk/tail ESS above 400 (100 per chain for 4 chains).
RHAT_THRESHOLD = 1.01
ESS_THRESHOLD = 400.0


# --------------------------------------------------------------------------- validation
def _check_draws(draws, *, name: str = "draws", min_ndim: int = 2) -> np.ndarray:
    """``draws`` as a finite float64 array of ndim >= ``min_ndim`` with >= 4 draws."""
    try:
        arr = np.asarray(draws, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be an array of numbers; could not convert it ({exc}).") from exc
    if arr.ndim < min_ndim:
        shape = "(n_chains, n_draws, n_params)" if min_ndim == 3 else "(n_chains, n_draws, *param_shape)"
        raise ValueError(
            f"{name} must be an array of shape {shape} with at least {min_ndim} dimensions; got {arr.ndim}-D "
            f"with shape {arr.shape}. For a single chain of draws x, pass x[None, ...]."
        )
    if arr.shape[0] < 1 or arr.shape[1] < 4:
        raise ValueError(
            f"{name} must hold at least 1 chain of at least 4 draws; got shape {arr.shape} "
            f"({arr.shape[0]} chain(s) of {arr.shape[1]} draw(s)). Run the sampler for longer."
        )
    if not np.all(np.isfinite(arr)):
        bad = int(np.sum(~np.isfinite(arr)))
        raise ValueError(
            f"{name} contains {bad} NaN or infinite value(s); diagnostics need finite draws. "
            "Check the sampler for divergences or overflow before diagnosing convergence."
        )
    return arr


def _per_parameter(func, draws, name="draws"):
    """Apply ``func`` (on one (n_chains, n_draws) array) to every scalar parameter."""
    arr = _check_draws(draws, name=name)
    if arr.ndim == 2:
        return float(func(arr))
    flat = arr.reshape(arr.shape[0], arr.shape[1], -1)
    out = np.array([func(flat[:, :, j]) for j in range(flat.shape[2])], dtype=np.float64)
    return out.reshape(arr.shape[2:])


# --------------------------------------------------------------------------- building blocks
def _split_chains(x: np.ndarray) -> np.ndarray:
    """Split each chain into halves (dropping the middle draw of an odd length): (2m, n//2)."""
    half = x.shape[1] // 2
    return np.vstack((x[:, :half], x[:, x.shape[1] - half :]))


def _z_scale(x: np.ndarray) -> np.ndarray:
    r"""Rank-normalise: :math:`z = \Phi^{-1}((r - 3/8) / (S + 1/4))` over all ``S`` draws.

    ``r`` are average ranks (ties share one); the offset 3/8 is Blom's (1958).
    """
    from scipy.stats import rankdata  # scipy.stats costs a second at import: load it on first use

    ranks = rankdata(x, method="average").reshape(x.shape)
    return ndtri((ranks - 0.375) / (x.size + 0.25))


def _autocov(x: np.ndarray) -> np.ndarray:
    r"""Per-chain autocovariance at every lag by FFT: :math:`\hat\gamma_t = \frac1n\sum_{i}
    (x_i - \bar x)(x_{i+t} - \bar x)` (biased, divisor ``n``), for rows of ``x``."""
    n = x.shape[1]
    m = next_fast_len(2 * n)
    centred = x - x.mean(axis=1, keepdims=True)
    f = np.fft.rfft(centred, n=m, axis=1)
    return np.fft.irfft(f * np.conjugate(f), n=m, axis=1)[:, :n] / n


def _geyer_rho(acov: np.ndarray, mean_var: float, var_plus: float) -> tuple[np.ndarray, int]:
    """Autocorrelations truncated by Geyer's initial positive then monotone sequence."""
    n = acov.shape[1]
    rho = np.zeros(n)
    even, odd = 1.0, 1.0 - (mean_var - np.mean(acov[:, 1])) / var_plus
    rho[0], rho[1] = even, odd
    t = 1
    while t < n - 3 and even + odd > 0.0:  # initial positive sequence: pairs sums > 0
        even = 1.0 - (mean_var - np.mean(acov[:, t + 1])) / var_plus
        odd = 1.0 - (mean_var - np.mean(acov[:, t + 2])) / var_plus
        if even + odd >= 0:
            rho[t + 1], rho[t + 2] = even, odd
        t += 2
    max_t = t - 2
    if even > 0:
        rho[max_t + 1] = even
    t = 1
    while t <= max_t - 2:  # initial monotone sequence: pair sums non-increasing
        if rho[t + 1] + rho[t + 2] > rho[t - 1] + rho[t]:
            rho[t + 1] = rho[t + 2] = (rho[t - 1] + rho[t]) / 2.0
        t += 2
    return rho, max_t


def _ess(x: np.ndarray) -> float:
    r"""Multi-chain ESS of Vehtari et al. (2021), eq. (10)-(11), of an (m, n) array.

    With :math:`W` the mean within-chain variance and :math:`\widehat{\mathrm{var}}^+ =
    \frac{n-1}{n} W + B/n` (``B/n`` the variance of the chain means),
    :math:`\hat\rho_t = 1 - (W - \frac1m\sum_j \hat\gamma_{t,j}) / \widehat{\mathrm{var}}^+`,
    :math:`\hat\tau = -1 + 2\sum_{t=0}^{K}\hat\rho_t` truncated by Geyer (1992), and
    ``ESS = m n / max(tau, 1 / log10(m n))``. A constant array returns ``m n``.
    """
    x = np.asarray(x, dtype=np.float64)
    if np.max(x) - np.min(x) < np.finfo(float).resolution:
        return float(x.size)
    m, n = x.shape
    acov = _autocov(x)
    mean_var = np.mean(acov[:, 0]) * n / (n - 1.0)
    var_plus = mean_var * (n - 1.0) / n
    if m > 1:
        var_plus += np.var(x.mean(axis=1), ddof=1)
    rho, max_t = _geyer_rho(acov, mean_var, var_plus)
    tau = -1.0 + 2.0 * np.sum(rho[: max_t + 1]) + np.sum(rho[max_t + 1 : max_t + 2])
    tau = max(tau, 1.0 / np.log10(x.size))
    return float(x.size / tau)


def _rhat_basic(x: np.ndarray) -> float:
    r"""Classic potential scale reduction :math:`\sqrt{(\frac{n-1}{n} W + B/n) / W}` of (m, n).

    With no within-chain variation (``W = 0``) it is NaN when the chains also
    agree (constant draws: R̂ undefined) and ``inf`` when they do not.
    """
    n = x.shape[1]
    if np.all(np.ptp(x, axis=1) == 0.0):  # W = 0 exactly (np.var would leave rounding noise)
        return float("nan") if np.ptp(x) == 0.0 else float("inf")
    between = n * np.var(x.mean(axis=1), ddof=1)
    within = np.mean(np.var(x, axis=1, ddof=1))
    return float(np.sqrt((between / within + n - 1) / n))


def _rhat_1(x):
    split = _split_chains(x)
    bulk = _rhat_basic(_z_scale(split))
    tail = _rhat_basic(_z_scale(np.abs(split - np.median(split))))
    return max(bulk, tail)


def _ess_quantile_1(x, prob):
    quantile = np.quantile(x, prob)  # type-7 (linear) quantile of all draws, as R and ArviZ
    return _ess(_split_chains((x <= quantile).astype(np.float64)))


def _mcse_sd_1(x):
    sq = (x - x.mean()) ** 2
    ess = _ess(_split_chains(sq))
    evar = sq.mean()
    if evar == 0.0:  # constant draws: the sd (0) is known exactly; ArviZ returns NaN here
        return 0.0
    return float(np.sqrt(((sq**2).mean() - evar**2) / ess / evar / 4.0))


# --------------------------------------------------------------------------- public univariate
def rhat(draws) -> float | np.ndarray:
    r"""Rank-normalised split-R̂: the maximum of the bulk and folded (tail) versions.

    Each chain is split in half; all draws are rank-normalised,
    :math:`z = \Phi^{-1}((r - 3/8)/(S + 1/4))`, and the classic
    :math:`\hat R = \sqrt{\widehat{\mathrm{var}}^+ / W}` is computed on ``z``
    (bulk) and on the rank-normalised folded draws :math:`|x - \mathrm{median}(x)|`
    (tail) (Vehtari et al. 2021, section 4.2, eq. 4-6). Identical to
    ``arviz.rhat(draws, method="rank")`` for two or more chains; for a single
    chain ArviZ returns NaN while this returns the split-R̂ of its two halves.
    Constant draws give NaN (R̂ undefined) and chains that are each constant
    but disagree give ``inf``, without numpy warnings.

    Parameters
    ----------
    draws : array_like, shape (n_chains, n_draws, *param_shape)

    Returns
    -------
    float or ndarray of shape ``param_shape``
        Values above 1.01 signal non-convergence (Vehtari et al. 2021).
    """
    return _per_parameter(_rhat_1, draws)


def ess_bulk(draws) -> float | np.ndarray:
    """Bulk effective sample size: the ESS of the rank-normalised split chains.

    Vehtari et al. (2021), section 4.3; equals ``arviz.ess(draws, method="bulk")``.
    See ``_ess`` for the estimator (autocovariance by FFT, Geyer's initial
    monotone sequence). Returns a float, or one value per scalar parameter.
    """
    return _per_parameter(lambda x: _ess(_z_scale(_split_chains(x))), draws)


def ess_tail(draws, prob: tuple[float, float] = (0.05, 0.95)) -> float | np.ndarray:
    r"""Tail effective sample size: the smaller ESS of the indicators :math:`I(x \le q_{0.05})`
    and :math:`I(x \le q_{0.95})` over the split chains.

    Vehtari et al. (2021), section 4.3; equals ``arviz.ess(draws, method="tail")``.
    ``prob`` gives the two quantile levels.
    """
    lo, hi = prob
    return _per_parameter(lambda x: min(_ess_quantile_1(x, lo), _ess_quantile_1(x, hi)), draws)


def ess_mean(draws) -> float | np.ndarray:
    """Effective sample size for the posterior mean: the ESS of the raw split chains.

    Equals ``arviz.ess(draws, method="mean")``.
    """
    return _per_parameter(lambda x: _ess(_split_chains(x)), draws)


def mcse_mean(draws) -> float | np.ndarray:
    r"""Monte-Carlo standard error of the posterior mean, :math:`\mathrm{sd}(x)/\sqrt{\mathrm{ESS_{mean}}}`.

    ``sd`` is over all draws with ``ddof=1``. Equals ``arviz.mcse(draws, method="mean")``.
    """
    return _per_parameter(lambda x: float(np.std(x, ddof=1) / np.sqrt(_ess(_split_chains(x)))), draws)


def mcse_sd(draws) -> float | np.ndarray:
    r"""Monte-Carlo standard error of the posterior standard deviation.

    With :math:`s_i = (x_i - \bar x)^2`, :math:`\hat v = \bar s`, and
    :math:`\mathrm{Var}(\hat v) \approx (\overline{s^2} - \hat v^2) / \mathrm{ESS_{mean}}(s)`,
    the delta method gives :math:`\mathrm{MCSE}(\mathrm{sd}) = \sqrt{\mathrm{Var}(\hat v) / (4 \hat v)}`.
    Equals ``arviz.mcse(draws, method="sd")`` (ArviZ 0.23).
    """
    return _per_parameter(_mcse_sd_1, draws)


# --------------------------------------------------------------------------- multivariate
def multivariate_ess(draws, batch_size: int | None = None) -> float:
    r"""Multivariate effective sample size by batch means (Vats, Flegal & Jones 2019).

    .. math:: \mathrm{mESS} = N \left(|\Lambda| / |\Sigma|\right)^{1/p}

    with ``N = m n`` the total number of draws, :math:`\Lambda` the sample
    covariance of all draws (``ddof=1``) and :math:`\Sigma` the batch-means
    estimate of the asymptotic covariance in the Markov-chain CLT. Chains are
    pooled by *replicated batch means* (Vats & Knudson 2021, "Revisiting the
    Gelman-Rubin diagnostic", Statist. Sci. 36(4):518): each chain is cut into
    ``a = floor(n / b)`` batches of size ``b`` and

    .. math:: \Sigma = \frac{b}{m a - 1} \sum_{j=1}^{m}\sum_{k=1}^{a}
              (\bar Y_{jk} - \bar Y)(\bar Y_{jk} - \bar Y)^\top,

    :math:`\bar Y` the mean of all draws, so disagreeing chains inflate
    :math:`\Sigma` and lower the ESS. With one chain this is exactly the
    estimator of Vats et al. (2019). Determinants are taken in log space.

    Parameters
    ----------
    draws : array_like, shape (n_chains, n_draws, n_params)
    batch_size : int, optional
        ``b``; default ``floor(sqrt(n_draws))`` (Vats et al. 2019).

    Returns
    -------
    float
    """
    arr = _check_draws(draws, min_ndim=3)
    if arr.ndim != 3:
        raise ValueError(f"draws must have shape (n_chains, n_draws, n_params); got {arr.ndim}-D shape {arr.shape}.")
    m, n, p = arr.shape
    b = int(np.floor(np.sqrt(n))) if batch_size is None else batch_size
    if isinstance(b, bool) or not isinstance(b, (int, np.integer)) or not 1 <= b <= n // 2:
        raise ValueError(f"batch_size must be an integer in [1, n_draws // 2] = [1, {n // 2}], got {batch_size!r}.")
    a = n // b
    grand = arr.reshape(-1, p).mean(axis=0)
    batch_means = arr[:, : a * b].reshape(m, a, b, p).mean(axis=2).reshape(m * a, p) - grand
    sigma = b * (batch_means.T @ batch_means) / (m * a - 1)
    lam = np.atleast_2d(np.cov(arr.reshape(-1, p), rowvar=False, ddof=1))
    sign_l, logdet_l = np.linalg.slogdet(lam)
    sign_s, logdet_s = np.linalg.slogdet(sigma)
    if sign_l <= 0 or sign_s <= 0:
        raise ValueError(
            "draws have a singular covariance (a constant or collinear parameter, or fewer batches than "
            f"parameters: {m * a} batches for {p} parameters); drop redundant parameters or run longer chains."
        )
    return float(m * n * np.exp((logdet_l - logdet_s) / p))


# --------------------------------------------------------------------------- tables
def _flatten_samples(samples, names) -> dict[str, np.ndarray]:
    """Map every scalar parameter label (``theta[0, 1]``) to its (n_chains, n_draws) draws."""
    if isinstance(samples, Mapping):
        keys = list(samples) if names is None else list(names)
        missing = [k for k in keys if k not in samples]
        if missing:
            raise ValueError(f"names {missing} are not keys of samples; available: {sorted(samples)}.")
        out = {}
        for key in keys:
            arr = _check_draws(samples[key], name=f"samples[{key!r}]")
            for idx in np.ndindex(arr.shape[2:]):
                label = key if not idx else f"{key}[{', '.join(map(str, idx))}]"
                out[label] = arr[(slice(None), slice(None), *idx)]
        return out
    arr = _check_draws(samples, name="samples")
    flat = arr.reshape(arr.shape[0], arr.shape[1], -1)
    if names is None:
        names = ["x"] if arr.ndim == 2 else [f"x[{', '.join(map(str, i))}]" for i in np.ndindex(arr.shape[2:])]
    names = list(names)
    if len(names) != flat.shape[2]:
        raise ValueError(f"names must have one label per scalar parameter ({flat.shape[2]}), got {len(names)}.")
    return {label: flat[:, :, j] for j, label in enumerate(names)}


def summary(samples, names: Sequence[str] | None = None):
    """Posterior summary table, one row per scalar parameter.

    Parameters
    ----------
    samples : dict of str to array_like, or array_like
        Draws shaped ``(n_chains, n_draws, *param_shape)``. Array parameters are
        flattened in C order into rows labelled ``name[i, j]``.
    names : sequence of str, optional
        For a dict: which keys to summarise, in order (default: all). For an
        array: one label per scalar parameter (default ``x[i]``).

    Returns
    -------
    pandas.DataFrame
        Columns ``mean``, ``sd`` (``ddof=1``), ``5%``, ``50%``, ``95%`` (linear
        quantiles of all draws pooled), ``mcse_mean``, ``ess_bulk``,
        ``ess_tail``, ``r_hat``.
    """
    rows = {}
    for label, x in _flatten_samples(samples, names).items():
        q05, q50, q95 = np.quantile(x, [0.05, 0.5, 0.95])
        rows[label] = {
            "mean": float(np.mean(x)), "sd": float(np.std(x, ddof=1)),
            "5%": float(q05), "50%": float(q50), "95%": float(q95),
            "mcse_mean": mcse_mean(x), "ess_bulk": ess_bulk(x), "ess_tail": ess_tail(x), "r_hat": rhat(x),
        }  # fmt: skip
    import pandas as pd  # only the summary table needs pandas

    return pd.DataFrame.from_dict(rows, orient="index")


def check_convergence(
    samples,
    names: Sequence[str] | None = None,
    *,
    rhat_threshold: float = RHAT_THRESHOLD,
    ess_threshold: float = ESS_THRESHOLD,
) -> bool:
    """Warn about parameters whose R̂ or ESS fail the recommended thresholds.

    Vehtari et al. (2021, section 4) recommend using draws only when
    rank-normalised split-R̂ < 1.01 and bulk and tail ESS > 400 (e.g. 100 per
    chain for 4 chains). One :class:`lateo.exceptions.ConvergenceWarning` is emitted per failing criterion,
    listing the offending parameters.

    Parameters
    ----------
    samples, names
        As for :func:`summary`.
    rhat_threshold, ess_threshold : float
        Override the recommended 1.01 and 400.

    Returns
    -------
    bool
        True when every parameter passes every check.
    """
    table = summary(samples, names)
    ok = True
    bad_rhat = table.index[table["r_hat"] > rhat_threshold].tolist()
    if bad_rhat:
        ok = False
        worst = table.loc[bad_rhat, "r_hat"].max()
        warnings.warn(
            f"R-hat > {rhat_threshold} for {bad_rhat} (max {worst:.4g}): the chains have not mixed; "
            "run them longer or reparameterise (Vehtari et al. 2021).",
            ConvergenceWarning,
            stacklevel=2,
        )
    for col in ("ess_bulk", "ess_tail"):
        low = table.index[table[col] < ess_threshold].tolist()
        if low:
            ok = False
            worst = table.loc[low, col].min()
            warnings.warn(
                f"{col} < {ess_threshold:g} for {low} (min {worst:.4g}): too few effective draws for "
                "reliable estimates; run the chains longer (Vehtari et al. 2021).",
                ConvergenceWarning,
                stacklevel=2,
            )
    return ok
