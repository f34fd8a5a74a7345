"""Figures for fitted models (matplotlib, imported only when a plot is made).

Every function takes an optional ``ax`` and returns the Axes it drew on, so
figures compose: ``fig, (a, b) = plt.subplots(1, 2)``, then
``plot_mixture(model, X, ax=a)`` and ``plot_convergence(model, ax=b)``.
Without a display (a server, CI), matplotlib's non-interactive Agg backend is
selected so that ``fig.savefig("out.png")`` works.
"""

from __future__ import annotations

import os
import sys

import numpy as np

__all__ = ["plot_mixture", "plot_convergence"]

_SIGMAS = (1.0, 2.0)
_HISTORY_ATTRIBUTES = ("lower_bounds_", "log_likelihoods_", "history_", "objective_history_", "inertias_")
_OFF_SCALE = 1000.0  # leading iterates this many spans below the rest are drawn off scale
_MIN_SHOWN = 3  # ... as long as this many points stay on the axes
_HISTORY_KEYS = ("lower_bound", "log_likelihood", "objective", "elbo", "inertia")


def _pyplot():
    """Import pyplot, choosing the Agg backend first when there is no display."""
    import matplotlib

    headless = sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    if headless and "matplotlib.pyplot" not in sys.modules and not os.environ.get("MPLBACKEND"):
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _new_axes(ax):
    if ax is not None:
        return ax
    _, ax = _pyplot().subplots(figsize=(6, 4.5))
    return ax


def _feature_columns(X, features):
    """The two plotted columns of ``X`` as floats, and their labels."""
    if len(features) != 2:
        raise ValueError(f"features must name exactly two features, got {features!r}.")
    if hasattr(X, "columns") and hasattr(X, "to_numpy"):
        names = [str(c) for c in X.columns]
        data = X.to_numpy()
    else:
        data = np.asarray(X)
        names = [f"feature {j}" for j in range(data.shape[1] if data.ndim == 2 else 0)]
    if data.ndim != 2 or data.shape[1] < 2:
        raise ValueError(f"X must be 2-D with at least two features to plot, got shape {data.shape}.")
    idx = []
    for f in features:
        if isinstance(f, (int, np.integer)) and not isinstance(f, bool) and -data.shape[1] <= f < data.shape[1]:
            idx.append(int(f))
        elif isinstance(f, str) and f in names:
            idx.append(names.index(f))
        else:
            raise ValueError(f"features: {f!r} is not a column of X (columns: {names}).")
    idx = [int(i) % data.shape[1] for i in idx]
    if idx[0] == idx[1]:
        raise ValueError(f"features must name two different features, got {features!r}.")
    return np.asarray(data[:, idx], dtype=np.float64), idx, [names[i] for i in idx]


def _full_covariances(model) -> np.ndarray:
    """A Gaussian mixture's covariances as full matrices, shape (K, D, D).

    Works for every ``covariance_type`` (full (K, D, D), tied (D, D),
    diag (K, D), spherical (K,)), read from ``model.covariance_type`` or,
    when absent, from the array's shape.
    """
    cov = np.asarray(model.covariances_, dtype=np.float64)
    k, d = np.asarray(model.means_).shape
    kind = getattr(model, "covariance_type", None)
    if kind is None:  # infer from the shape (ambiguous only when K == D)
        kind = {3: "full", 1: "spherical"}.get(cov.ndim, "diag" if cov.shape == (k, d) else "tied")
    if kind == "full":
        return cov
    if kind == "tied":
        return np.broadcast_to(cov, (k, d, d)).copy()
    if kind == "diag":
        return cov[:, :, None] * np.eye(d)
    if kind == "spherical":
        return cov[:, None, None] * np.eye(d)
    raise ValueError(f"Unknown covariance_type {kind!r} on {type(model).__name__}.")


def _projected_covariances(model, idx):
    """Each component's 2x2 covariance on the features ``idx`` (K, 2, 2)."""
    return _full_covariances(model)[:, idx][:, :, idx]


def _add_ellipses(ax, centers, covariances, colors):
    from matplotlib.patches import Ellipse

    for center, cov, color in zip(centers, covariances, colors):
        values, vectors = np.linalg.eigh(cov)
        values = np.clip(values, 0.0, None)
        angle = np.degrees(np.arctan2(vectors[1, -1], vectors[0, -1]))
        for n_sigma, style in zip(_SIGMAS, ("-", "--")):
            width, height = 2 * n_sigma * np.sqrt(values[::-1])
            ax.add_patch(
                Ellipse(center, width, height, angle=angle, fill=False, edgecolor=color, linestyle=style, linewidth=1.6)
            )


