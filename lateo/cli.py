"""The ``lateo`` command line: demo, fit, predict, decode, simulate.

Examples
--------
.. code-block:: console

    $ lateo demo --out demo-output
    $ lateo fit gmm data.csv --components 3 --columns x,y --out model.npz
    $ lateo predict model.npz new.csv --proba --out labels.csv
    $ lateo fit hmm series.csv --states 2 --sequence-column id --out hmm.npz
    $ lateo decode hmm.npz series.csv --sequence-column id --out states.csv
    $ lateo fit progression cohort.csv --model logistic --n-iter 500 --out prog.npz --plot prog.png
    $ lateo simulate prog.npz --subjects 100 --visits 0,1,2,3 --out cohort.csv --truth truth.csv
    $ lateo predict prog.npz cohort.csv --out fitted.csv

Heavy imports (JAX, pandas, matplotlib) happen inside the commands, so
``lateo --help`` answers at once. Errors the user can fix (a missing file, a
bad model file, the wrong columns) end in a one-line message and exit
status 1 (2 for a bad option), never a traceback.
"""

from __future__ import annotations

import importlib
import inspect
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import click

from lateo._cli_errors import clean_errors

_ESTIMATORS = {
    "gmm": ("lateo.models.gaussian_mixture", "GaussianMixture"),
    "kmeans": ("lateo.models.kmeans", "KMeans"),
}
_TABLE_READERS = {".csv": ",", ".txt": ",", ".tsv": "\t", ".parquet": None, ".pq": None}
_MAX_FEATURES_SHOWN = 4


# --------------------------------------------------------------------------- helpers


def _estimator_class(kind: str):
    """The estimator class behind ``lateo fit <kind>`` (imported on demand)."""
    module, name = _ESTIMATORS[kind]
    return getattr(importlib.import_module(module), name)


def _build(cls, **kwargs):
    """``cls(**kwargs)`` without the options the user left unset; progress="auto"."""
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    if "progress" in inspect.signature(cls).parameters:
        kwargs.setdefault("progress", "auto")
    return cls(**kwargs)


def _console(stderr: bool = False):
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    interactive = hasattr(stream, "isatty") and stream.isatty()
    return Console(stderr=stderr, width=None if interactive else 100, highlight=False)


_clean_errors = clean_errors  # errors the user can fix, as one-line messages


