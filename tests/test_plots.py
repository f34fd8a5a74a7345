"""Figures: they draw what the model holds, return the Axes and save as PNG."""

from __future__ import annotations

import warnings

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.collections import LineCollection, PathCollection  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import Ellipse  # noqa: E402

from lateo.datasets import make_gaussian_mixture  # noqa: E402
from lateo.models.gaussian_mixture import GaussianMixture  # noqa: E402
from lateo.models.hmm import GaussianHMM  # noqa: E402
from lateo.models.hmm_discrete import CategoricalHMM  # noqa: E402
from lateo.models.kmeans import KMeans  # noqa: E402
from lateo.plots import plot_convergence, plot_hmm, plot_mixture  # noqa: E402

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def data():
    X, _ = make_gaussian_mixture(90, n_components=2, n_features=3, separation=5.0, random_state=1)
    return pd.DataFrame(X, columns=["a", "b", "c"])


@pytest.fixture(scope="module")
def gmm(data):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return GaussianMixture(2, random_state=0, progress=False).fit(data)


@pytest.fixture(scope="module")
def kmeans(data):
    return KMeans(2, random_state=0, progress=False).fit(data)


def _axes():
    return Figure().subplots()


def _ellipses(ax):
    return [p for p in ax.patches if isinstance(p, Ellipse)]


def _save(ax, tmp_path):
    path = tmp_path / "figure.png"
    ax.figure.savefig(path)
    assert path.read_bytes()[:8] == PNG_MAGIC
    return path


# --------------------------------------------------------------------------- plot_mixture


def test_plot_mixture_gmm(gmm, data, tmp_path):
    ax = plot_mixture(gmm, data, ax=_axes())
    assert isinstance(ax, Axes)
    assert len(_ellipses(ax)) == 2 * 2  # 1 and 2 sigma per component
    assert ax.get_xlabel() == "a" and ax.get_ylabel() == "b"
    n_points = sum(len(c.get_offsets()) for c in ax.collections[:2])
    assert n_points == len(data)
    _save(ax, tmp_path)


def test_plot_mixture_features_by_name_and_array_input(gmm, data):
    ax = plot_mixture(gmm, data, features=("c", "a"), ax=_axes())
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("c", "a")
    ax = plot_mixture(gmm, data.to_numpy(), features=(2, 0), ax=_axes())
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("feature 2", "feature 0")
    # The 1-sigma ellipse of component 0 matches its covariance on (c, a).
    cov = gmm.covariances_[0][np.ix_([2, 0], [2, 0])]
    first = _ellipses(ax)[0]
    assert sorted([first.width, first.height]) == pytest.approx(sorted(2 * np.sqrt(np.linalg.eigvalsh(cov))))
    np.testing.assert_allclose(first.center, gmm.means_[0, [2, 0]])


def test_plot_mixture_kmeans_marks_centers_without_ellipses(kmeans, data, tmp_path):
    ax = plot_mixture(kmeans, data, ax=_axes())
    assert _ellipses(ax) == []
    centers = ax.collections[-1].get_offsets()
    np.testing.assert_allclose(centers, kmeans.cluster_centers_[:, :2])
    _save(ax, tmp_path)


def test_plot_mixture_without_ax_uses_pyplot(gmm, data):
    import matplotlib.pyplot as plt

    ax = plot_mixture(gmm, data)
    try:
        assert isinstance(ax, Axes)
    finally:
        plt.close(ax.figure)


class FakeMixture:
    """Just the attributes plot_mixture reads, for each covariance type."""

    def __init__(self, covariance_type, covariances):
        self.covariance_type = covariance_type
        self.covariances_ = np.asarray(covariances, dtype=float)
        self.means_ = np.array([[0.0, 0.0, 0.0], [10.0, 10.0, 10.0]])
        self.weights_ = np.array([0.5, 0.5])

    def predict(self, X):
        return (np.asarray(X)[:, 0] > 5).astype(int)


