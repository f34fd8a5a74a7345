"""Disease-progression pieces of the command line: ``lateo fit progression``, ``lateo simulate``
and the progression branch of ``lateo predict``.

Kept apart from :mod:`lateo.cli` so that both stay short; the commands there
import this module on demand (it needs numpy, pandas and rich).
"""

from __future__ import annotations

import time
from pathlib import Path

import click
import numpy as np

from lateo.cli import _build, _console, _fmt, _print_metrics

_MAX_PARAMETERS_SHOWN = 40


def is_progression(model) -> bool:
    """Whether ``model`` is a (fitted or not) progression model."""
    from lateo.models.progression import ProgressionModel

    return isinstance(model, ProgressionModel)


def parse_names(text: str | None, option: str):
    """``"a,b"`` as ``["a", "b"]`` (``None`` stays ``None``)."""
    if text is None:
        return None
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names or len(set(names)) != len(names):
        raise click.BadParameter("give one or more distinct comma-separated names.", param_hint=option)
    return names


def parse_visits(text: str):
    """``"0,1,2.5"`` as a float array (visit times relative to each subject's baseline)."""
    try:
        visits = np.array([float(v) for v in text.split(",") if v.strip()], dtype=float)
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a comma-separated list of numbers, e.g. \"0,1,2,3\".",
                                 param_hint="--visits") from None  # fmt: skip
    if visits.size == 0 or not np.all(np.isfinite(visits)):
        raise click.BadParameter(f"{text!r}: give at least one finite visit time, e.g. \"0,1,2,3\".",
                                 param_hint="--visits")  # fmt: skip
    return visits


def check_long_frame(frame, id_col: str, time_col: str, features, path: Path) -> None:
    """The ID / TIME / feature columns exist: a one-line message naming the options otherwise."""
    columns = [str(c) for c in frame.columns]
    for name, option in ((id_col, "--id-col"), (time_col, "--time-col")):
        if name not in columns:
            raise click.ClickException(
                f"{path.name} has no {name!r} column (columns: {columns}); rename it or name the column with {option}."
            )
    if features:
        missing = [f for f in features if f not in columns]
        if missing:
            raise click.BadParameter(f"column(s) {missing} not found; {path.name} has columns {columns}.",
                                     param_hint="--features")  # fmt: skip
        clash = [f for f in features if f in (id_col, time_col)]
        if clash:
            raise click.BadParameter(f"{clash} are the ID / TIME columns, not features.", param_hint="--features")


def population_table(model):
    """A rich table of the population parameters (natural scale) with their R-hat across chains."""
    from rich.markup import escape
    from rich.table import Table

    rhat = getattr(model, "rhat_", None)
    table = Table(title="Population parameters")
    table.add_column("parameter")
    table.add_column("estimate", justify="right")
    table.add_column("R-hat", justify="right")
    names = list(model.params_.index)
    for name in names[:_MAX_PARAMETERS_SHOWN]:
        value = np.nan if rhat is None or name not in rhat.index else float(rhat[name])
        table.add_row(escape(str(name)), _fmt(model.params_[name]), "n/a" if not np.isfinite(value) else f"{value:.3f}")
    if len(names) > _MAX_PARAMETERS_SHOWN:
        table.caption = f"first {_MAX_PARAMETERS_SHOWN} of {len(names)} parameters shown"
    return table


def population_notes(model) -> list[str]:
    """How to read the population table (printed under it)."""
    notes = []
    if model.model == "logistic":
        notes.append("logistic curves: position g gives the value 1/(1+g) at t0; speed is the slope at t0.")
    rhat = getattr(model, "rhat_", None)
    if rhat is not None and np.isfinite(rhat.to_numpy(dtype=float)).any():
        notes.append("R-hat across chains over burn-in's second half; well above 1.1: raise --n-iter.")
    return notes


