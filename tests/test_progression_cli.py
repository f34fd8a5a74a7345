"""``lateo fit progression``, ``lateo simulate`` and ``lateo predict`` on a progression model (click's
test runner), and the save / load round trip of a fitted ProgressionModel (pandas attributes included)."""

from __future__ import annotations

import io
import json
import warnings

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from click.testing import CliRunner  # noqa: E402

from jax.tree_util import tree_leaves as jax_leaves  # noqa: E402

from lateo.cli import main  # noqa: E402
from lateo.io import load_model, save_model  # noqa: E402
from lateo.models.kmeans import KMeans  # noqa: E402
from lateo.models.progression import ProgressionModel, simulate_cohort  # noqa: E402
from lateo.models.progression import _model as M  # noqa: E402

FEATURES = ["memory", "motor"]
THETA = M.Theta(M.Population(np.asarray(70.0), np.log(np.array([1.0, 2.0])), np.log(np.array([0.1, 0.05]))),
                np.asarray(5.0), np.asarray(0.5), np.array([0.05, 0.05]))  # fmt: skip
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def runner():
    return CliRunner()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("progression_cli")


@pytest.fixture(scope="module")
def cohort():
    """60 subjects, 5 visits, two logistic features (and a column left out with --features), string IDs
    and one missing observation."""
    df, _ = simulate_cohort("logistic", THETA, 60, np.arange(5) * 1.5 - 3, np.random.default_rng(0), FEATURES)
    df = df.rename(columns={"ID": "subject", "TIME": "age"})
    df["site"] = np.arange(len(df)) % 3
    df["subject"] = "s" + df["subject"].astype(str).str.zfill(2)
    df.loc[3, "motor"] = np.nan
    return df


