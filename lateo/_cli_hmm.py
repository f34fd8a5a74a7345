"""Hidden Markov model pieces of the command line: sequences, tables, the Nile demo.

Kept apart from :mod:`lateo.cli` so that both stay short; the commands there
import this module on demand (it needs numpy, pandas and rich).
"""

from __future__ import annotations

import importlib
import time
from pathlib import Path

import click
import numpy as np

from lateo.cli import _MAX_FEATURES_SHOWN, _build, _fmt, _print_metrics, _select_columns

FAMILIES = {"gaussian": "GaussianHMM", "categorical": "CategoricalHMM", "poisson": "PoissonHMM", "gmm": "GMMHMM"}
_HMM_MODULES = ("lateo", "lateo.models.hmm", "lateo.models.hmm_discrete", "lateo.models.gmm_hmm")
_COUNT_FAMILIES = ("categorical", "poisson")
_MAX_SYMBOLS_SHOWN = 6
_MAX_TRANSITIONS_SHOWN = 8
_ABSORBING = 1e-8  # a state kept with probability above 1 - this is shown as absorbing (EM only approaches 1)


def hmm_class(family: str):
    """The estimator class behind ``lateo fit hmm --family <family>``."""
    name = FAMILIES[family]
    for module in _HMM_MODULES:
        try:
            cls = getattr(importlib.import_module(module), name, None)
        except ImportError:
            continue
        if cls is not None:
            return cls
    raise click.ClickException(f"This lateo has no {name}; --family {family} is not available.")


def family_of(model) -> str:
    """``"gaussian"``, ``"categorical"``, ``"poisson"`` or ``"gmm"`` for a fitted HMM."""
    by_name = {name: family for family, name in FAMILIES.items()}
    if type(model).__name__ in by_name:
        return by_name[type(model).__name__]
    if hasattr(model, "emissionprob_"):
        return "categorical"
    if hasattr(model, "lambdas_"):
        return "poisson"
    return "gmm" if np.ndim(getattr(model, "means_", ())) == 3 else "gaussian"


# --------------------------------------------------------------------------- data


def sequence_lengths(frame, column: str, path: Path):
    """Lengths of the runs of equal values of ``frame[column]``, in file order.

    Each sequence must occupy contiguous rows; a value that comes back after
    another sequence started is an error (the file is probably unsorted).
    """
    available = [str(c) for c in frame.columns]
    if column not in available:
        raise click.BadParameter(f"column {column!r} not found; {path.name} has columns {available}.",
                                 param_hint="--sequence-column")
    ids = frame[frame.columns[available.index(column)]]
    n_missing = int(ids.isna().sum())
    if n_missing:
        raise click.ClickException(
            f"{path.name}: sequence column {column!r} has {n_missing} missing value(s); give every row a sequence id."
        )
    values = ids.to_numpy()
    starts = np.flatnonzero(np.concatenate([[True], values[1:] != values[:-1]]))
    seen: dict = {}
    for start in starts:
        key = values[start]
        if key in seen:
            raise click.ClickException(
                f"{path.name}: sequence {key!r} (column {column!r}) is split: its rows start again at line "
                f"{start + 2} after line {seen[key] + 2}. Keep each sequence's rows together (sort by {column}, "
                "keeping time order within each sequence)."
            )
        seen[key] = start
    return np.diff(np.append(starts, len(values))), values


def feature_frame(frame, columns: str | None, sequence_column: str | None, path: Path):
    """The modelled columns: ``--columns``, or every column but the sequence id."""
    if sequence_column is not None:
        if columns and sequence_column in [c.strip() for c in columns.split(",")]:
            raise click.BadParameter(
                f"{sequence_column!r} is the --sequence-column; it identifies sequences and cannot also be a feature.",
                param_hint="--columns",
            )
        frame = frame.drop(columns=[c for c in frame.columns if str(c) == sequence_column])
    elif not columns:
        text = [str(c) for c in frame.columns if frame[c].dtype.kind not in "biuf"]
        if text:
            raise click.ClickException(
                f"{path.name} has non-numeric column(s) {text}; if one names each row's sequence, pass it as "
                "--sequence-column, else choose numeric columns with --columns."
            )
    return _select_columns(frame, columns, path)


def count_frame(frame, family: str, path: Path):
    """Check the integer data of a categorical / Poisson HMM; the frame as int64."""
    names = [str(c) for c in frame.columns]
    if family == "categorical" and len(names) != 1:
        raise click.ClickException(
            f"A categorical HMM models one column of integer symbols, but {path.name} gives {len(names)} "
            f"({names}); choose one with --columns."
        )
    values = frame.to_numpy(dtype=np.float64)
    bad = (values != np.round(values)) | (values < 0)
    if bad.any():
        row, col = (int(i[0]) for i in np.nonzero(bad))
        what = "symbols 0, 1, 2, ..." if family == "categorical" else "counts (non-negative integers)"
        raise click.ClickException(
            f"A {family} HMM needs {what}, but column {names[col]!r} of {path.name} holds "
            f"{values[row, col]:g} (line {row + 2})."
        )
    return frame.astype("int64")


