"""Small real data sets shipped with lateo, and simulators.

Real data
---------
load_old_faithful
    Eruption durations and waiting times of the Old Faithful geyser
    (272 eruptions), the classic two-cluster example for Gaussian mixtures.

load_nile
    Annual flow of the Nile at Aswan, 1871-1970 (a change in level after 1898).
load_digits
    The 8x8 handwritten digits (1,797 images, pixels scaled to [0, 1]) and their labels.
load_challenger_orings
    The 23 space-shuttle flights before Challenger: launch temperature and
    any thermal distress of the field O-rings (Bayesian logistic regression).

Simulators
----------
make_gaussian_mixture
    Draw ``(X, y)`` from a Gaussian mixture with given or random
    well-separated parameters.
"""

from __future__ import annotations

from importlib import resources

import numpy as np

from lateo.datasets.digits import load_digits
from lateo.datasets.simulate import make_gaussian_mixture

__all__ = ["load_challenger_orings", "load_digits", "load_nile", "load_old_faithful", "make_gaussian_mixture"]

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


def load_nile(as_frame: bool = True):
    """Load the annual flow of the Nile at Aswan, 1871-1970 (100 years).

    Each row is one year: ``year`` and ``flow``, the measured annual flow
    of the river Nile at Aswan in 10^8 cubic metres. The level of the
    series drops abruptly after 1898 (a change usually attributed to a drier
    climate in the basin and to the building of the first Aswan dam, begun
    in 1899): the mean flow is about 1098 in 1871-1898 and about 850 in
    1899-1970. It is the standard example for
    change-point detection and local-level state-space models, and a
    two-state Gaussian hidden Markov model recovers the change: its Viterbi
    path switches state between 1898 and 1899.

    Parameters
    ----------
    as_frame : bool, default=True
        Return a pandas DataFrame with columns ``year`` (int64) and ``flow``
        (float64). With ``False``, return the flows alone as a float64
        numpy array of shape (100, 1), in time order, ready for
        ``GaussianHMM().fit``.

    Returns
    -------
    pandas.DataFrame or numpy.ndarray
        The series, one row per year.

    References
    ----------
    Cobb, G. W. (1978). The problem of the Nile: conditional solution to a
    change-point problem. *Biometrika* 65, 243-251.

    Durbin, J. and Koopman, S. J. (2012). *Time Series Analysis by State
    Space Methods*, 2nd ed., Oxford University Press (the running example
    of chapter 2).

    The same 100 values are R's ``datasets::Nile`` and statsmodels'
    ``statsmodels.datasets.nile`` (public domain).

    Examples
    --------
    >>> from lateo.datasets import load_nile
    >>> df = load_nile()
    >>> df.shape
    (100, 2)
    >>> load_nile(as_frame=False).shape
    (100, 1)
    """
    frame = _read_csv("nile.csv")
    frame = frame.astype({"year": "int64", "flow": "float64"})
    if as_frame:
        return frame
    return frame[["flow"]].to_numpy(dtype=np.float64)


def load_challenger_orings(as_frame: bool = True):
    """Load the space-shuttle O-ring data: 23 flights before the Challenger accident.

    Each row is one flight: ``flight`` (1-23, in launch order),
    ``temperature`` at launch (degrees Fahrenheit) and ``distress`` (1 if
    any field O-ring showed thermal distress, else 0). Challenger launched
    at 31 F, far below every temperature here; the logistic regression of
    distress on temperature (seed 002) has the maximum-likelihood estimate
    ``alpha = 15.0429``, ``beta = -0.23216`` (R's ``glm``).

    Parameters
    ----------
    as_frame : bool, default=True
        Return a pandas DataFrame (int64 columns). With ``False``, return
        ``(X, y)``: temperatures as a float64 array of shape (23, 1) and
        distress as an int64 array of shape (23,).

    References
    ----------
    Dalal, S. R., Fowlkes, E. B. and Hoadley, B. (1989). Risk analysis of
    the space shuttle: pre-Challenger prediction of failure. *Journal of the
    American Statistical Association* 84, 945-957.
    """
    frame = _read_csv("challenger_orings.csv")
    if as_frame:
        return frame
    return frame[["temperature"]].to_numpy(dtype=np.float64), frame["distress"].to_numpy(dtype=np.int64)