@pytest.fixture(scope="module")
def csv(cohort, workdir):
    path = workdir / "cohort.csv"
    cohort.to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def fitted(runner, csv, workdir):
    out, plot = workdir / "prog.npz", workdir / "prog.png"
    result = runner.invoke(
        main, ["fit", "progression", str(csv), "--model", "logistic", "--n-iter", "120", "--chains", "2",
               "--random-state", "0", "--id-col", "subject", "--time-col", "age", "--features", "memory,motor",
               "--dtype", "float32", "--out", str(out),
               "--plot", str(plot)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return out, plot, result


def test_fit_prints_table_saves_model_and_plot(fitted, cohort):
    out, plot, result = fitted
    assert "Population parameters" in result.output
    for name in ("t0", "tau_std", "xi_std", "noise_std[memory]", "R-hat", "Model saved to"):
        assert name in result.output
    assert "Traceback" not in result.output
    assert plot.read_bytes()[:8] == PNG_MAGIC
    model = load_model(out)
    assert isinstance(model, ProgressionModel)
    assert model.features_ == FEATURES
    assert (model.id_col, model.time_col, model.n_iter_, model.n_chains) == ("subject", "age", 120, 2)
    assert model.dtype == "float32" and model.params_.dtype == np.float64
    assert sorted(model.individual_parameters_.index) == sorted(cohort["subject"].unique())


def test_predict_dispatches_to_progression(runner, fitted, csv, cohort, workdir):
    out = workdir / "fitted.csv"
    result = runner.invoke(main, ["predict", str(fitted[0]), str(csv), "--out", str(out)])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out)
    assert list(table.columns) == ["subject", "age", *FEATURES]
    expected = load_model(fitted[0]).predict(cohort)
    np.testing.assert_allclose(table[FEATURES].to_numpy(), expected.to_numpy(), rtol=1e-10)
    np.testing.assert_array_equal(table["subject"], cohort["subject"])
    assert table[FEATURES].notna().all().all()  # fitted values also where the observation is missing


def test_predict_to_stdout_and_progression_only_options(runner, fitted, csv):
    result = runner.invoke(main, ["predict", str(fitted[0]), str(csv)])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("subject,age,memory,motor")
    result = runner.invoke(main, ["predict", str(fitted[0]), str(csv), "--proba"])
    assert result.exit_code == 2 and "progression" in result.output


def test_simulate_cohort_and_truth(runner, fitted, workdir):
    out, truth = workdir / "sim.csv", workdir / "truth.csv"
    args = ["simulate", str(fitted[0]), "--subjects", "7", "--visits", "0,1,2.5", "--random-state", "3"]
    result = runner.invoke(main, [*args, "--out", str(out), "--truth", str(truth)])
    assert result.exit_code == 0, result.output
    sim, true = pd.read_csv(out), pd.read_csv(truth)
    assert list(sim.columns) == ["subject", "age", *FEATURES] and len(sim) == 21
    assert list(true.columns) == ["subject", "tau", "xi"] and len(true) == 7
    assert ((sim[FEATURES] > 0) & (sim[FEATURES] < 1)).all().all()
    np.testing.assert_allclose(np.diff(sim["age"].to_numpy().reshape(7, 3), axis=1), [[1.0, 1.5]] * 7)
    again = runner.invoke(main, args)  # same seed, to stdout: the same cohort
    assert again.exit_code == 0
    pd.testing.assert_frame_equal(pd.read_csv(io.StringIO(again.output)), sim)


# --------------------------------------------------------------------------- bad input


def test_missing_time_column_is_a_clean_error(runner, cohort, workdir):
    path = workdir / "no_time.csv"
    cohort.drop(columns="age").to_csv(path, index=False)
    result = runner.invoke(main, ["fit", "progression", str(path), "--id-col", "subject", "--out",
                                  str(workdir / "x.npz")])  # fmt: skip
    assert result.exit_code == 1
    assert isinstance(result.exception, SystemExit)
    assert "no 'TIME' column" in result.output and "--time-col" in result.output
    assert "Traceback" not in result.output
    assert not (workdir / "x.npz").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--features", "memory,nope"], "nope"),
        (["--model", "logistic", "--features", "memory", "--id-col", "subject", "--time-col", "age"], None),
    ],
)
def test_bad_features_and_values(runner, cohort, csv, workdir, args, message):
    if message is None:  # logistic values outside (0, 1): the data layer's message, cleanly
        path = workdir / "scaled.csv"
        cohort.assign(memory=cohort["memory"] * 30).to_csv(path, index=False)
        result = runner.invoke(main, ["fit", "progression", str(path), *args, "--out", str(workdir / "y.npz")])
        assert result.exit_code == 1 and "outside the open interval" in result.output
    else:
        result = runner.invoke(main, ["fit", "progression", str(csv), *args, "--id-col", "subject", "--time-col",
                                      "age", "--out", str(workdir / "y.npz")])  # fmt: skip
        assert result.exit_code == 2 and message in result.output
    assert "Traceback" not in result.output


def test_simulate_and_predict_errors(runner, fitted, cohort, workdir):
    bad_visits = runner.invoke(main, ["simulate", str(fitted[0]), "--subjects", "3", "--visits", "0,a"])
    assert bad_visits.exit_code == 2 and "--visits" in bad_visits.output
    kmeans = workdir / "kmeans.npz"
    save_model(KMeans(2, random_state=0, progress=False).fit(np.random.default_rng(0).normal(size=(20, 2))), kmeans)
    result = runner.invoke(main, ["simulate", str(kmeans), "--subjects", "3"])
    assert result.exit_code == 1 and "progression model" in result.output
    unknown = workdir / "unknown.csv"
    cohort.assign(subject="new-subject").head(3).to_csv(unknown, index=False)
    result = runner.invoke(main, ["predict", str(fitted[0]), str(unknown)])
    assert result.exit_code == 1 and "fitted subjects" in result.output and "Traceback" not in result.output


# --------------------------------------------------------------------------- save / load


