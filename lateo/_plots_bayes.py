"""Figures for Bayesian regression (re-exported by :mod:`lateo.plots`)."""

from __future__ import annotations

import numpy as np


def plot_logistic(model, X, y, *, grid=None, mark=None, ax=None):
    """Posterior probability ``p(y = 1 | x)`` of a one-feature logistic regression.

    Draws the posterior-mean curve with its central ``credible_level`` band
    over ``grid`` (default: the data range, widened to include ``mark``),
    the observed 0/1 outcomes, and a vertical line at ``mark`` (e.g. a new
    input to predict). Returns the Axes.
    """
    from .plots import _new_axes

    X = np.asarray(X, dtype=np.float64).reshape(-1, 1)
    y = np.asarray(y)
    ax = _new_axes(ax)
    if grid is None:
        low, high = X.min(), X.max()
        if mark is not None:
            low, high = min(low, mark), max(high, mark)
        pad = 0.05 * (high - low)
        grid = np.linspace(low - pad, high + pad, 200)
    proba, lower, upper = model.predict_proba(np.asarray(grid).reshape(-1, 1), return_interval=True)
    level = int(round(100 * model.credible_level))
    ax.fill_between(grid, lower, upper, color="tab:blue", alpha=0.25, label=f"{level}% credible band")
    ax.plot(grid, proba[:, 1], color="tab:blue", lw=2, label="posterior mean")
    ax.scatter(X[:, 0], y, color="black", zorder=3, s=25, label="observed")
    if mark is not None:
        p, lo, hi = model.predict_proba(np.array([[mark]]), return_interval=True)
        ax.axvline(mark, color="tab:red", ls="--", lw=1)
        ax.errorbar([mark], [p[0, 1]], yerr=[[p[0, 1] - lo[0]], [hi[0] - p[0, 1]]], fmt="o", color="tab:red",
                    capsize=4, label=f"x = {mark:g}: {p[0, 1]:.3f} [{lo[0]:.3f}, {hi[0]:.3f}]")
    ax.set_ylim(-0.05, 1.05)
    ax.set_ylabel("P(y = 1 | x)")
    ax.legend(loc="best", fontsize=8)
    ax.grid(alpha=0.3)
    return ax
