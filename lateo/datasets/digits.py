"""The 8×8 hand-written digits (1,797 images), shipped so scikit-learn stays optional.

The file ``data/digits.csv.gz`` holds the UCI "Optical Recognition of
Handwritten Digits" test set as scikit-learn bundles it
(``sklearn.datasets.load_digits``): 64 integer pixel counts in ``0..16``
(``pixel_0`` … ``pixel_63``, row-major 8×8) and the label ``target``.
"""

from __future__ import annotations

import gzip
from importlib import resources

import numpy as np

__all__ = ["load_digits"]

N_PIXELS = 64
IMAGE_SHAPE = (8, 8)


def load_digits(*, scaled: bool = True, as_frame: bool = False, return_X_y: bool = True):
    """Load the 8×8 digits: 1,797 images of the digits 0-9 (about 180 each).

    Each image is a 4×4-block count of set pixels in a 32×32 bitmap, so every
    pixel is an integer in ``0..16``. With ``scaled=True`` the pixels are
    divided by 16, giving values in ``[0, 1]`` that a Bernoulli decoder can
    model (the usual "continuous Bernoulli-as-probability" treatment of
    grey levels, as for MNIST).

    Parameters
    ----------
    scaled : bool, default=True
        Divide the pixels by 16 (float64 in ``[0, 1]``); ``False`` keeps the
        raw counts (float64 in ``{0, ..., 16}``).
    as_frame : bool, default=False
        Return one pandas DataFrame with columns ``pixel_0`` … ``pixel_63``
        and ``target`` instead of arrays.
    return_X_y : bool, default=True
        Return ``(X, y)``; with ``False`` return ``X`` alone. Ignored when
        ``as_frame=True``.

    Returns
    -------
    X : ndarray of shape (1797, 64)
        Row-major 8×8 images (reshape a row with ``x.reshape(8, 8)``).
    y : ndarray of shape (1797,), int64
        The digit shown, 0-9.

    References
    ----------
    Alpaydin, E. and Kaynak, C. (1998). Optical Recognition of Handwritten
    Digits. UCI Machine Learning Repository, doi:10.24432/C50P49 (CC BY 4.0).
    The same 1,797 rows are scikit-learn's ``load_digits()``.

    Examples
    --------
    >>> from lateo.datasets.digits import load_digits
    >>> X, y = load_digits()
    >>> X.shape, float(X.max())
    ((1797, 64), 1.0)
    """
    import pandas as pd

    source = resources.files("lateo.datasets").joinpath("data", "digits.csv.gz")
    with source.open("rb") as raw, gzip.open(raw, "rt", encoding="ascii") as handle:
        frame = pd.read_csv(handle)
    pixels = [f"pixel_{i}" for i in range(N_PIXELS)]
    frame[pixels] = frame[pixels].astype(np.float64) / (16.0 if scaled else 1.0)
    frame["target"] = frame["target"].astype(np.int64)
    if as_frame:
        return frame
    X = frame[pixels].to_numpy(dtype=np.float64)
    return (X, frame["target"].to_numpy(dtype=np.int64)) if return_X_y else X