def test_save_load_round_trip(fitted, cohort, tmp_path):
    model = load_model(fitted[0])
    path = tmp_path / "again.npz"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every fitted attribute is saved
        save_model(model, path)
    loaded = load_model(path)
    pd.testing.assert_frame_equal(loaded.predict(cohort), model.predict(cohort))
    pd.testing.assert_frame_equal(loaded.traces_, model.traces_)
    assert loaded.traces_.columns.names == ["chain", "parameter"]
    pd.testing.assert_frame_equal(loaded.individual_parameters_, model.individual_parameters_)
    for name in ("params_", "rhat_", "position_", "speed_", "noise_std_"):
        pd.testing.assert_series_equal(getattr(loaded, name), getattr(model, name))
    assert isinstance(loaded.theta_, M.Theta) and isinstance(loaded.theta_.population, M.Population)
    assert isinstance(loaded.hyper_, M.Hyper)
    for saved, original in zip(jax_leaves(loaded.theta_) + jax_leaves(loaded.hyper_),
                               jax_leaves(model.theta_) + jax_leaves(model.hyper_)):  # fmt: skip
        assert np.shape(saved) == np.shape(original)  # 0-d arrays stay 0-d (t0, tau_std, ...)
        np.testing.assert_array_equal(saved, original)
    assert np.shape(loaded.theta_.tau_std) == ()
    np.testing.assert_array_equal(loaded.objective_, model.objective_)
    sim, truth = loaded.simulate(5, [0.0, 1.0], random_state=1)
    sim2, truth2 = model.simulate(5, [0.0, 1.0], random_state=1)
    pd.testing.assert_frame_equal(sim, sim2)
    pd.testing.assert_frame_equal(truth, truth2)


def test_pandas_values_round_trip_without_pickle(tmp_path):
    """Series / DataFrame attributes keep values, dtypes, index, names and MultiIndex columns."""
    model = KMeans(2, progress=False)
    model.table_ = pd.DataFrame({"x": [1.5, 2.0], "n": [1, 2], "flag": [True, False], "label": ["a", "b"]},
                                index=pd.Index(["u", "v"], name="ID"))  # fmt: skip
    model.wide_ = pd.DataFrame(np.arange(6.0).reshape(2, 3), index=pd.RangeIndex(2, name="iteration"),
                               columns=pd.MultiIndex.from_product([[0], ["a", "b", "c"]], names=["chain", "p"]))
    model.series_ = pd.Series([0.1, 0.2], index=[10, 20], name="rate")
    model.empty_ = pd.DataFrame(index=pd.Index([], dtype=float))
    path = save_model(model, tmp_path / "pandas.npz")
    with np.load(path, allow_pickle=False) as archive:  # plain arrays only
        assert all(archive[name].dtype.kind in "biufcU" for name in archive.files)
        meta = json.loads(archive["__lateo_metadata__"].tobytes())
    assert "__dataframe__" in meta["attributes"]["table_"]
    loaded = load_model(path)
    for name in ("table_", "wide_", "empty_"):
        pd.testing.assert_frame_equal(getattr(loaded, name), getattr(model, name))
    pd.testing.assert_series_equal(loaded.series_, model.series_)


def test_unsupported_pandas_values_warn_and_are_skipped(tmp_path):
    model = KMeans(2, progress=False)
    model.cat_ = pd.Series(pd.Categorical(["a", "b"]))
    model.mixed_ = pd.DataFrame({"o": [None, "a"]}, dtype=object)
    with pytest.warns(UserWarning, match="not saved"):
        save_model(model, tmp_path / "skip.npz")
    loaded = load_model(tmp_path / "skip.npz")
    assert not hasattr(loaded, "cat_") and not hasattr(loaded, "mixed_")


def test_sources_option(runner, csv, workdir):
    """--sources reaches the estimator: two features allow one source, not two (a clean error; fits with
    sources are tested in test_progression_sources.py)."""
    base = ["fit", "progression", str(csv), "--features", "memory,motor", "--id-col", "subject", "--time-col", "age"]
    bad = runner.invoke(main, [*base, "--sources", "2", "--out", str(workdir / "s2.npz")])
    assert bad.exit_code == 1 and "n_sources must be at most" in bad.output and "Traceback" not in bad.output
    assert not (workdir / "s2.npz").exists()
