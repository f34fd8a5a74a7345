"""Small real data sets shipped with lateo, and simulators.

Real data
---------
load_old_faithful
    Eruption durations and waiting times of the Old Faithful geyser
    (272 eruptions), the classic two-cluster example for Gaussian mixtures.

Simulators
----------
make_gaussian_mixture
    Draw ``(X, y)`` from a Gaussian mixture with given or random
    well-separated parameters.
"""

from __future__ import annotations

from importlib import resources

import numpy as np

from lateo.datasets.simulate import make_gaussian_mixture

__all__ = ["load_old_faithful", "make_gaussian_mixture"]

_DATA_PACKAGE = "lateo.datasets"


def _read_csv(name: str):
    """Read ``data/<name>`` from the installed package as a DataFrame."""
    import pandas as pd

    source = resources.files(_DATA_PACKAGE).joinpath("data", name)
    with source.open("r", encoding="utf-8") as handle:
        return pd.read_csv(handle)


def load_old_faithful(as_frame: bool = True):
    """Load the Old Faithful geyser data (272 eruptions, 2 features).

    Each row is one eruption of the Old Faithful geyser in Yellowstone
    National Park: ``eruptions`` is its duration (minutes) and ``waiting``
    the time until the next eruption (minutes). Short eruptions are followed
    by short waits and long by long, so the points form two clear clusters;
    it is the standard first example for a two-component Gaussian mixture.

    Parameters
    ----------
    as_frame : bool, default=True
        Return a pandas DataFrame with columns ``eruptions`` (float64) and
        ``waiting`` (int64). With ``False``, return a float64 numpy array
        of shape (272, 2) with the columns in that order.

    Returns
    -------
    pandas.DataFrame or numpy.ndarray
        The data, one row per eruption.

    References
    ----------
    Azzalini, A. and Bowman, A. W. (1990). A look at some data on the Old
    Faithful geyser. *Applied Statistics* 39, 357-365. The same 272 rows are
    R's ``datasets::faithful`` (Härdle, 1991, *Smoothing Techniques with
    Implementation in S*).

    Examples
    --------
    >>> from lateo.datasets import load_old_faithful
    >>> df = load_old_faithful()
    >>> df.shape
    (272, 2)
    """
    frame = _read_csv("old_faithful.csv")
    if as_frame:
        return frame
    return frame.to_numpy(dtype=np.float64)