FULL = np.array([[4.0, 1.0, 0.5], [1.0, 2.0, 0.3], [0.5, 0.3, 1.0]])
COVARIANCES = {
    "full": (np.stack([FULL, 2 * FULL]), [FULL, 2 * FULL]),
    "tied": (FULL, [FULL, FULL]),
    "diag": ([[4.0, 1.0, 9.0], [1.0, 0.25, 1.0]], [np.diag([4.0, 1.0, 9.0]), np.diag([1.0, 0.25, 1.0])]),
    "spherical": ([4.0, 0.25], [4.0 * np.eye(3), 0.25 * np.eye(3)]),
}


@pytest.mark.parametrize("covariance_type", list(COVARIANCES))
@pytest.mark.parametrize("features", [(0, 1), (2, 0)])
def test_ellipses_for_every_covariance_type(covariance_type, features):
    given, full = COVARIANCES[covariance_type]
    model = FakeMixture(covariance_type, given)
    X = np.array([[0.0, 0.0, 0.0], [1.0, -1.0, 0.5], [10.0, 10.0, 10.0], [11.0, 9.0, 10.5]])
    ellipses = _ellipses(plot_mixture(model, X, features=features, ax=_axes()))
    assert len(ellipses) == 4
    for k in range(2):
        cov = full[k][np.ix_(features, features)]
        values, vectors = np.linalg.eigh(cov)
        for n_sigma, ellipse in zip((1, 2), ellipses[2 * k : 2 * k + 2]):
            assert ellipse.width == pytest.approx(2 * n_sigma * np.sqrt(values[1]))
            assert ellipse.height == pytest.approx(2 * n_sigma * np.sqrt(values[0]))
            if not np.isclose(values[0], values[1]):  # the angle is that of the major axis
                direction = np.array([np.cos(np.radians(ellipse.angle)), np.sin(np.radians(ellipse.angle))])
                assert abs(direction @ vectors[:, 1]) == pytest.approx(1.0)


@pytest.mark.parametrize(
    "features, match",
    [((0, 0), "two different features"), ((0, 5), "not a column"), (("a", "zz"), "not a column"), ((0,), "exactly two")],
)
def test_plot_mixture_bad_features(gmm, data, features, match):
    with pytest.raises(ValueError, match=match):
        plot_mixture(gmm, data, features=features, ax=_axes())


def test_plot_mixture_needs_two_features():
    model = FakeMixture("spherical", [1.0, 1.0])
    with pytest.raises(ValueError, match="at least two features"):
        plot_mixture(model, np.zeros((3, 1)), ax=_axes())


# --------------------------------------------------------------------------- plot_convergence


def test_plot_convergence(gmm, tmp_path):
    ax = plot_convergence(gmm, ax=_axes())
    assert isinstance(ax, Axes)
    line = ax.get_lines()[0]
    np.testing.assert_array_equal(line.get_ydata(), gmm.lower_bounds_)
    np.testing.assert_array_equal(line.get_xdata(), np.arange(1, len(gmm.lower_bounds_) + 1))
    assert "lower bound" in ax.get_ylabel()
    _save(ax, tmp_path)


class History:
    converged_ = True

    def __init__(self, values):
        self.lower_bounds_ = np.asarray(values, dtype=float)


def test_convergence_keeps_a_degenerate_start_off_scale():
    ax = plot_convergence(History([-2.2e7, -4.19, -4.1556, -4.1554]), ax=_axes())
    low, high = ax.get_ylim()
    assert -4.3 < low < -4.19 and high > -4.1554
    assert any("off scale" in t.get_text() for t in ax.texts)


def test_convergence_shows_an_ordinary_curve_whole():
    values = [-10.0, -5.0, -4.5, -4.4, -4.39, -4.389]
    ax = plot_convergence(History(values), ax=_axes())
    assert ax.get_ylim()[0] <= -10.0
    assert not ax.texts


def test_convergence_without_history(kmeans):
    with pytest.raises(ValueError, match="no convergence history"):
        plot_convergence(kmeans, ax=_axes())


