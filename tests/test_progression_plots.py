"""Progression-model figures: the panels they draw, on one small fitted model (Agg backend); and the
save / load round trip of that in-memory fit."""

from __future__ import annotations

import warnings

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from jax.tree_util import tree_leaves  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from lateo import plots  # noqa: E402
from lateo.io import load_model, save_model  # noqa: E402
from lateo.models.progression import ProgressionModel, simulate_cohort  # noqa: E402
from lateo.models.progression import _model as M  # noqa: E402
from lateo.plots import plot_individual_parameters, plot_progression, plot_saem_traces  # noqa: E402

FEATURES = ["a", "b"]
THETA = M.Theta(M.Population(np.asarray(70.0), np.array([10.0, 20.0]), np.array([1.0, 2.0])),
                np.asarray(5.0), np.asarray(0.5), np.array([0.5, 1.0]))  # fmt: skip
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def cohort():
    df, _ = simulate_cohort("linear", THETA, 50, np.arange(4) * 2.0 - 3, np.random.default_rng(1), FEATURES)
    return df


@pytest.fixture(scope="module")
def model(cohort):
    return ProgressionModel("linear", n_iter=100, n_chains=2, random_state=0, progress=False).fit(cohort)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _lines(ax):
    return [line for line in ax.get_lines() if len(line.get_xdata()) > 2]


def test_reexported_from_plots():
    for name in ("plot_progression", "plot_saem_traces", "plot_individual_parameters"):
        assert name in plots.__all__ and callable(getattr(plots, name))


def test_plot_progression_one_panel_per_feature(model, cohort, tmp_path):
    fig = plot_progression(model, cohort, max_subjects=10)
    assert isinstance(fig, Figure)
    assert len(fig.axes) == len(FEATURES)
    for ax, name in zip(fig.axes, FEATURES):
        assert ax.get_title() == name
        assert len(_lines(ax)) == 10 + 1  # 10 subjects and the population curve
        assert len(ax.collections) == 10  # their observations
        population = max(ax.get_lines(), key=lambda line: line.get_linewidth())
        x, y = population.get_xdata(), population.get_ydata()
        assert x.min() <= cohort["TIME"].min() and x.max() >= cohort["TIME"].max()
        # the linear curve at tau = xi = 0: p_k + v_k (t - t0)
        np.testing.assert_allclose(y, model.position_[name] + model.speed_[name] * (x - model.t0_), rtol=1e-8)
    fig.savefig(tmp_path / "spaghetti.png")
    assert (tmp_path / "spaghetti.png").read_bytes()[:8] == PNG_MAGIC


def test_plot_progression_individual_curves_follow_predict(model, cohort):
    ids = [0, 7]
    fig = plot_progression(model, cohort, ids=ids)
    ax = fig.axes[0]
    curves = [line for line in _lines(ax) if line.get_linewidth() < 2]
    assert len(curves) == 2
    for line, i in zip(curves, ids):
        times = cohort.loc[cohort["ID"] == i, "TIME"]
        x = line.get_xdata()
        assert x.min() == pytest.approx(times.min()) and x.max() == pytest.approx(times.max())
        expected = model.predict([i], x)["a"].to_numpy()
        np.testing.assert_allclose(line.get_ydata(), expected, rtol=1e-10)


def test_plot_progression_without_data_and_on_given_axes(model, cohort):
    fig = plot_progression(model, max_subjects=5)
    assert len(fig.axes) == 2 and all(len(ax.collections) == 0 for ax in fig.axes)
    assert len(_lines(fig.axes[0])) == 6
    fig2, axes = plt.subplots(1, 2)
    assert plot_progression(model, cohort.set_index(["ID", "TIME"]), ax=axes, max_subjects=3) is fig2
    with pytest.raises(ValueError, match="2 Axes"):
        plot_progression(model, cohort, ax=axes[0])
    with pytest.raises(ValueError, match="not fitted subjects"):
        plot_progression(model, cohort, ids=[999])


def test_plot_saem_traces(model):
    fig = plot_saem_traces(model)
    names = list(model.params_.index)
    assert len(fig.axes) == len(names)
    for ax, name in zip(fig.axes, names):
        assert ax.get_title().startswith(name) and "R-hat" in ax.get_title()
        assert len(_lines(ax)) == 2  # one per chain
        burn_in = [line for line in ax.get_lines() if len(line.get_xdata()) == 2]
        assert burn_in and burn_in[0].get_xdata()[0] == model.burn_in_
    fig = plot_saem_traces(model, parameters=["t0", "tau_std"])
    assert len(fig.axes) == 2
    with pytest.raises(ValueError, match="unknown parameter"):
        plot_saem_traces(model, parameters=["nope"])


def test_plot_individual_parameters(model):
    fig = plot_individual_parameters(model)
    assert len(fig.axes) == 3
    hist_tau, hist_xi, scatter = fig.axes
    assert len(hist_tau.patches) > 0 and len(hist_xi.patches) > 0
    offsets = scatter.collections[0].get_offsets()
    np.testing.assert_allclose(offsets[:, 0], model.individual_parameters_["tau"])
    np.testing.assert_allclose(offsets[:, 1], model.individual_parameters_["xi"])


def test_unfitted_model_raises():
    from lateo.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        plot_progression(ProgressionModel())


def test_save_load_round_trip_of_fitted_model(model, cohort, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every fitted attribute is saved
        save_model(model, tmp_path / "model.npz")
    loaded = load_model(tmp_path / "model.npz")
    pd.testing.assert_frame_equal(loaded.predict(cohort), model.predict(cohort))
    pd.testing.assert_frame_equal(loaded.predict([0, 3], [60.0, 70.0]), model.predict([0, 3], [60.0, 70.0]))
    pd.testing.assert_frame_equal(loaded.traces_, model.traces_)
    pd.testing.assert_frame_equal(loaded.individual_parameters_, model.individual_parameters_)
    pd.testing.assert_series_equal(loaded.params_, model.params_)
    for saved, original in zip(tree_leaves(loaded.theta_), tree_leaves(model.theta_)):
        assert np.shape(saved) == np.shape(original)
        np.testing.assert_array_equal(saved, original)
    assert type(loaded.theta_) is type(model.theta_) and type(loaded.hyper_) is type(model.hyper_)
    pd.testing.assert_frame_equal(loaded.simulate(4, [0, 1], random_state=2)[0],
                                  model.simulate(4, [0, 1], random_state=2)[0])  # fmt: skip