def model_input(frame, model_or_family, path: Path):
    """The frame as the HMM family expects it (int64 symbols / counts, else floats)."""
    family = model_or_family if isinstance(model_or_family, str) else family_of(model_or_family)
    return count_frame(frame, family, path) if family in _COUNT_FAMILIES else frame


# --------------------------------------------------------------------------- summaries


def _history_attr(model, name: str, monitor_name: str):
    """``model.<name>``, or hmmlearn's ``model.monitor_.<monitor_name>``."""
    value = getattr(model, name, None)
    if value is None and getattr(model, "monitor_", None) is not None:
        value = getattr(model.monitor_, monitor_name, None)
    return value


def state_variances(model) -> np.ndarray:
    """Each state's variance of each feature, (K, D), for every ``covariance_type``."""
    means = np.asarray(model.means_, dtype=np.float64)
    k, d = means.shape
    cov = np.asarray(model.covars_, dtype=np.float64)
    kind = getattr(model, "covariance_type", None)
    if cov.ndim == 3:  # full (K, D, D), which hmmlearn's covars_ returns for every type
        return np.diagonal(cov, axis1=1, axis2=2).copy()
    if cov.ndim == 2 and (kind == "tied" or (kind is None and cov.shape == (d, d) and k != d)):
        return np.broadcast_to(np.diag(cov), (k, d)).copy()
    if cov.ndim == 2:
        return cov
    return np.broadcast_to(cov[:, None], (k, d)).copy()


def state_means(model) -> np.ndarray:
    """Each state's mean of each feature (K, D): Gaussian means, GMM-weighted means, Poisson rates."""
    if hasattr(model, "lambdas_"):
        return np.asarray(model.lambdas_, dtype=np.float64)
    means = np.asarray(model.means_, dtype=np.float64)
    if means.ndim == 3:
        return np.einsum("km,kmd->kd", np.asarray(model.weights_, dtype=np.float64), means)
    return means


def expected_durations(model) -> np.ndarray:
    """Expected time spent in each state per visit, ``1 / (1 - a_kk)`` (inf if absorbing)."""
    stay = np.clip(np.diag(np.asarray(model.transmat_, dtype=np.float64)), 0.0, 1.0)
    with np.errstate(divide="ignore"):
        return np.where(stay >= 1.0 - _ABSORBING, np.inf, 1.0 / (1.0 - stay))


def _duration(value: float) -> str:
    return "inf (absorbing)" if np.isinf(value) else _fmt(value)


def state_table(model, names, *, title: str = "States", counts=None, counts_name: str = "rows"):
    """A rich table of the states: start probability, emission summary, expected duration."""
    from rich.table import Table

    family = family_of(model)
    table = Table(title=title)
    table.add_column("state", justify="right")
    if counts is not None:
        table.add_column(counts_name, justify="right")
    table.add_column("start", justify="right")
    shown = list(range(min(len(names), _MAX_FEATURES_SHOWN)))
    if family == "categorical":
        emission = np.asarray(model.emissionprob_, dtype=np.float64)
        symbols = list(range(min(emission.shape[1], _MAX_SYMBOLS_SHOWN)))
        columns = [[f"{p:.3f}" for p in emission[:, s]] for s in symbols]
        headers = [f"P({names[0]}={s})" for s in symbols]
        if emission.shape[1] > len(symbols):
            table.caption = f"first {len(symbols)} of {emission.shape[1]} symbols shown"
    else:
        means = state_means(model)
        label = "rate" if family == "poisson" else "mean"
        headers = [f"{label} {names[j]}" for j in shown]
        columns = [[_fmt(v) for v in means[:, j]] for j in shown]
        if family == "gaussian":
            sd = np.sqrt(state_variances(model))
            headers += [f"sd {names[j]}" for j in shown]
            columns += [[_fmt(v) for v in sd[:, j]] for j in shown]
        notes = [f"first {len(shown)} of {len(names)} features shown"] if len(names) > len(shown) else []
        if family == "gmm":
            notes.append("mean: each state's mixture-weighted mean")
        table.caption = "; ".join(notes) or None
    for header in headers:
        table.add_column(header, justify="right")
    table.add_column("expected duration", justify="right")
    start = np.asarray(model.startprob_, dtype=np.float64)
    durations = expected_durations(model)
    for k in range(start.size):
        row = [str(k)] + ([str(int(counts[k]))] if counts is not None else []) + [f"{start[k]:.3f}"]
        row += [column[k] for column in columns] + [_duration(durations[k])]
        table.add_row(*row)
    return table


