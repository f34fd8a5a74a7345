"""Figures: they draw what the model holds, return the Axes and save as PNG."""

from __future__ import annotations

import warnings

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import Ellipse  # noqa: E402

from lateo.datasets import make_gaussian_mixture  # noqa: E402
from lateo.models.gaussian_mixture import GaussianMixture  # noqa: E402
from lateo.models.kmeans import KMeans  # noqa: E402
from lateo.plots import plot_convergence, plot_mixture  # noqa: E402

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
