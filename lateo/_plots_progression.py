"""Figures for disease-progression models (re-exported by :mod:`lateo.plots`).

Each function draws several panels and returns the matplotlib ``Figure``.
"""

from __future__ import annotations

import math

import numpy as np

_GRID = 200  # points of the population curve
_SUBJECT_GRID = 25  # points of each individual trajectory
_MAX_COLUMNS = 3


def _check_progression(model, attribute="theta_"):
    from .models._base import check_is_fitted

    check_is_fitted(model, attribute)
    for name in ("features_", "individual_parameters_"):
        if not hasattr(model, name):
            raise TypeError(f"expected a fitted ProgressionModel, got {type(model).__name__} (no {name}).")


def _panels(n, ax=None, *, width=4.2, height=3.4):
    """A figure with ``n`` axes on a grid of at most three columns (or the ``ax`` given), as a flat list."""
    if ax is not None:
        axes = list(np.ravel(np.asarray(ax, dtype=object)))
        if len(axes) != n:
            raise ValueError(f"ax must hold {n} Axes (one per panel), got {len(axes)}.")
        return axes[0].figure, axes
    from .plots import _pyplot

    ncols = min(n, _MAX_COLUMNS)
    nrows = math.ceil(n / ncols)
    fig, grid = _pyplot().subplots(nrows, ncols, figsize=(width * ncols, height * nrows), squeeze=False,
                                   layout="constrained")  # fmt: skip
    axes = list(grid.ravel())
    for extra in axes[n:]:
        fig.delaxes(extra)
    return fig, axes[:n]


def _long_frame(model, df):
    """``df`` with ID and TIME as columns (they may be index levels, as in Leaspy)."""
    import pandas as pd

    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"df must be a pandas DataFrame in long format, got {type(df).__name__}.")
    id_col, time_col = model.id_col, model.time_col
    levels = [c for c in (id_col, time_col) if c not in df.columns and c in [n for n in df.index.names if n]]
    frame = df.reset_index(level=levels) if levels else df
    missing = [c for c in (id_col, time_col) if c not in frame.columns]
    if missing:
        raise ValueError(f"df has no {' / '.join(map(repr, missing))} column (columns: {list(frame.columns)}).")
    return frame


def _choose_subjects(model, frame, ids, max_subjects):
    """The subjects to draw: ``ids``, else up to ``max_subjects`` fitted subjects spread over the sorted IDs."""
    known = model.individual_parameters_.index
    if ids is not None:
        ids = list(ids)
        missing = [i for i in ids if i not in known]
        if missing:
            raise ValueError(f"ids {missing[:5]} are not fitted subjects of the model.")
        return ids
    pool = list(known) if frame is None else [i for i in known if i in set(frame[model.id_col])]
    if max_subjects is None or len(pool) <= max_subjects:
        return pool
    if max_subjects <= 0:
        return []
    keep = np.unique(np.linspace(0, len(pool) - 1, int(max_subjects)).round().astype(int))
    return [pool[i] for i in keep]


def _population_curve(model, times):
    """``(T, K)`` values of the population curves at the average subject (tau = 0, xi = 0)."""
    import jax
    import jax.numpy as jnp

    from .models.progression import _model as M

    population = jax.tree_util.tree_map(jnp.asarray, model.theta_.population)
    zero = jnp.zeros(1)
    return np.asarray(M.predict(model.model, jnp.asarray(times)[None, :], population, zero, zero))[0]