def fit_metrics(model, n_rows: int) -> list[tuple[str, str]]:
    acceptance = getattr(model, "acceptance_rate_", {}) or {}
    metrics = [
        ("subjects", str(len(model.individual_parameters_))),
        ("rows", str(n_rows)),
        ("iterations", f"{int(model.n_iter_)} (burn-in {int(model.burn_in_)})"),
        ("chains", str(int(model.n_chains))),
    ]
    objective = np.asarray(getattr(model, "objective_", []), dtype=float)
    if objective.size:
        metrics.append(("complete log-lik / obs", f"{objective[-1]:.4f}  (last iteration)"))
    if "individual" in acceptance:
        metrics.append(("acceptance (individual)", f"{float(acceptance['individual']):.3f}"))
    if "population" in acceptance:
        metrics.append(("acceptance (population)", f"{float(np.mean(acceptance['population'])):.3f}  (mean)"))
    return metrics


def save_spaghetti(model, frame, path: Path) -> None:
    """``plot_progression`` of the fitted model on its data, as an image file."""
    from lateo.plots import _pyplot, plot_progression

    fig = plot_progression(model, frame)
    fig.suptitle(f"{model.model} progression model: population curves and individual fits")
    try:
        fig.savefig(path, dpi=120)
    finally:
        _pyplot().close(fig)


def fit_progression(data, frame, model_kind, n_iter, chains, burn_in, random_state, out, features, id_col, time_col,
                    plot, n_sources=None, dtype=None):  # fmt: skip
    """``lateo fit progression``: fit, print the summary, save the model (and the figure)."""
    from lateo.io import save_model
    from lateo.models.progression import ProgressionModel

    features = parse_names(features, "--features")
    check_long_frame(frame, id_col, time_col, features, data)
    if plot is not None and plot.suffix.lower() not in (".png", ".pdf", ".svg", ".jpg", ".jpeg"):
        raise click.BadParameter(f"{plot} should end in .png, .pdf, .svg or .jpg.", param_hint="--plot")
    model = _build(ProgressionModel, model=model_kind, n_iter=n_iter, n_chains=chains, burn_in=burn_in,
                   n_sources=n_sources, random_state=random_state, id_col=id_col, time_col=time_col,
                   dtype=dtype)  # fmt: skip
    console = _console()
    start = time.perf_counter()
    try:
        model.fit(frame, features=features)
    except TypeError as exc:  # non-numeric columns: the data layer names them
        raise click.ClickException(str(exc)) from None
    elapsed = time.perf_counter() - start
    save_model(model, out)
    console.print(
        f"ProgressionModel({model_kind!r}) fitted on {len(model.individual_parameters_)} subjects, "
        f"{len(model.features_)} feature(s) ({', '.join(map(str, model.features_))}), in {elapsed:.2f} s."
    )
    console.print(population_table(model))
    for note in population_notes(model):
        console.print(note, markup=False, style="dim")
    _print_metrics(console, fit_metrics(model, frame.shape[0]))
    console.print(f"Model saved to {out}")
    if plot is not None:
        save_spaghetti(model, frame, plot)
        console.print(f"Figure written to {plot}")
    return model


def predict_table(model, frame, path: Path):
    """``lateo predict`` for a progression model: ID, TIME and the fitted value of each feature per row."""
    check_long_frame(frame, model.id_col, model.time_col, None, path)
    try:
        fitted = model.predict(frame)
    except TypeError as exc:
        raise click.ClickException(str(exc)) from None
    result = frame[[c for c in frame.columns if str(c) in (model.id_col, model.time_col)]].copy()
    for name in model.features_:
        result[name] = fitted[name].to_numpy()
    return result


def simulate(model, subjects: int, visits: str, random_state):
    """``lateo simulate``: a cohort (long frame) and the true individual parameters."""
    if not is_progression(model):
        raise click.ClickException(
            f"`lateo simulate` needs a progression model (lateo fit progression), not a {type(model).__name__}."
        )
    if not hasattr(model, "theta_"):
        raise click.ClickException("The model file holds an unfitted progression model; fit it first.")
    return model.simulate(subjects, parse_visits(visits), random_state=random_state)