# --------------------------------------------------------------------------- plot_hmm

LENGTHS = [30, 40]


@pytest.fixture(scope="module")
def series():
    """Two sequences that each switch from a low to a high level half-way."""
    rng = np.random.default_rng(0)
    pieces = []
    for n in LENGTHS:
        level = np.where(np.arange(n) < n // 2, 0.0, 6.0)
        pieces.append(np.column_stack([level + rng.normal(size=n), rng.normal(size=n)]))
    return pd.DataFrame(np.vstack(pieces), columns=["level", "noise"])


@pytest.fixture(scope="module")
def ghmm(series):
    return GaussianHMM(2, n_iter=30, random_state=0).fit(series, LENGTHS)


@pytest.fixture(scope="module")
def symbols():
    rng = np.random.default_rng(1)
    return np.concatenate([rng.choice(3, 25, p=[0.8, 0.1, 0.1]), rng.choice(3, 25, p=[0.1, 0.1, 0.8])])[:, None]


@pytest.fixture(scope="module")
def chmm(symbols):
    return CategoricalHMM(2, n_iter=20, random_state=0).fit(symbols)


def _two_axes():
    return Figure().subplots(2, 1, sharex=True)


def _segments(ax):
    """(y, x_start, x_end) of the state-mean segments in the top panel."""
    return [(seg[0, 1], seg[0, 0], seg[1, 0]) for c in ax.collections if isinstance(c, LineCollection)
            for seg in c.get_segments()]


def test_plot_hmm_gaussian(ghmm, series, tmp_path):
    years = np.arange(1900, 1900 + len(series))
    axes = plot_hmm(ghmm, series, LENGTHS, sequence=1, feature="level", time=years)
    try:
        assert len(axes) == 2 and all(isinstance(ax, Axes) for ax in axes)
        top, bottom = axes
        second = series.iloc[LENGTHS[0]:]
        states = ghmm.predict(second)
        points = [c for c in top.collections if isinstance(c, PathCollection)]
        assert sum(len(c.get_offsets()) for c in points) == LENGTHS[1]
        for collection in points:  # each state's points are the rows decoded in it
            k = int(collection.get_label().split()[1])
            np.testing.assert_array_equal(collection.get_offsets()[:, 0], years[LENGTHS[0]:][states == k])
            np.testing.assert_array_equal(collection.get_offsets()[:, 1], second["level"].to_numpy()[states == k])
        # One mean segment per run of the Viterbi path, at that state's mean.
        runs = np.flatnonzero(np.diff(states)).size + 1
        segments = _segments(top)
        assert len(segments) == runs
        assert {round(y, 9) for y, _, _ in segments} == {round(ghmm.means_[k, 0], 9) for k in np.unique(states)}
        assert segments[0][1] == pytest.approx(years[LENGTHS[0]] - 0.5)
        assert top.get_ylabel() == "level" and "sequence 1 of 2" in top.get_title()
        assert bottom.get_ylim() == (0.0, 1.0)
        assert len(bottom.collections) == 2  # one stacked band per state
        assert bottom.get_xlim() == pytest.approx((years[LENGTHS[0]] - 0.5, years[-1] + 0.5))
        _save(top, tmp_path)
    finally:
        import matplotlib.pyplot as plt

        plt.close(axes[0].figure)


def test_plot_hmm_posterior_bands_stack_to_one(ghmm, series):
    top, bottom = plot_hmm(ghmm, series, LENGTHS, axes=_two_axes())
    posteriors = ghmm.predict_proba(series.iloc[: LENGTHS[0]])
    # fill_between with step="post": the upper edge of the last band is 1 everywhere.
    upper = bottom.collections[-1].get_paths()[0].vertices[:, 1]
    assert upper.max() == pytest.approx(1.0) and upper.min() >= 0
    first_band_top = bottom.collections[0].get_paths()[0].vertices[:, 1].max()
    assert first_band_top == pytest.approx(posteriors[:, 0].max())
    assert bottom.get_xlabel() == "time step" and top.get_ylabel() == "level"


def test_plot_hmm_list_input_and_sequence_time(ghmm, series):
    pieces = [series.iloc[: LENGTHS[0]].to_numpy(), series.iloc[LENGTHS[0]:].to_numpy()]
    top, _ = plot_hmm(ghmm, pieces, sequence=-1, feature=1, time=np.arange(LENGTHS[1]) * 0.5, axes=_two_axes())
    assert top.get_ylabel() == "feature 1"
    offsets = np.vstack([c.get_offsets() for c in top.collections if isinstance(c, PathCollection)])
    assert sorted(offsets[:, 0]) == pytest.approx(np.arange(LENGTHS[1]) * 0.5)


def test_plot_hmm_categorical_has_no_levels(chmm, symbols, tmp_path):
    top, _ = plot_hmm(chmm, symbols, axes=_two_axes())
    assert _segments(top) == [] and top.get_lines() == []  # no means, no line joining symbols
    assert top.get_ylabel() == "symbol"
    assert sum(len(c.get_offsets()) for c in top.collections) == len(symbols)
    _save(top, tmp_path)


class FakeHMM:
    """What plot_hmm reads of a Poisson HMM or a GMM-HMM: predict, predict_proba and the levels."""

    def __init__(self, **attributes):
        vars(self).update(attributes)

    def predict(self, X):
        return (np.asarray(X)[:, 0] > 5).astype(int)

    def predict_proba(self, X):
        states = self.predict(X)
        return np.column_stack([1.0 - states, states]).astype(float)


def test_plot_hmm_levels_of_poisson_and_gmm_models():
    X = np.array([[1, 0], [2, 1], [9, 3], [8, 2], [1, 1]])
    poisson = FakeHMM(lambdas_=np.array([[1.5, 0.5], [8.5, 2.5]]))
    top, _ = plot_hmm(poisson, X, axes=_two_axes())
    assert [y for y, _, _ in _segments(top)] == [1.5, 8.5, 1.5]
    gmm = FakeHMM(means_=np.array([[[0.0, 0.0], [2.0, 0.0]], [[8.0, 0.0], [10.0, 0.0]]]),
                  weights_=np.array([[0.5, 0.5], [0.75, 0.25]]))
    top, _ = plot_hmm(gmm, X, axes=_two_axes())
    assert [y for y, _, _ in _segments(top)] == [1.0, 8.5, 1.0]
    assert "mean 8.5" in top.get_legend().get_texts()[1].get_text()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"sequence": 2}, "sequence must be an integer in"),
        ({"feature": "nope"}, "not a column"),
        ({"feature": 3}, "not a column"),
        ({"time": np.arange(5)}, "time must have one value per row"),
        ({"lengths": [30, 30]}, "lengths sum to 60"),
        ({"lengths": [70, -0]}, "positive integers"),
    ],
)
def test_plot_hmm_bad_arguments(ghmm, series, kwargs, match):
    kwargs = {"lengths": LENGTHS, **kwargs}
    with pytest.raises(ValueError, match=match):
        plot_hmm(ghmm, series, axes=_two_axes(), **kwargs)


def test_plot_hmm_needs_two_axes(ghmm, series):
    with pytest.raises(ValueError, match="two matplotlib Axes"):
        plot_hmm(ghmm, series, LENGTHS, axes=_axes())
    with pytest.raises(ValueError, match="lengths must be None"):
        plot_hmm(ghmm, [series.to_numpy()], LENGTHS, axes=_two_axes())


def test_plot_logistic_returns_axes(tmp_path):
    from lateo.datasets import load_challenger_orings
    from lateo.models.logistic import BayesianLogisticRegression
    from lateo.plots import plot_logistic

    X, y = load_challenger_orings(as_frame=False)
    model = BayesianLogisticRegression(prior="gaussian", method="map").fit(X, y)
    ax = plot_logistic(model, X, y, mark=31.0)
    assert ax.get_ylim()[1] > 1.0
    ax.figure.savefig(tmp_path / "logistic.png")