def plot_progression(model, df=None, ids=None, max_subjects=30, ax=None):
    """Spaghetti plot of a fitted progression model: population curves, individual fits and data.

    One panel per feature shows the population curve :math:`f_k(t - t_0)` of
    the average subject (:math:`\\tau = 0`, :math:`\\xi = 0`, thick black), the
    fitted trajectory of each drawn subject over its own visit span
    (``model.predict``) and, given ``df``, its observations as points in the
    same colour.

    Parameters
    ----------
    model : ProgressionModel
        A fitted model.
    df : pandas.DataFrame, optional
        Long data (ID, TIME, features; ID and TIME may be index levels), e.g.
        the training frame. Without it the individual curves span the time
        range of the population curve and no points are drawn.
    ids : sequence, optional
        Fitted subject IDs to draw (default: up to ``max_subjects`` of them,
        evenly spread over the sorted IDs present in ``df``).
    max_subjects : int or None, default=30
        Most subjects drawn when ``ids`` is not given (``None``: all).
    ax : matplotlib Axes or sequence of Axes, optional
        One Axes per feature to draw on (default: a new figure).

    Returns
    -------
    matplotlib.figure.Figure
    """
    import pandas as pd

    _check_progression(model)
    features = list(model.features_)
    id_col, time_col = model.id_col, model.time_col
    frame = None if df is None else _long_frame(model, df)
    subjects = _choose_subjects(model, frame, ids, max_subjects)
    t0, tau_std = float(model.t0_), float(model.tau_std_)
    if frame is not None and len(frame):
        observed = pd.to_numeric(frame[time_col], errors="coerce").to_numpy(dtype=float)
        low, high = np.nanmin(observed), np.nanmax(observed)
    else:
        low, high = t0 - 3 * tau_std, t0 + 3 * tau_std
    pad = 0.05 * max(high - low, 1e-9)
    grid = np.linspace(low - pad, high + pad, _GRID)

    spans, wanted = {}, set(subjects)
    if frame is not None:
        times_by_id = frame.groupby(id_col, sort=False)[time_col]
        spans = {i: (float(t.min()), float(t.max())) for i, t in times_by_id if i in wanted}
    rows_id, rows_t = [], []
    for i in subjects:
        start, stop = spans.get(i, (grid[0], grid[-1]))
        rows_id.extend([i] * _SUBJECT_GRID)
        rows_t.extend(np.linspace(start, stop, _SUBJECT_GRID))
    fitted = None
    if subjects:
        query = pd.DataFrame({id_col: rows_id, time_col: rows_t})
        for name in features:
            query[name] = np.nan
        fitted = model.predict(query).to_numpy(dtype=float).reshape(len(subjects), _SUBJECT_GRID, len(features))
        times = np.asarray(rows_t, dtype=float).reshape(len(subjects), _SUBJECT_GRID)

    from .plots import _pyplot

    colors = _pyplot().get_cmap("tab20")
    population = _population_curve(model, grid)
    fig, axes = _panels(len(features), ax)
    if frame is not None and subjects:
        chosen = frame[frame[id_col].isin(subjects)]
        groups = dict(tuple(chosen.groupby(id_col, sort=False)))
    else:
        groups = {}
    for k, (axis, name) in enumerate(zip(axes, features)):
        for j, i in enumerate(subjects):
            color = colors(j % 20)
            axis.plot(times[j], fitted[j, :, k], color=color, lw=1, alpha=0.8)
            rows = groups.get(i)
            if rows is not None and name in rows.columns:
                values = pd.to_numeric(rows[name], errors="coerce")
                keep = values.notna().to_numpy()
                axis.scatter(rows[time_col].to_numpy(dtype=float)[keep], values.to_numpy(dtype=float)[keep],
                             color=color, s=12, alpha=0.9, zorder=3)  # fmt: skip
        axis.plot(grid, population[:, k], color="black", lw=2.5, label="population (tau = 0, xi = 0)", zorder=4)
        axis.axvline(t0, color="0.5", ls=":", lw=1, label=f"t0 = {t0:.3g}")
        if model.model == "logistic":
            axis.set_ylim(-0.03, 1.03)
        axis.set_title(str(name))
        axis.set_xlabel(str(time_col))
        axis.set_ylabel("value")
        axis.grid(alpha=0.3)
    if axes:
        what = f"{len(subjects)} subject(s)" + (" with their observations" if groups else "")
        axes[0].legend(loc="best", fontsize=8, title=what, title_fontsize=8)
    return fig