def transition_table(model):
    """The transition matrix as a rich table (from: rows, to: columns), or None if large."""
    from rich.table import Table

    transmat = np.asarray(model.transmat_, dtype=np.float64)
    if transmat.shape[0] > _MAX_TRANSITIONS_SHOWN:
        return None
    table = Table(title="Transitions: row -> column")
    table.add_column("from \\ to", justify="right")
    for k in range(transmat.shape[0]):
        table.add_column(str(k), justify="right")
    for k, row in enumerate(transmat):
        table.add_row(str(k), *[f"{p:.4f}" for p in row])
    return table


def hmm_metrics(model, X, lengths) -> list[tuple[str, str]]:
    """Log-likelihood (total over all sequences), BIC, AIC, iterations, convergence."""
    n_sequences = 1 if lengths is None else len(lengths)
    metrics = [
        ("log-likelihood", f"{float(model.score(X, lengths)):.4f}  (sum over {len(X)} rows, {n_sequences} sequence(s))"),
        ("BIC", f"{float(model.bic(X, lengths)):.4f}"),
        ("AIC", f"{float(model.aic(X, lengths)):.4f}"),
    ]
    n_iter = _history_attr(model, "n_iter_", "iter")
    if n_iter is not None:
        metrics.append(("iterations", str(int(n_iter))))
    converged = _history_attr(model, "converged_", "converged")
    if converged is not None:
        metrics.append(("converged", "yes" if bool(converged) else "no (raise --n-iter or --tol)"))
    return metrics


def print_fit_summary(model, X, lengths, names, console) -> None:
    console.print(state_table(model, names))
    transitions = transition_table(model)
    if transitions is not None:
        console.print(transitions)
    _print_metrics(console, hmm_metrics(model, X, lengths))


# --------------------------------------------------------------------------- demo


def change_points(states, times) -> list[tuple[object, object, int, int]]:
    """``(last time, first time, old state, new state)`` at each change of the decoded state."""
    states = np.asarray(states)
    times = np.asarray(times)
    return [(times[i], times[i + 1], int(states[i]), int(states[i + 1])) for i in np.flatnonzero(np.diff(states))]


def demo_nile(out: Path, console) -> None:
    """Two-state Gaussian HMM on the Nile flows: the level drops after 1898."""
    from matplotlib.figure import Figure

    from lateo.datasets import load_nile
    from lateo.plots import plot_hmm

    frame = load_nile()
    X = frame[["flow"]]
    start = time.perf_counter()
    model = _build(hmm_class("gaussian"), n_components=2, n_iter=500, tol=1e-6, random_state=0).fit(X)
    elapsed = time.perf_counter() - start
    years = frame["year"].to_numpy()
    console.print(
        f"Nile: annual flow at Aswan (10^8 m^3), {years[0]}-{years[-1]} ({len(frame)} years)."
    )
    console.print(f"GaussianHMM(n_components=2) fitted in {elapsed:.2f} s.")
    states = np.asarray(model.predict(X))
    counts = np.bincount(states, minlength=2)
    console.print(state_table(model, ["flow"], title="States (expected duration in years)", counts=counts,
                              counts_name="years"))
    changes = change_points(states, years)
    means = state_means(model)[:, 0]
    if changes:
        for last, first, old, new in changes:
            console.print(
                f"Decoded state changes between {last} and {first}: state {old} (mean {means[old]:.1f}) -> "
                f"state {new} (mean {means[new]:.1f})."
            )
    else:
        console.print("The decoded state never changes.")
    _print_metrics(console, hmm_metrics(model, X, None))
    path = out / "nile_hmm.png"
    fig = Figure(figsize=(10, 6), layout="constrained")
    axes = fig.subplots(2, 1, sharex=True, height_ratios=(2.2, 1))
    plot_hmm(model, X, time=frame["year"], axes=axes)
    for last, first, _, _ in changes:
        for ax in axes:
            ax.axvline((last + first) / 2, color="0.3", linestyle="--", linewidth=1)
        axes[0].annotate(f"change after {last}", xy=((last + first) / 2, 1), xycoords=("data", "axes fraction"),
                         xytext=(4, -14), textcoords="offset points", fontsize="small", color="0.3")
    axes[0].set_title("Nile at Aswan: 2-state Gaussian HMM, decoded level (Viterbi)")
    fig.savefig(path, dpi=120)
    console.print(f"Figure written to {path}")