def _read_table(path: Path):
    """A CSV/TSV/Parquet file as a DataFrame (chosen by the file's extension)."""
    import pandas as pd

    suffix = path.suffix.lower()
    if suffix not in _TABLE_READERS:
        raise click.BadParameter(
            f"{path} has extension {suffix or '(none)'!r}; use a .csv, .tsv or .parquet file.", param_hint="DATA"
        )
    try:
        if _TABLE_READERS[suffix] is None:
            frame = pd.read_parquet(path)
        else:
            frame = pd.read_csv(path, sep=_TABLE_READERS[suffix])
    except ImportError as exc:
        raise click.ClickException(f"Reading Parquet needs pyarrow: pip install pyarrow ({exc}).") from None
    except (ValueError, OSError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise click.ClickException(f"Could not read {path}: {exc}") from None
    if frame.shape[0] == 0:
        raise click.ClickException(f"{path} has no data rows.")
    return frame


def _select_columns(frame, columns: str | None, path: Path):
    """The (numeric, complete) columns to model, as a float DataFrame."""
    import pandas as pd

    if columns:
        names = [c.strip() for c in columns.split(",") if c.strip()]
        available = [str(c) for c in frame.columns]
        missing = [n for n in names if n not in available]
        if missing or len(set(names)) != len(names) or not names:
            problem = f"column(s) {missing} not found" if missing else "give each column once"
            raise click.BadParameter(f"{problem}; {path.name} has columns {available}.", param_hint="--columns")
        frame = frame.rename(columns=str)[names]
    non_numeric = [str(c) for c in frame.columns if not pd.api.types.is_numeric_dtype(frame[c])]
    if non_numeric:
        if columns:
            raise click.BadParameter(f"column(s) {non_numeric} are not numeric.", param_hint="--columns")
        numeric = [str(c) for c in frame.columns if str(c) not in non_numeric]
        hint = f", e.g. --columns {','.join(numeric)}" if numeric else ""
        raise click.ClickException(
            f"{path.name} has non-numeric column(s) {non_numeric}; choose numeric columns with --columns{hint}."
        )
    n_missing = frame.isna().sum()
    if n_missing.any():
        bad = {str(c): int(n) for c, n in n_missing.items() if n}
        raise click.ClickException(f"{path.name} has missing values {bad} (column: count); drop or impute them first.")
    return frame.astype("float64")


def _fmt(value) -> str:
    """Three decimals for everyday magnitudes, scientific notation otherwise."""
    value = float(value)
    return f"{value:.3f}" if value == 0 or 1e-2 <= abs(value) < 1e6 else f"{value:.3e}"


# --------------------------------------------------------------------------- summaries


def _gmm_table(model, names, title: str = "Components"):
    """A rich table: weight, means, standard deviations (and correlation in 2-D)."""
    import numpy as np
    from rich.table import Table

    from lateo.plots import _full_covariances

    cov = _full_covariances(model)
    sd = np.sqrt(np.diagonal(cov, axis1=1, axis2=2))
    shown = list(range(min(len(names), _MAX_FEATURES_SHOWN)))
    table = Table(title=title)
    table.add_column("component", justify="right")
    table.add_column("weight", justify="right")
    for j in shown:
        table.add_column(f"mean {names[j]}", justify="right")
    for j in shown:
        table.add_column(f"sd {names[j]}", justify="right")
    if len(names) == 2:
        table.add_column("correlation", justify="right")
    for k in range(cov.shape[0]):
        row = [str(k), f"{model.weights_[k]:.3f}"]
        row += [_fmt(model.means_[k][j]) for j in shown] + [_fmt(sd[k, j]) for j in shown]
        if len(names) == 2:
            row.append(f"{cov[k, 0, 1] / (sd[k, 0] * sd[k, 1]):+.3f}")
        table.add_row(*row)
    if len(names) > len(shown):
        table.caption = f"first {len(shown)} of {len(names)} features shown"
    return table


def _gmm_metrics(model, X) -> list[tuple[str, str]]:
    n = X.shape[0]
    log_likelihood = float(model.score(X)) * n
    return [
        ("log-likelihood", f"{log_likelihood:.4f}  (sum over {n} samples)"),
        ("BIC", f"{float(model.bic(X)):.4f}"),
        ("AIC", f"{float(model.aic(X)):.4f}"),
        ("iterations", str(int(model.n_iter_))),
        ("converged", "yes" if bool(model.converged_) else "no (raise --max-iter or --tol)"),
    ]


def _kmeans_table(model, names):
    import numpy as np
    from rich.table import Table

    sizes = np.bincount(np.asarray(model.labels_), minlength=len(model.cluster_centers_))
    shown = list(range(min(len(names), _MAX_FEATURES_SHOWN)))
    table = Table(title="Clusters")
    table.add_column("cluster", justify="right")
    table.add_column("size", justify="right")
    for j in shown:
        table.add_column(f"center {names[j]}", justify="right")
    for k, center in enumerate(model.cluster_centers_):
        table.add_row(str(k), str(int(sizes[k])), *[_fmt(center[j]) for j in shown])
    return table


def _print_metrics(console, metrics) -> None:
    from rich.table import Table

    table = Table(show_header=False, box=None, padding=(0, 2))
    for key, value in metrics:
        table.add_row(key, value)
    console.print(table)


def _save_mixture_figure(model, X, path: Path, title: str) -> None:
    """``plot_mixture`` and ``plot_convergence`` side by side, as a PNG."""
    from matplotlib.figure import Figure

    from lateo.plots import plot_convergence, plot_mixture

    fig = Figure(figsize=(12, 4.8), layout="constrained")
    left, right = fig.subplots(1, 2)
    plot_mixture(model, X, ax=left)
    plot_convergence(model, ax=right)
    fig.suptitle(title)
    fig.savefig(path, dpi=120)


# --------------------------------------------------------------------------- commands


def _print_version(ctx, _param, value):
    if value and not ctx.resilient_parsing:
        from lateo.io import lateo_version

        click.echo(f"lateo {lateo_version()}")
        ctx.exit()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--version", is_flag=True, expose_value=False, is_eager=True, callback=_print_version, help="Show the version.")
def main():
    """lateo: latent-variable models (mixtures, HMMs, ...) fitted with JAX."""


@dataclass(frozen=True)
class DemoSection:
    """One section of ``lateo demo``: ``run(out_dir, console)`` prints and saves figures."""

    title: str
    run: Callable


def _demo_old_faithful(out: Path, console) -> None:
    """Two-component full-covariance Gaussian mixture on Old Faithful."""
    from lateo.datasets import load_old_faithful

    frame = load_old_faithful()
    start = time.perf_counter()
    model = _build(_estimator_class("gmm"), n_components=2, covariance_type="full", random_state=0).fit(frame)
    elapsed = time.perf_counter() - start
    console.print(f"Old Faithful: {frame.shape[0]} eruptions, features {', '.join(frame.columns)}.")
    console.print(f"GaussianMixture(n_components=2, covariance_type='full') fitted in {elapsed:.2f} s.")
    console.print(_gmm_table(model, list(frame.columns)))
    _print_metrics(console, _gmm_metrics(model, frame))
    path = out / "old_faithful_gmm.png"
    _save_mixture_figure(model, frame, path, "Old Faithful: 2-component Gaussian mixture")
    console.print(f"Figure written to {path}")


def _demo_nile(out: Path, console) -> None:
    """Two-state Gaussian hidden Markov model on the Nile flows (change after 1898)."""
    from lateo._cli_hmm import demo_nile

    demo_nile(out, console)


def _demo_orings(out: Path, console) -> None:
    """Bayesian logistic regression of O-ring distress on temperature (P at 31 F)."""
    from lateo._cli_bayes import demo_orings

    demo_orings(out, console)


# Later sections (PPCA, ...) register here; `lateo demo` runs them all in this order.
DEMOS: dict[str, DemoSection] = {
    "old-faithful": DemoSection("Gaussian mixture on Old Faithful", _demo_old_faithful),
    "nile": DemoSection("Hidden Markov model on the Nile flows", _demo_nile),
    "orings": DemoSection("Bayesian logistic regression on the O-ring data", _demo_orings),
}


@main.command()
@click.argument("sections", nargs=-1, type=click.Choice(list(DEMOS)))
@click.option(
    "--out", default="demo-output", show_default=True, type=click.Path(file_okay=False, path_type=Path),
    help="Folder for the figures (created if needed).",
)
@_clean_errors
def demo(sections, out):
    """Run the demos (all, or the SECTIONS named) and write their figures."""
    out.mkdir(parents=True, exist_ok=True)
    console = _console()
    for name in sections or DEMOS:
        console.rule(DEMOS[name].title)
        DEMOS[name].run(out, console)


@main.group()
def fit():
    """Fit a model to a CSV/Parquet file and save it (see `lateo fit gmm -h`)."""


def _fit_options(func):
    """Options shared by every ``lateo fit`` command."""
    options = [
        click.argument("data", type=click.Path(exists=True, dir_okay=False, path_type=Path)),
        click.option("--columns", help="Comma-separated columns to use (default: all, which must be numeric)."),
        click.option("--max-iter", type=click.IntRange(min=1), help="Maximum iterations (default: the estimator's)."),
        click.option("--tol", type=click.FloatRange(min=0), help="Convergence tolerance (default: the estimator's)."),
        click.option("--n-init", type=click.IntRange(min=1), help="Number of initialisations; the best is kept."),
        click.option("--random-state", type=click.IntRange(min=0), help="Seed, for reproducible fits."),
        click.option(
            "--out", "-o", required=True, type=click.Path(dir_okay=False, path_type=Path),
            help="Model file to write (e.g. model.npz).",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _fit_and_save(model, frame, out: Path, console):
    from lateo.io import save_model

    start = time.perf_counter()
    model.fit(frame)
    elapsed = time.perf_counter() - start
    save_model(model, out)
    console.print(f"{type(model).__name__} fitted on {frame.shape[0]} rows x {frame.shape[1]} columns in {elapsed:.2f} s.")
    return model


@fit.command("gmm")
@click.option("--components", "-k", required=True, type=click.IntRange(min=1), help="Number of mixture components.")
@click.option(
    "--covariance", default="full", show_default=True, type=click.Choice(["full", "tied", "diag", "spherical"]),
    help="Covariance structure.",
)
@click.option("--init", type=click.Choice(["k-means++", "kmeans", "random", "random_from_data"]), help="Initialisation.")
@click.option("--reg-covar", type=click.FloatRange(min=0), help="Added to covariance diagonals (default 1e-6).")
@_fit_options
@_clean_errors
def fit_gmm(data, columns, max_iter, tol, n_init, random_state, out, components, covariance, init, reg_covar):
    """Fit a Gaussian mixture to DATA (CSV or Parquet) and save it to --out."""
    frame = _select_columns(_read_table(data), columns, data)
    model = _build(
        _estimator_class("gmm"), n_components=components, covariance_type=covariance, max_iter=max_iter, tol=tol,
        n_init=n_init, init_params=init, random_state=random_state, reg_covar=reg_covar,
    )
    console = _console()
    _fit_and_save(model, frame, out, console)
    console.print(_gmm_table(model, [str(c) for c in frame.columns]))
    _print_metrics(console, _gmm_metrics(model, frame))
    console.print(f"Model saved to {out}")


@fit.command("kmeans")
@click.option("--clusters", "-k", required=True, type=click.IntRange(min=1), help="Number of clusters.")
@click.option("--init", type=click.Choice(["k-means++", "random"]), help="Initialisation.")
@_fit_options
@_clean_errors
def fit_kmeans(data, columns, max_iter, tol, n_init, random_state, out, clusters, init):
    """Fit k-means to DATA (CSV or Parquet) and save it to --out."""
    frame = _select_columns(_read_table(data), columns, data)
    model = _build(
        _estimator_class("kmeans"), n_clusters=clusters, max_iter=max_iter, tol=tol, n_init=n_init, init=init,
        random_state=random_state,
    )
    console = _console()
    _fit_and_save(model, frame, out, console)
    console.print(_kmeans_table(model, [str(c) for c in frame.columns]))
    _print_metrics(console, [("inertia", f"{float(model.inertia_):.6g}"), ("iterations", str(int(model.n_iter_)))])
    console.print(f"Model saved to {out}")


def _predict_frame(model, frame, columns, path: Path):
    """The columns of ``frame`` the model was fitted on, in its order."""
    names = [str(c) for c in getattr(model, "feature_names_in_", [])]
    n_features = getattr(model, "n_features_in_", None)
    if n_features is None and names:
        n_features = len(names)
    if n_features is None:
        raise click.ClickException("The model file holds an unfitted estimator; fit it first (lateo fit ...).")
    if not columns and names:
        missing = [n for n in names if n not in [str(c) for c in frame.columns]]
        if missing:
            raise click.ClickException(
                f"{path.name} lacks column(s) {missing} that the model was fitted on ({names}); "
                "rename them or pick columns in order with --columns."
            )
        columns = ",".join(names)
    selected = _select_columns(frame, columns, path)
    if selected.shape[1] != n_features:
        raise click.ClickException(
            f"The model was fitted on {n_features} feature(s), but {path.name} gives {selected.shape[1]} "
            f"({list(selected.columns)}); choose {n_features} with --columns."
        )
    if names:  # --columns picked them by position: use the model's names
        selected.columns = names
    return selected


@main.command()
@click.argument("model_path", metavar="MODEL", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("data", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--proba", is_flag=True, help="Also write each component's probability.")
@click.option("--columns", help="Comma-separated columns, in the model's order (default: the fitted names).")
@click.option("--out", "-o", type=click.Path(dir_okay=False, path_type=Path), help="CSV file to write (default: stdout).")
@_clean_errors
def predict(model_path, data, proba, columns, out):
    """Label each row of DATA with the MODEL's most likely component (CSV).

    For a progression model, DATA is a long table (ID, TIME, ...) of fitted
    subjects, and each row gets the fitted value of every feature.
    """
    import pandas as pd

    from lateo import _cli_progression as progression
    from lateo.io import load_model

    model = load_model(model_path)
    if progression.is_progression(model):
        for flag, given in (("--proba", proba), ("--columns", columns)):
            if given:
                raise click.BadParameter("does not apply to a progression model.", param_hint=flag)
        result = progression.predict_table(model, _read_table(data), data)
        _write_csv(result, out, f"Wrote fitted values for {len(result)} rows to {out}")
        return
    X = _predict_frame(model, _read_table(data), columns, data)
    result = pd.DataFrame({"label": model.predict(X)})
    if proba:
        if not hasattr(model, "predict_proba"):
            raise click.ClickException(f"{type(model).__name__} gives no probabilities; drop --proba.")
        probabilities = model.predict_proba(X)
        for k in range(probabilities.shape[1]):
            result[f"proba_{k}"] = probabilities[:, k]
    text = result.to_csv(index=False)
    if out is None:
        click.echo(text, nl=False)
    else:
        out.write_text(text)
        _console(stderr=True).print(f"Wrote {len(result)} predictions to {out}")


# --------------------------------------------------------------------------- hidden Markov models


@fit.command("hmm")
@click.argument("data", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--states", "-k", required=True, type=click.IntRange(min=1), help="Number of hidden states.")
@click.option(
    "--family", default="gaussian", show_default=True,
    type=click.Choice(["gaussian", "categorical", "poisson", "gmm"]),
    help="Emission distribution (categorical: one column of integer symbols 0, 1, ...; poisson: counts).",
)
@click.option(
    "--covariance", type=click.Choice(["diag", "full", "tied", "spherical"]),
    help="Covariance structure, gaussian and gmm only (default: diag).",
)
@click.option("--mix", type=click.IntRange(min=1), help="Gaussian components per state, gmm only (default: 1).")
@click.option("--columns", help="Comma-separated columns to use (default: all but --sequence-column).")
@click.option(
    "--sequence-column", metavar="NAME",
    help="Column whose value names each row's sequence; each sequence's rows must be contiguous, in time order.",
)
@click.option("--n-iter", default=100, show_default=True, type=click.IntRange(min=1), help="Maximum EM iterations.")
@click.option("--tol", type=click.FloatRange(min=0), help="Convergence tolerance on the log-likelihood gain.")
@click.option("--random-state", type=click.IntRange(min=0), help="Seed, for reproducible fits.")
@click.option(
    "--out", "-o", required=True, type=click.Path(dir_okay=False, path_type=Path),
    help="Model file to write (e.g. hmm.npz).",
)
@_clean_errors
def fit_hmm(data, states, family, covariance, mix, columns, sequence_column, n_iter, tol, random_state, out):
    """Fit a hidden Markov model to the sequence(s) in DATA and save it to --out.

    Rows are time steps, in file order; with --sequence-column, DATA holds
    several sequences (one per value of that column).
    """
    import numpy as np

    from lateo import _cli_hmm as hmm
    from lateo.io import save_model

    if covariance is not None and family not in ("gaussian", "gmm"):
        raise click.BadParameter(f"only applies to --family gaussian or gmm, not {family}.", param_hint="--covariance")
    if mix is not None and family != "gmm":
        raise click.BadParameter(f"only applies to --family gmm, not {family}.", param_hint="--mix")
    frame = _read_table(data)
    lengths = hmm.sequence_lengths(frame, sequence_column, data)[0] if sequence_column else None
    X = hmm.model_input(hmm.feature_frame(frame, columns, sequence_column, data), family, data)
    model = _build(
        hmm.hmm_class(family), n_components=states, covariance_type=covariance, n_mix=mix, n_iter=n_iter, tol=tol,
        random_state=random_state,
    )
    console = _console()
    start = time.perf_counter()
    model.fit(X, lengths)
    elapsed = time.perf_counter() - start
    names = [str(c) for c in X.columns]
    if getattr(model, "feature_names_in_", None) is None:  # so that `lateo decode` finds the columns
        model.feature_names_in_ = np.asarray(names, dtype=object)
    save_model(model, out)
    n_sequences = 1 if lengths is None else len(lengths)
    console.print(
        f"{type(model).__name__} fitted on {n_sequences} sequence(s), {X.shape[0]} rows x {X.shape[1]} "
        f"column(s), in {elapsed:.2f} s."
    )
    hmm.print_fit_summary(model, X, lengths, names, console)
    console.print(f"Model saved to {out}")


@main.command()
@click.argument("model_path", metavar="MODEL", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("data", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--algorithm", default="viterbi", show_default=True, type=click.Choice(["viterbi", "map"]),
    help="viterbi: the most probable state path; map: the most probable state at each row.",
)
@click.option("--sequence-column", metavar="NAME", help="Column whose value names each row's sequence (as in fit).")
@click.option("--columns", help="Comma-separated columns, in the model's order (default: the fitted names).")
@click.option("--out", "-o", type=click.Path(dir_okay=False, path_type=Path), help="CSV file to write (default: stdout).")
@_clean_errors
def decode(model_path, data, algorithm, sequence_column, columns, out):
    """Decode the hidden state of each row of DATA with an HMM MODEL (CSV).

    Writes the state of each row and each state's posterior probability
    (proba_0, proba_1, ...), and prints the log-likelihood of DATA.
    """
    import pandas as pd

    from lateo import _cli_hmm as hmm
    from lateo.io import load_model

    model = load_model(model_path)
    if not (hasattr(model, "decode") and hasattr(model, "transmat_")):
        raise click.ClickException(
            f"{model_path.name} holds a {type(model).__name__}, not a fitted hidden Markov model; use `lateo predict`."
        )
    frame = _read_table(data)
    lengths, ids = hmm.sequence_lengths(frame, sequence_column, data) if sequence_column else (None, None)
    if sequence_column:
        frame = frame.drop(columns=[c for c in frame.columns if str(c) == sequence_column])
    X = hmm.model_input(_predict_frame(model, frame, columns, data), model, data)
    log_prob, states = model.decode(X, lengths, algorithm=algorithm)
    log_likelihood, posteriors = model.score_samples(X, lengths)
    result = pd.DataFrame({sequence_column: ids} if sequence_column else {})
    result["state"] = states
    for k in range(posteriors.shape[1]):
        result[f"proba_{k}"] = posteriors[:, k]
    text = result.to_csv(index=False)
    if out is None:
        click.echo(text, nl=False)
    console = _console(stderr=True)
    n_sequences = 1 if lengths is None else len(lengths)
    console.print(f"log-likelihood of {data.name}: {float(log_likelihood):.4f}  ({len(X)} rows, {n_sequences} sequence(s))")
    if algorithm == "viterbi":
        console.print(f"log-probability of the Viterbi path (with the data): {float(log_prob):.4f}")
    if out is not None:
        out.write_text(text)
        console.print(f"Wrote {len(result)} decoded states to {out}")


# --------------------------------------------------------------------------- disease progression


def _write_csv(frame, out: Path | None, message: str) -> None:
    """``frame`` as CSV to ``out`` (with ``message`` on stderr), or to stdout."""
    text = frame.to_csv(index=False)
    if out is None:
        click.echo(text, nl=False)
    else:
        out.write_text(text)
        _console(stderr=True).print(message)


@fit.command("progression")
@click.argument("data", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--model", "model_kind", default="logistic", show_default=True, type=click.Choice(["logistic", "linear"]),
    help="Population curve of each feature (logistic: values in (0, 1)).",
)
@click.option("--n-iter", type=click.IntRange(min=1), help="SAEM iterations (default: the estimator's, 1000).")
@click.option("--chains", type=click.IntRange(min=1), help="MCMC chains (default 2; R-hat needs at least 2).")
@click.option("--burn-in", type=click.IntRange(min=0), help="Burn-in iterations (default: half of --n-iter).")
@click.option("--sources", type=click.IntRange(min=0),
              help="Independent sources of space shifts (several features; at most features - 1; default 0).")
@click.option("--random-state", type=click.IntRange(min=0), help="Seed, for reproducible fits.")
@click.option("--dtype", type=click.Choice(["float64", "float32"]),
              help="Precision of the SAEM iterations (default float64; float32 is Leaspy's, and faster).")
@click.option("--features", help="Comma-separated feature columns (default: every column but ID and TIME).")
@click.option("--id-col", default="ID", show_default=True, help="Column naming each row's subject.")
@click.option("--time-col", default="TIME", show_default=True, help="Column with the time (age) of each visit.")
@click.option(
    "--out", "-o", required=True, type=click.Path(dir_okay=False, path_type=Path),
    help="Model file to write (e.g. progression.npz).",
)
@click.option("--plot", type=click.Path(dir_okay=False, path_type=Path), help="Also save the spaghetti plot (PNG).")
@_clean_errors
def fit_progression(data, model_kind, n_iter, chains, burn_in, sources, random_state, dtype, features, id_col,
                    time_col, out, plot):  # fmt: skip
    """Fit a disease-progression model (MCMC-SAEM) to the long table DATA and save it to --out.

    DATA has one row per visit: a subject ID column, a TIME column and one
    column per feature (empty cells are missing observations).
    """
    from lateo import _cli_progression as progression

    progression.fit_progression(data, _read_table(data), model_kind, n_iter, chains, burn_in, random_state, out,
                                features, id_col, time_col, plot, n_sources=sources, dtype=dtype)  # fmt: skip


@main.command()
@click.argument("model_path", metavar="MODEL", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--subjects", "-n", required=True, type=click.IntRange(min=1), help="Number of subjects.")
@click.option(
    "--visits", default="0,1,2,3", show_default=True,
    help="Comma-separated visit times, relative to each subject's baseline age.",
)
@click.option("--random-state", type=click.IntRange(min=0), help="Seed, for a reproducible cohort.")
@click.option("--out", "-o", type=click.Path(dir_okay=False, path_type=Path), help="CSV file to write (default: stdout).")
@click.option("--truth", type=click.Path(dir_okay=False, path_type=Path), help="Also write the true tau, xi per subject (CSV).")
@_clean_errors
def simulate(model_path, subjects, visits, random_state, out, truth):
    """Simulate a cohort (long CSV: ID, TIME, features) from a progression MODEL."""
    from lateo import _cli_progression as progression
    from lateo.io import load_model

    cohort, individual = progression.simulate(load_model(model_path), subjects, visits, random_state)
    if truth is not None:
        individual.reset_index().to_csv(truth, index=False)
    _write_csv(cohort, out, f"Wrote {len(cohort)} visits of {subjects} subjects to {out}")
    if truth is not None:
        _console(stderr=True).print(f"Wrote the true individual parameters to {truth}")


from lateo._cli_vae import fit_vae  # noqa: E402  (the `lateo fit vae` command)

fit.add_command(fit_vae)

if __name__ == "__main__":  # pragma: no cover
    main()