def plot_saem_traces(model, parameters=None):
    """SAEM parameter traces: one panel per parameter, one line per chain.

    Each chain's parameters are the M-step of its current draw during
    burn-in (step size 1), then the stochastic-approximation average; a
    dashed vertical line marks the end of burn-in. Panel titles give R-hat
    (``model.rhat_``, computed over burn-in's second half).

    Parameters
    ----------
    model : ProgressionModel
        A fitted model (``traces_``, ``rhat_``, ``burn_in_``).
    parameters : list of str, optional
        Parameter names to draw (default: all, in ``model.params_`` order).

    Returns
    -------
    matplotlib.figure.Figure
    """
    _check_progression(model, "traces_")
    traces = model.traces_
    names = list(dict.fromkeys(traces.columns.get_level_values(1)))
    if parameters is not None:
        unknown = [p for p in parameters if p not in names]
        if unknown:
            raise ValueError(f"unknown parameter(s) {unknown}; the traces hold {names}.")
        names = list(parameters)
    chains = list(dict.fromkeys(traces.columns.get_level_values(0)))
    rhat = getattr(model, "rhat_", None)
    burn_in = int(getattr(model, "burn_in_", 0))
    iterations = np.asarray(traces.index, dtype=float)
    fig, axes = _panels(len(names), width=3.8, height=2.8)
    for axis, name in zip(axes, names):
        for chain in chains:
            axis.plot(iterations, traces[(chain, name)].to_numpy(dtype=float), lw=1, label=f"chain {chain}")
        if 0 < burn_in < len(iterations):
            axis.axvline(burn_in, color="0.3", ls="--", lw=1, label="end of burn-in")
        value = np.nan if rhat is None or name not in rhat.index else float(rhat[name])
        axis.set_title(f"{name}   R-hat {value:.3f}" if np.isfinite(value) else f"{name}   R-hat n/a", fontsize=9)
        axis.set_xlabel("iteration")
        axis.grid(alpha=0.3)
    if axes:
        axes[0].legend(loc="best", fontsize=7)
    return fig


def plot_individual_parameters(model, bins=None):
    """Distribution of the individual parameters: histograms of tau and xi, and tau against xi.

    The histograms carry the population densities :math:`N(0, \\sigma_\\tau^2)`
    and :math:`N(0, \\sigma_\\xi^2)` for reference (the estimates are
    posterior means, so they are more concentrated than these).

    Parameters
    ----------
    model : ProgressionModel
        A fitted model (``individual_parameters_``).
    bins : int, optional
        Histogram bins (default: about the square root of the number of subjects).

    Returns
    -------
    matplotlib.figure.Figure
    """
    _check_progression(model)
    table = model.individual_parameters_
    tau = table["tau"].to_numpy(dtype=float)
    xi = table["xi"].to_numpy(dtype=float)
    bins = int(bins) if bins is not None else int(np.clip(np.sqrt(len(tau)), 5, 50))
    fig, axes = _panels(3, width=4.0, height=3.4)
    for axis, values, std, label in ((axes[0], tau, model.tau_std_, "tau (time shift)"),
                                     (axes[1], xi, model.xi_std_, "xi (log acceleration)")):  # fmt: skip
        axis.hist(values, bins=bins, density=True, color="tab:blue", alpha=0.6, label="estimates")
        std = float(std)
        if np.isfinite(std) and std > 0:
            x = np.linspace(min(values.min(), -3 * std), max(values.max(), 3 * std), 200)
            axis.plot(x, np.exp(-0.5 * (x / std) ** 2) / (std * np.sqrt(2 * np.pi)), color="black", lw=1.5,
                      label=f"N(0, {std:.3g}^2)")  # fmt: skip
        axis.set_xlabel(label)
        axis.set_ylabel("density")
        axis.legend(loc="best", fontsize=8)
        axis.grid(alpha=0.3)
    axes[2].scatter(tau, xi, s=12, alpha=0.7, color="tab:blue")
    if len(tau) > 2 and tau.std() > 0 and xi.std() > 0:
        axes[2].set_title(f"correlation {np.corrcoef(tau, xi)[0, 1]:+.2f}", fontsize=9)
    axes[2].axhline(0, color="0.5", lw=0.8)
    axes[2].axvline(0, color="0.5", lw=0.8)
    axes[2].set_xlabel("tau")
    axes[2].set_ylabel("xi")
    axes[2].grid(alpha=0.3)
    return fig
