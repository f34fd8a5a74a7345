"""``lateo fit hmm`` and ``lateo decode``, through click's test runner."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from lateo.cli import main
from lateo.io import load_model, save_model
from lateo.models.gaussian_mixture import GaussianMixture
from lateo.models.hmm import GaussianHMM

LENGTHS = [40, 30]


@pytest.fixture(scope="module")
def runner():
    return CliRunner()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("hmm_cli")


@pytest.fixture(scope="module")
def frame():
    """Two sequences ("a", "b") that each switch from level (0, 0) to (5, -3) half-way."""
    rng = np.random.default_rng(0)
    pieces = []
    for name, n in zip("ab", LENGTHS):
        z = (np.arange(n) >= n // 2)[:, None]
        values = rng.normal(size=(n, 2)) + z * np.array([5.0, -3.0])
        pieces.append(pd.DataFrame({"subject": name, "x": values[:, 0], "y": values[:, 1]}))
    return pd.concat(pieces, ignore_index=True)


@pytest.fixture(scope="module")
def csv(frame, workdir):
    path = workdir / "series.csv"
    frame.to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def hmm_file(runner, csv, workdir):
    out = workdir / "hmm.npz"
    result = runner.invoke(
        main, ["fit", "hmm", str(csv), "--states", "2", "--sequence-column", "subject", "--n-iter", "30",
               "--random-state", "0", "--out", str(out)],
    )
    assert result.exit_code == 0, result.output
    return out, result


@pytest.fixture(scope="module")
def symbols_csv(workdir):
    rng = np.random.default_rng(1)
    symbols = np.concatenate([rng.choice(3, 20, p=[0.8, 0.1, 0.1]), rng.choice(3, 20, p=[0.1, 0.1, 0.8])])
    path = workdir / "symbols.csv"
    pd.DataFrame({"run": np.repeat([7, 8], 20), "symbol": symbols}).to_csv(path, index=False)
    return path


def _fails_cleanly(result, message, code=None):
    assert result.exit_code != 0 if code is None else result.exit_code == code, result.output
    assert isinstance(result.exception, SystemExit)  # click's exit, not a crash
    assert "Traceback" not in result.output
    assert message in result.output


def _read_csv(text):
    return pd.read_csv(io.StringIO(text))


# --------------------------------------------------------------------------- fit + decode


def test_fit_hmm_summary_and_model_file(hmm_file, frame):
    out, result = hmm_file
    for text in ("GaussianHMM fitted on 2 sequence(s), 70 rows x 2 column(s)", "expected duration", "mean x",
                 "sd y", "Transitions", "log-likelihood", "BIC", "converged", "Model saved to"):
        assert text in result.output, text
    model = load_model(out)
    assert type(model) is GaussianHMM
    assert model.n_components == 2 and model.n_iter == 30 and model.random_state == 0
    assert [str(c) for c in model.feature_names_in_] == ["x", "y"]
    # The saved model is the one a Python fit gives, and its levels are the two regimes.
    X = frame[["x", "y"]]
    direct = GaussianHMM(2, n_iter=30, random_state=0).fit(X, LENGTHS)
    for name in ("startprob_", "transmat_", "means_", "covars_"):
        np.testing.assert_allclose(getattr(model, name), getattr(direct, name), rtol=1e-12, err_msg=name)
    np.testing.assert_allclose(np.sort(model.means_[:, 0]), [0.0, 5.0], atol=0.6)
    assert f"{direct.score(X, LENGTHS):.4f}" in result.output


def test_decode_to_file_matches_the_model(runner, hmm_file, csv, frame, workdir):
    model_path, _ = hmm_file
    out = workdir / "states.csv"
    result = runner.invoke(main, ["decode", str(model_path), str(csv), "--sequence-column", "subject",
                                  "--out", str(out)])
    assert result.exit_code == 0, result.output
    decoded = pd.read_csv(out)
    assert list(decoded.columns) == ["subject", "state", "proba_0", "proba_1"] and len(decoded) == len(frame)
    assert decoded["subject"].tolist() == frame["subject"].tolist()
    model = load_model(model_path)
    X = frame[["x", "y"]]
    np.testing.assert_array_equal(decoded["state"], model.predict(X, LENGTHS))
    np.testing.assert_allclose(decoded[["proba_0", "proba_1"]], model.predict_proba(X, LENGTHS), atol=1e-12)
    # Each sequence switches state exactly once, half-way.
    for name, n in zip("ab", LENGTHS):
        states = decoded.loc[decoded["subject"] == name, "state"].to_numpy()
        assert np.flatnonzero(np.diff(states)).tolist() == [n // 2 - 1]
    log_prob, _ = model.decode(X, LENGTHS)
    assert f"log-likelihood of series.csv: {model.score(X, LENGTHS):.4f}" in result.output
    assert f"Viterbi path (with the data): {log_prob:.4f}" in result.output
    assert "Wrote 70 decoded states" in result.output


def test_decode_map_to_stdout(runner, hmm_file, csv, frame):
    model_path, _ = hmm_file
    result = runner.invoke(main, ["decode", str(model_path), str(csv), "--sequence-column", "subject",
                                  "--algorithm", "map"])
    assert result.exit_code == 0, result.output
    decoded = _read_csv(result.stdout)
    assert len(decoded) == len(frame)
    probabilities = decoded[["proba_0", "proba_1"]].to_numpy()
    np.testing.assert_array_equal(decoded["state"], probabilities.argmax(axis=1))
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-12)
    assert "log-likelihood" in result.stderr and "Viterbi" not in result.output


def test_fit_and_decode_categorical(runner, symbols_csv, workdir):
    out = workdir / "cat.npz"
    result = runner.invoke(main, ["fit", "hmm", str(symbols_csv), "-k", "2", "--family", "categorical",
                                  "--sequence-column", "run", "--random-state", "0", "--n-iter", "20",
                                  "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "CategoricalHMM fitted on 2 sequence(s)" in result.output and "P(symbol=2)" in result.output
    model = load_model(out)
    assert model.emissionprob_.shape == (2, 3)
    result = runner.invoke(main, ["decode", str(out), str(symbols_csv), "--sequence-column", "run"])
    assert result.exit_code == 0, result.output
    decoded = _read_csv(result.stdout)
    assert list(decoded.columns) == ["run", "state", "proba_0", "proba_1"]
    symbols = pd.read_csv(symbols_csv)[["symbol"]].to_numpy()
    np.testing.assert_array_equal(decoded["state"], model.predict(symbols, [20, 20]))


def test_fit_and_decode_poisson_counts(runner, workdir):
    rng = np.random.default_rng(2)
    counts = np.vstack([rng.poisson([1.0, 4.0], (15, 2)), rng.poisson([9.0, 0.5], (15, 2))])
    data = workdir / "counts.csv"
    pd.DataFrame(counts, columns=["a", "b"]).to_csv(data, index=False)
    out = workdir / "poisson.npz"
    result = runner.invoke(main, ["fit", "hmm", str(data), "-k", "2", "--family", "poisson", "--random-state", "0",
                                  "--n-iter", "30", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "PoissonHMM fitted on 1 sequence(s), 30 rows x 2 column(s)" in result.output and "rate b" in result.output
    model = load_model(out)
    np.testing.assert_allclose(np.sort(model.lambdas_[:, 0]), [1.0, 9.0], atol=1.5)
    result = runner.invoke(main, ["decode", str(out), str(data)])
    assert result.exit_code == 0, result.output
    decoded = _read_csv(result.stdout)
    np.testing.assert_array_equal(decoded["state"], model.predict(counts))
    assert np.flatnonzero(np.diff(decoded["state"])).tolist() == [14]


def test_fit_and_decode_gmm_emissions(runner, csv, frame, workdir):
    out = workdir / "gmmhmm.npz"
    result = runner.invoke(main, ["fit", "hmm", str(csv), "-k", "2", "--family", "gmm", "--mix", "2",
                                  "--covariance", "full", "--sequence-column", "subject", "--random-state", "0",
                                  "--n-iter", "20", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "GMMHMM fitted on 2 sequence(s)" in result.output and "mean y" in result.output
    model = load_model(out)
    assert model.n_mix == 2 and model.covariance_type == "full" and model.weights_.shape == (2, 2)
    result = runner.invoke(main, ["decode", str(out), str(csv), "--sequence-column", "subject"])
    assert result.exit_code == 0, result.output
    np.testing.assert_array_equal(_read_csv(result.stdout)["state"], model.predict(frame[["x", "y"]], LENGTHS))


# --------------------------------------------------------------------------- errors


def test_sequence_column_errors(runner, csv, frame, workdir):
    args = ["fit", "hmm", str(csv), "-k", "2", "--out", str(workdir / "m.npz")]
    _fails_cleanly(runner.invoke(main, [*args, "--sequence-column", "patient"]), "column 'patient' not found", 2)
    result = runner.invoke(main, [*args, "--sequence-column", "subject", "--columns", "x,subject"])
    _fails_cleanly(result, "cannot also be a feature", code=2)
    result = runner.invoke(main, args)  # the id column is text: say how to use it
    _fails_cleanly(result, "pass it as --sequence-column")
    shuffled = workdir / "shuffled.csv"
    frame.iloc[[0, 1, 50, 2]].to_csv(shuffled, index=False)
    result = runner.invoke(main, ["fit", "hmm", str(shuffled), "-k", "2", "--sequence-column", "subject",
                                  "--out", str(workdir / "m.npz")])
    _fails_cleanly(result, "sequence 'a' (column 'subject') is split")
    assert "line 5 after line 2" in result.output
    holes = workdir / "holes.csv"
    frame.head(4).assign(subject=["a", None, "a", "a"]).to_csv(holes, index=False)
    result = runner.invoke(main, ["fit", "hmm", str(holes), "-k", "2", "--sequence-column", "subject",
                                  "--out", str(workdir / "m.npz")])
    _fails_cleanly(result, "has 1 missing value(s)")
    assert not (workdir / "m.npz").exists()


def test_count_data_errors(runner, csv, symbols_csv, workdir):
    out = ["--out", str(workdir / "m.npz")]
    result = runner.invoke(main, ["fit", "hmm", str(csv), "-k", "2", "--family", "categorical",
                                  "--sequence-column", "subject", *out])
    _fails_cleanly(result, "one column of integer symbols")
    result = runner.invoke(main, ["fit", "hmm", str(csv), "-k", "2", "--family", "categorical", "--columns", "x", *out])
    _fails_cleanly(result, "needs symbols 0, 1, 2, ..., but column 'x' of series.csv holds")
    negative = workdir / "negative.csv"
    negative.write_text("count\n1\n3\n-2\n")
    result = runner.invoke(main, ["fit", "hmm", str(negative), "-k", "2", "--family", "poisson", *out])
    _fails_cleanly(result, "counts (non-negative integers), but column 'count' of negative.csv holds -2 (line 4)")


def test_options_for_other_families(runner, symbols_csv, workdir):
    out = ["--out", str(workdir / "m.npz")]
    result = runner.invoke(main, ["fit", "hmm", str(symbols_csv), "-k", "2", "--family", "poisson",
                                  "--covariance", "full", *out])
    _fails_cleanly(result, "only applies to --family gaussian or gmm", code=2)
    result = runner.invoke(main, ["fit", "hmm", str(symbols_csv), "-k", "2", "--mix", "2", *out])
    _fails_cleanly(result, "only applies to --family gmm", code=2)
    result = runner.invoke(main, ["fit", "hmm", str(symbols_csv), "-k", "2", "--family", "banana", *out])
    _fails_cleanly(result, "banana", code=2)


def test_decode_errors(runner, hmm_file, symbols_csv, csv, workdir):
    model_path, _ = hmm_file
    result = runner.invoke(main, ["decode", str(model_path), str(symbols_csv)])
    _fails_cleanly(result, "lacks column(s) ['x', 'y']")
    gmm = save_model(GaussianMixture(2), workdir / "gmm.npz")
    result = runner.invoke(main, ["decode", str(gmm), str(csv)])
    _fails_cleanly(result, "not a fitted hidden Markov model")
    result = runner.invoke(main, ["decode", str(model_path), str(csv), "--algorithm", "forward"])
    _fails_cleanly(result, "forward", code=2)


def test_help(runner):
    result = runner.invoke(main, ["fit", "hmm", "--help"])
    assert result.exit_code == 0
    for option in ("--states", "--family", "--covariance", "--mix", "--sequence-column", "--n-iter"):
        assert option in result.output
    result = runner.invoke(main, ["--help"])
    assert "decode" in result.output
