"""Figures for fitted models (matplotlib, imported only when a plot is made).

Every function takes an optional ``ax`` and returns the Axes it drew on, so
figures compose: ``fig, (a, b) = plt.subplots(1, 2)``, then
``plot_mixture(model, X, ax=a)`` and ``plot_convergence(model, ax=b)``.
``plot_hmm`` draws two panels and so takes (and returns) a pair, ``axes``.
Without a display (a server, CI), matplotlib's non-interactive Agg backend is
selected so that ``fig.savefig("out.png")`` works.
"""

from __future__ import annotations

import os
import sys

import numpy as np

__all__ = [
    "plot_convergence", "plot_hmm", "plot_individual_parameters", "plot_logistic", "plot_mixture",
    "plot_progression", "plot_saem_traces", "plot_vae_latent", "plot_vae_reconstructions", "plot_vae_samples",
    "plot_vae_training",
]

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

    Works for every ``covariance_type``, read from ``model.covariance_type``
    or, when absent, from the array's shape (ambiguous only when K == D).
    """
    from .families.gaussian import COVARIANCE_TYPES, full_covariances

    cov = np.asarray(model.covariances_, dtype=np.float64)
    k, d = np.asarray(model.means_).shape
    kind = getattr(model, "covariance_type", None)
    if kind is None:
        kind = {3: "full", 1: "spherical"}.get(cov.ndim, "diag" if cov.shape == (k, d) else "tied")
    if kind not in COVARIANCE_TYPES:
        raise ValueError(f"Unknown covariance_type {kind!r} on {type(model).__name__}.")
    return np.array(full_covariances(cov, kind, k, d))


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


# --------------------------------------------------------------------------- hidden Markov models


def _split_sequences(X, lengths):
    """``X`` (concatenated with ``lengths``, or a list of sequences) as per-sequence
    2-D arrays (validated by :func:`lateo.core.sequences.split_sequences`) and
    the feature names (DataFrame columns, else ``feature j``)."""
    from .core.sequences import split_sequences

    first = X[0] if isinstance(X, (list, tuple)) and len(X) else X
    names = [str(c) for c in first.columns] if hasattr(first, "columns") else None

    def values(x):
        return np.asarray(x.to_numpy() if hasattr(x, "to_numpy") else x)

    pieces = split_sequences([values(x) for x in X] if isinstance(X, (list, tuple)) else values(X), lengths)
    return pieces, names or [f"feature {j}" for j in range(pieces[0].shape[1])]


def _hmm_state_means(model, feature: int):
    """Each state's mean of ``feature`` (K,), or ``None`` when the model has none.

    Gaussian HMMs have ``means_`` (K, D); a GMM-HMM's (K, M, D) are averaged
    with its mixture ``weights_`` (K, M); a Poisson HMM's mean is its rate
    ``lambdas_``. Categorical HMMs (``emissionprob_``) have no mean level.
    """
    means = getattr(model, "means_", None)
    if means is not None:
        means = np.asarray(means, dtype=np.float64)
        if means.ndim == 3 and getattr(model, "weights_", None) is not None:
            means = np.einsum("km,kmd->kd", np.asarray(model.weights_, dtype=np.float64), means)
        return means[:, feature] if means.ndim == 2 else None
    rates = getattr(model, "lambdas_", None)
    if rates is not None:
        rates = np.asarray(rates, dtype=np.float64)
        return rates[:, feature] if rates.ndim == 2 else None
    return None


def _state_runs(states):
    """``(state, first, last)`` for each run of equal consecutive states."""
    states = np.asarray(states)
    starts = np.concatenate([[0], np.flatnonzero(np.diff(states)) + 1])
    ends = np.concatenate([starts[1:] - 1, [states.size - 1]])
    return [(int(states[a]), int(a), int(b)) for a, b in zip(starts, ends)]


def _hmm_axes(axes):
    if axes is None:
        _, axes = _pyplot().subplots(
            2, 1, sharex=True, figsize=(9, 5.5), height_ratios=(2.2, 1), layout="constrained"
        )
    axes = list(np.ravel(np.asarray(axes, dtype=object))) if not hasattr(axes, "plot") else [axes]
    if len(axes) != 2:
        raise ValueError(f"axes must be two matplotlib Axes (top: series, bottom: posteriors), got {len(axes)}.")
    return axes


def plot_hmm(model, X, lengths=None, *, sequence=0, feature=0, time=None, axes=None):
    """Plot one observed sequence with its decoded states and state posteriors.

    Top panel: the chosen feature of the chosen sequence over time, each
    point coloured by its Viterbi state (``model.predict``); where the
    model has a mean level per state (a Gaussian HMM's ``means_``, the
    weighted component means of a GMM-HMM, a Poisson HMM's ``lambdas_``), a
    horizontal segment marks that level over each run of the decoded state.
    Bottom panel: the smoothed posteriors ``P(z_t = k | x_1..T)``
    (``model.predict_proba``), stacked so they sum to one at each time.

    Parameters
    ----------
    model : fitted hidden Markov model
        Must have ``predict`` and ``predict_proba`` (hmmlearn's API), e.g.
        ``GaussianHMM``, ``GMMHMM``, ``PoissonHMM`` or ``CategoricalHMM``.
    X : array-like or DataFrame of shape (n_samples, n_features), or list
        The sequences, concatenated (with ``lengths``) or as a list of 2-D
        arrays, as passed to ``model.fit``.
    lengths : array-like of int, optional
        Length of each sequence in a concatenated ``X``; one sequence when
        omitted.
    sequence : int, default=0
        Which sequence to plot (negative counts from the end).
    feature : int or str, default=0
        Which feature (column index, or name for a DataFrame) to plot.
    time : array-like, optional
        The x values (e.g. years), one per row of the plotted sequence, or
        one per row of the whole concatenated ``X``; the row index when
        omitted.
    axes : pair of matplotlib Axes, optional
        Where to draw (top, bottom); a new figure is made when omitted.

    Returns
    -------
    list of matplotlib.axes.Axes
        ``[top, bottom]``.

    Examples
    --------
    >>> from lateo.datasets import load_nile
    >>> df = load_nile()
    >>> top, bottom = plot_hmm(model, df[["flow"]], time=df["year"])  # doctest: +SKIP
    """
    pieces, names = _split_sequences(X, lengths)
    if isinstance(sequence, bool) or not isinstance(sequence, (int, np.integer)) or not -len(pieces) <= sequence < len(pieces):
        raise ValueError(f"sequence must be an integer in [0, {len(pieces)}) (there are {len(pieces)}), got {sequence!r}.")
    data = pieces[int(sequence)]
    values = np.asarray(data.to_numpy() if hasattr(data, "to_numpy") else data)
    values = values.reshape(-1, 1) if values.ndim == 1 else values
    if isinstance(feature, str) and feature in names:
        feature = names.index(feature)
    if isinstance(feature, bool) or not isinstance(feature, (int, np.integer)) or not -len(names) <= feature < len(names):
        raise ValueError(f"feature: {feature!r} is not a column of X (columns: {names}).")
    feature = int(feature) % len(names)
    x = _hmm_time(time, values.shape[0], pieces, int(sequence))
    states = np.asarray(model.predict(data)).ravel()
    posteriors = np.asarray(model.predict_proba(data), dtype=np.float64)
    top, bottom = _hmm_axes(axes)
    _draw_states(top, model, x, values[:, feature].astype(np.float64), states, posteriors.shape[1], feature)
    _draw_posteriors(bottom, x, posteriors)
    generic = names[feature] == f"feature {feature}"
    top.set_ylabel("symbol" if generic and hasattr(model, "emissionprob_") else names[feature])
    where = f", sequence {int(sequence) % len(pieces)} of {len(pieces)}" if len(pieces) > 1 else ""
    top.set_title(f"{type(model).__name__}, {posteriors.shape[1]} states{where}: Viterbi path")
    bottom.set_xlabel("time step" if time is None else str(getattr(time, "name", None) or "time"))
    return [top, bottom]


def _hmm_time(time, n: int, pieces, sequence: int) -> np.ndarray:
    if time is None:
        return np.arange(n, dtype=np.float64)
    x = np.asarray(time)
    total = sum(np.shape(p)[0] for p in pieces)
    if x.ndim == 1 and x.shape[0] == n:
        return x
    if x.ndim == 1 and x.shape[0] == total:
        start = sum(np.shape(p)[0] for p in pieces[:sequence])
        return x[start : start + n]
    raise ValueError(
        f"time must have one value per row of the plotted sequence ({n}) or of all of X ({total}); "
        f"got shape {x.shape}."
    )


def _state_colors(n_states: int):
    import matplotlib

    cmap = matplotlib.colormaps["tab10"]
    return [cmap(k % 10) for k in range(n_states)]


def _level(value) -> str:
    return f"{value:.1f}" if 0.1 <= abs(value) < 1e6 else f"{value:.3g}"


def _half_step(x):
    """Half the typical spacing of numeric time values (0 for dates and the like)."""
    if x.size < 2 or x.dtype.kind not in "iuf":
        return 0.5 if x.dtype.kind in "iuf" else 0
    return float(np.median(np.diff(x.astype(np.float64)))) / 2


def _draw_states(ax, model, x, y, states, n_states: int, feature: int) -> None:
    colors = _state_colors(n_states)
    categorical = hasattr(model, "emissionprob_")
    if not categorical:  # symbols have no order: joining them would suggest one
        ax.plot(x, y, color="0.75", linewidth=0.9, zorder=1)
    size = 22 if y.size <= 300 else 8
    means = _hmm_state_means(model, feature)
    for k in range(n_states):
        mask = states == k
        if not mask.any():
            continue
        label = f"state {k}" + (f" (mean {_level(means[k])})" if means is not None else "")
        ax.scatter(x[mask], y[mask], s=size, color=colors[k], label=label, zorder=3, edgecolors="none")
    if means is not None:
        step = _half_step(x)
        for k, first, last in _state_runs(states):
            ax.hlines(means[k], x[first] - step, x[last] + step, colors=[colors[k]], linewidth=2.4, zorder=2)
    if np.all(y == np.round(y)) and np.unique(y).size <= 12:  # symbols or small counts: integer ticks
        ax.yaxis.get_major_locator().set_params(integer=True)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", fontsize="small", markerscale=1.3)


def _draw_posteriors(ax, x, posteriors) -> None:
    """Stacked posteriors, one block per time step (discrete time, no interpolation)."""
    colors = _state_colors(posteriors.shape[1])
    step = _half_step(x)
    if step:  # numeric time: blocks centred on each time value
        edges = np.concatenate([x - step, [x[-1] + step]]).astype(np.float64)
        upper = np.cumsum(posteriors, axis=1)
        upper = np.vstack([upper, upper[-1:]])
        lower = np.hstack([np.zeros((upper.shape[0], 1)), upper[:, :-1]])
        for k, color in enumerate(colors):
            ax.fill_between(edges, lower[:, k], upper[:, k], step="post", color=color, alpha=0.8, linewidth=0)
        ax.set_xlim(edges[0], edges[-1])
    else:
        ax.stackplot(x, posteriors.T, colors=colors, alpha=0.8, linewidth=0)
    ax.set_ylim(0, 1)
    ax.set_ylabel("P(state | data)")
    ax.grid(True, alpha=0.3)


from ._plots_bayes import plot_logistic  # noqa: E402  (re-export; defined beside the Bayesian demos)
from ._plots_progression import (  # noqa: E402  (re-export; progression-model figures)
    plot_individual_parameters,
    plot_progression,
    plot_saem_traces,
)
from ._plots_vae import (  # noqa: E402  (re-export; VAE figures)
    plot_vae_latent,
    plot_vae_reconstructions,
    plot_vae_samples,
    plot_vae_training,
)
