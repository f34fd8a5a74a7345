"""The ``lateo`` command line, through click's test runner."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from lateo.cli import main
from lateo.datasets import make_gaussian_mixture
from lateo.io import load_model

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def runner():
    return CliRunner()


@pytest.fixture(scope="module")
def frame():
    X, _ = make_gaussian_mixture(100, n_components=2, n_features=2, separation=5.0, random_state=3)
    df = pd.DataFrame(X, columns=["x", "y"])
    df.insert(0, "name", [f"row{i}" for i in range(len(df))])
    return df


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("cli")


@pytest.fixture(scope="module")
def csv(frame, workdir):
    path = workdir / "data.csv"
    frame.to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def gmm_file(runner, csv, workdir):
    out = workdir / "gmm.npz"
    result = runner.invoke(
        main, ["fit", "gmm", str(csv), "--components", "2", "--columns", "x,y", "--random-state", "0",
               "--covariance", "diag", "--max-iter", "50", "--out", str(out)],
    )
    assert result.exit_code == 0, result.output
    return out, result


@pytest.fixture(scope="module")
def demo_run(runner, workdir):
    out = workdir / "demo"
    return out, runner.invoke(main, ["demo", "--out", str(out)])


def _fails_cleanly(result, message, code=None):
    assert result.exit_code != 0 if code is None else result.exit_code == code, result.output
    assert isinstance(result.exception, SystemExit)  # click's exit, not a crash
    assert "Traceback" not in result.output
    assert message in result.output


# --------------------------------------------------------------------------- demo and help


def test_demo_prints_fit_and_writes_png(demo_run):
    out, result = demo_run
    assert result.exit_code == 0, result.output
    png = out / "old_faithful_gmm.png"
    assert png.read_bytes()[:8] == PNG_MAGIC
    assert str(png) in result.output.replace("\n", "")
    assert "log-likelihood" in result.output
    # The two-component full-covariance maximum for Old Faithful (mclust: -1130.264, BIC 2322.192).
    assert "-1130.26" in result.output and "2322.19" in result.output
    assert "converged" in result.output


def test_demo_nile_finds_the_change_after_1898(demo_run):
    out, result = demo_run
    assert result.exit_code == 0, result.output
    assert "Hidden Markov model on the Nile" in result.output
    assert "Decoded state changes between 1898 and 1899" in result.output
    assert result.output.count("Decoded state changes") == 1  # a single change point
    assert "-629.80" in result.output  # the two-state maximum likelihood (hmmlearn: -629.8045)
    assert "expected duration" in result.output and "mean flow" in result.output
    png = out / "nile_hmm.png"
    assert png.read_bytes()[:8] == PNG_MAGIC
    assert str(png) in result.output.replace("\n", "")


def test_demo_section_by_name(runner, workdir):
    result = runner.invoke(main, ["demo", "--help"])
    assert result.exit_code == 0 and "old-faithful" in result.output and "nile" in result.output


def test_demo_rejects_unknown_section(runner, workdir):
    result = runner.invoke(main, ["demo", "nope", "--out", str(workdir / "d")])
    _fails_cleanly(result, "nope", code=2)


def test_help_and_version(runner):
    result = runner.invoke(main, ["--help"])
    assert result.exit_code == 0 and "fit" in result.output and "predict" in result.output
    result = runner.invoke(main, ["--version"])
    assert result.exit_code == 0 and result.output.startswith("lateo ")
    result = runner.invoke(main, ["fit", "gmm", "--help"])
    assert result.exit_code == 0 and "--components" in result.output


# --------------------------------------------------------------------------- fit + predict


def test_fit_gmm_summary_and_model_file(gmm_file, frame):
    out, result = gmm_file
    assert "Model saved to" in result.output and "log-likelihood" in result.output
    model = load_model(out)
    assert type(model).__name__ == "GaussianMixture"
    assert model.covariance_type == "diag" and model.max_iter == 50 and model.random_state == 0
    assert list(model.feature_names_in_) == ["x", "y"]


def test_predict_to_file_matches_the_model(runner, gmm_file, csv, frame, workdir):
    model_path, _ = gmm_file
    out = workdir / "labels.csv"
    result = runner.invoke(main, ["predict", str(model_path), str(csv), "--proba", "--out", str(out)])
    assert result.exit_code == 0, result.output
    labels = pd.read_csv(out)
    assert list(labels.columns) == ["label", "proba_0", "proba_1"] and len(labels) == len(frame)
    model = load_model(model_path)
    X = frame[["x", "y"]]
    np.testing.assert_array_equal(labels["label"], model.predict(X))
    np.testing.assert_allclose(labels[["proba_0", "proba_1"]], model.predict_proba(X), rtol=1e-15)


def test_predict_to_stdout(runner, gmm_file, csv, frame):
    model_path, _ = gmm_file
    result = runner.invoke(main, ["predict", str(model_path), str(csv)])
    assert result.exit_code == 0, result.output
    labels = pd.read_csv(io.StringIO(result.stdout))
    assert list(labels.columns) == ["label"] and len(labels) == len(frame)


def test_predict_selects_columns_by_position(runner, gmm_file, frame, workdir):
    model_path, _ = gmm_file
    renamed = workdir / "renamed.csv"
    frame.rename(columns={"x": "u", "y": "v"}).to_csv(renamed, index=False)
    result = runner.invoke(main, ["predict", str(model_path), str(renamed), "--columns", "u,v"])
    assert result.exit_code == 0, result.output
    expected = load_model(model_path).predict(frame[["x", "y"]])
    np.testing.assert_array_equal(pd.read_csv(io.StringIO(result.stdout))["label"], expected)


def test_fit_kmeans_and_predict(runner, frame, workdir):
    data = workdir / "numeric.csv"
    frame[["x", "y"]].to_csv(data, index=False)
    model_path = workdir / "km.npz"
    result = runner.invoke(main, ["fit", "kmeans", str(data), "-k", "2", "--random-state", "0", "-o", str(model_path)])
    assert result.exit_code == 0, result.output
    assert "inertia" in result.output
    result = runner.invoke(main, ["predict", str(model_path), str(data)])
    assert result.exit_code == 0, result.output
    expected = load_model(model_path).labels_
    np.testing.assert_array_equal(pd.read_csv(io.StringIO(result.stdout))["label"], expected)
    result = runner.invoke(main, ["predict", str(model_path), str(data), "--proba"])
    _fails_cleanly(result, "gives no probabilities")


def test_parquet_input(runner, gmm_file, frame, workdir):
    model_path, _ = gmm_file
    data = workdir / "data.parquet"
    frame.to_parquet(data)
    result = runner.invoke(main, ["predict", str(model_path), str(data)])
    assert result.exit_code == 0, result.output


# --------------------------------------------------------------------------- errors


def test_missing_data_file(runner, workdir):
    result = runner.invoke(main, ["fit", "gmm", str(workdir / "absent.csv"), "-k", "2", "--out", "m.npz"])
    _fails_cleanly(result, "does not exist", code=2)


def test_non_numeric_columns_need_selection(runner, csv, workdir):
    result = runner.invoke(main, ["fit", "gmm", str(csv), "-k", "2", "--out", str(workdir / "m.npz")])
    _fails_cleanly(result, "non-numeric column(s) ['name']")
    assert "--columns x,y" in result.output
    assert not (workdir / "m.npz").exists()


def test_unknown_or_non_numeric_selected_columns(runner, csv, workdir):
    result = runner.invoke(main, ["fit", "gmm", str(csv), "-k", "2", "--columns", "x,zz", "--out", str(workdir / "m.npz")])
    _fails_cleanly(result, "['zz'] not found", code=2)
    result = runner.invoke(main, ["fit", "gmm", str(csv), "-k", "2", "--columns", "x,name", "--out", str(workdir / "m.npz")])
    _fails_cleanly(result, "['name'] are not numeric", code=2)


def test_missing_values_and_bad_extension(runner, workdir):
    data = workdir / "holes.csv"
    data.write_text("a,b\n1,2\n3,\n5,6\n")
    result = runner.invoke(main, ["fit", "kmeans", str(data), "-k", "1", "--out", str(workdir / "m.npz")])
    _fails_cleanly(result, "missing values {'b': 1}")
    data = workdir / "data.xlsx"
    data.write_text("a,b\n1,2\n")
    result = runner.invoke(main, ["fit", "kmeans", str(data), "-k", "1", "--out", str(workdir / "m.npz")])
    _fails_cleanly(result, "use a .csv", code=2)


def test_estimator_errors_are_clean(runner, frame, workdir):
    data = workdir / "tiny.csv"
    frame[["x", "y"]].head(3).to_csv(data, index=False)
    result = runner.invoke(main, ["fit", "gmm", str(data), "-k", "5", "--out", str(workdir / "m.npz")])
    _fails_cleanly(result, "n_components")


def test_bad_model_file(runner, csv, workdir):
    bad = workdir / "bad.npz"
    bad.write_text("not a model")
    result = runner.invoke(main, ["predict", str(bad), str(csv)])
    _fails_cleanly(result, "not a lateo model file")


def test_wrong_columns_for_model(runner, gmm_file, frame, workdir):
    model_path, _ = gmm_file
    data = workdir / "xonly.csv"
    frame[["x"]].assign(z=1.0).to_csv(data, index=False)
    result = runner.invoke(main, ["predict", str(model_path), str(data)])
    _fails_cleanly(result, "lacks column(s) ['y']")
    result = runner.invoke(main, ["predict", str(model_path), str(data), "--columns", "x"])
    _fails_cleanly(result, "fitted on 2 feature(s)")


def test_demo_orings_reports_the_probability_at_31_degrees(tmp_path):
    from click.testing import CliRunner

    from lateo.cli import main

    result = CliRunner().invoke(main, ["demo", "orings", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "P(distress at 31 F)" in result.output
    assert (tmp_path / "orings_logistic.png").stat().st_size > 10_000