def plot_mixture(model, X, *, features=(0, 1), ax=None):
    """Scatter ``X`` coloured by cluster, with each component's shape.

    For a Gaussian mixture (a model with ``means_`` and ``covariances_``),
    each component's 1- and 2-standard-deviation ellipses (solid, dashed)
    are drawn from its covariance projected on the two plotted features, for
    every ``covariance_type`` (full, tied, diag, spherical). For k-means
    (``cluster_centers_``) the centres are marked.

    Parameters
    ----------
    model : fitted estimator
        Must have ``predict``; e.g. ``GaussianMixture`` or ``KMeans``.
    X : array-like or DataFrame of shape (n_samples, n_features)
        Data to plot (passed as is to ``model.predict``).
    features : pair of int or column names, default=(0, 1)
        The two features on the x and y axes.
    ax : matplotlib Axes, optional
        Where to draw; a new figure is made when omitted.

    Returns
    -------
    matplotlib.axes.Axes
    """
    points, idx, names = _feature_columns(X, features)
    labels = np.asarray(model.predict(X))
    ax = _new_axes(ax)
    if hasattr(model, "means_"):
        centers = np.asarray(model.means_, dtype=np.float64)
    elif hasattr(model, "cluster_centers_"):
        centers = np.asarray(model.cluster_centers_, dtype=np.float64)
    else:
        raise ValueError(f"{type(model).__name__} has neither means_ nor cluster_centers_; fit it first.")
    import matplotlib

    cmap = matplotlib.colormaps["tab10"]
    colors = [cmap(k % 10) for k in range(centers.shape[0])]
    weights = getattr(model, "weights_", None)
    for k, color in enumerate(colors):
        mask = labels == k
        label = f"component {k}" + (f" (w={weights[k]:.2f})" if weights is not None else "")
        ax.scatter(points[mask, 0], points[mask, 1], s=12, alpha=0.6, color=color, label=label, edgecolors="none")
    centers = centers[:, idx]
    if hasattr(model, "covariances_") and hasattr(model, "means_"):
        _add_ellipses(ax, centers, _projected_covariances(model, idx), colors)
    ax.scatter(centers[:, 0], centers[:, 1], marker="X", s=110, c=colors, edgecolors="black", linewidths=1.2, zorder=3)
    ax.set_xlabel(names[0])
    ax.set_ylabel(names[1])
    ax.set_title(f"{type(model).__name__}, {centers.shape[0]} components")
    ax.legend(loc="best", fontsize="small", markerscale=1.5)
    ax.autoscale_view()
    return ax


def _history(model):
    """The per-iteration objective the model recorded, and its name."""
    for attr in _HISTORY_ATTRIBUTES:
        value = getattr(model, attr, None)
        if value is None:
            continue
        if isinstance(value, dict):
            key = next((k for k in _HISTORY_KEYS if k in value), None)
            if key is None:
                continue
            return np.asarray(value[key], dtype=np.float64).ravel(), key.replace("_", " ")
        return np.asarray(value, dtype=np.float64).ravel(), attr.rstrip("_").rstrip("s").replace("_", " ")
    raise ValueError(
        f"{type(model).__name__} has no convergence history (looked for {', '.join(_HISTORY_ATTRIBUTES)}); "
        "fit the model first, with an estimator that records one."
    )


def _clip_initial_outliers(ax, values) -> None:
    """Keep the y-axis on the converging part when the first iterates are far off.

    EM from a degenerate start (k-means++ picks single points, so the first
    covariances are tiny) can begin millions of units below where it ends;
    on a linear axis the rest of the curve would then look flat. Leading
    points more than ``_OFF_SCALE`` times the later points' range below them
    are drawn at the bottom edge and labelled with their value.
    """
    if np.isnan(values).any():
        return
    n_off = 0
    while values.size - n_off > _MIN_SHOWN:
        rest = values[n_off + 1 :]
        span = rest.max() - rest.min()
        if np.isfinite(values[n_off]) and values[n_off] >= rest.min() - _OFF_SCALE * max(span, 1e-12):
            break
        n_off += 1
    if n_off == 0:
        return
    off = np.arange(n_off)
    on = values[n_off:]
    if not np.all(np.isfinite(on)):
        return
    span = max(on.max() - on.min(), 1e-9 * max(1.0, abs(on.max())))
    bottom = on.min() - 0.08 * span
    ax.set_ylim(bottom, on.max() + 0.05 * span)
    ax.plot(off + 1, np.full(off.size, bottom), linestyle="none", marker="v", color="tab:red", clip_on=False)
    shown = ", ".join(f"{i + 1}: {values[i]:.3g}" for i in off[:3]) + (" ..." if off.size > 3 else "")
    ax.annotate(f"off scale (iteration {shown})", xy=(0.02, 0.03), xycoords="axes fraction", fontsize="small",
                color="tab:red")


def plot_convergence(model, ax=None):
    """Plot the objective per iteration of a fitted iterative model.

    For EM this is ``lower_bounds_``: the mean log-likelihood per sample
    after each iteration, which exact EM never decreases.

    Parameters
    ----------
    model : fitted estimator
        Must record a history, e.g. ``lower_bounds_``.
    ax : matplotlib Axes, optional
        Where to draw; a new figure is made when omitted.

    Returns
    -------
    matplotlib.axes.Axes
    """
    values, name = _history(model)
    ax = _new_axes(ax)
    iterations = np.arange(1, values.size + 1)
    ax.plot(iterations, values, marker="o", markersize=3.5, linewidth=1.4)
    ax.set_xlabel("iteration")
    ax.set_ylabel(name + (" (mean log-likelihood per sample)" if name == "lower bound" else ""))
    status = getattr(model, "converged_", None)
    title = f"{type(model).__name__}: {values.size} iterations"
    if status is not None:
        title += ", converged" if bool(status) else ", not converged"
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    if values.size:
        ax.set_xlim(0.5, max(values.size, 2) + 0.5)
    _clip_initial_outliers(ax, values)
    ax.xaxis.get_major_locator().set_params(integer=True)
    return ax
