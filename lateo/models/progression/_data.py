"""Longitudinal data for disease-progression models: long frame -> padded arrays.

Data come in Leaspy's long format: one row per visit, an ``ID`` column (the
subject), a ``TIME`` column (the age at the visit) and one numeric column per
feature. ``NaN`` marks a missing observation: it is masked, never dropped, so
a visit with some features missing still contributes the others.

:func:`from_dataframe` validates such a frame and packs it into
:class:`LongitudinalData`: per-subject arrays padded to a common number of
visits ``V``, with masks for the observed cells and for the real (non-padding)
visits, and the position of every visit's row in the input frame so that
results can be put back with :meth:`LongitudinalData.to_frame`.

Errors name the argument or column, what was found and the fix (DESIGN.md
convention 8). Nothing the caller passed is modified.
"""

from __future__ import annotations

import numbers
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from lateo._validation import check_int, check_option
from lateo.core.sequences import _round_up_pow2

__all__ = ["LongitudinalData", "bucket_size", "from_arrays", "from_dataframe"]

_PREVIEW = 5  # how many offending items an error message lists


def bucket_size(n: int) -> int:
    """The next power of two ``>= n``, at least 4.

    Padding the number of subjects or visits to such a size lets data sets of
    similar sizes reuse one compiled program.

    Parameters
    ----------
    n : int
        A non-negative size.

    Returns
    -------
    int
        ``max(4, 2**ceil(log2(n)))``.
    """
    return _round_up_pow2(check_int(n, name="n", low=0), 4)


@dataclass(frozen=True, eq=False, repr=False)
class LongitudinalData:
    """Visits of ``N`` subjects padded to ``V`` visits each, ``K`` features.

    Built by :func:`from_dataframe`; the arrays are read-only.

    Attributes
    ----------
    ids : ndarray of shape (N,)
        Subject IDs in order of first appearance in the input frame.
    times : ndarray of shape (N, V), float64
        Visit times, increasing within each subject; padding slots repeat the
        subject's last time.
    values : ndarray of shape (N, V, K), float64
        Observations; 0.0 where not observed (missing or padding).
    mask : ndarray of shape (N, V, K), bool
        True where a value was observed.
    visit_mask : ndarray of shape (N, V), bool
        True for real visits, False for padding. A real visit may have no
        observed feature (every feature ``NaN``); it is kept so that
        :meth:`to_frame` can fill its row.
    row_index : ndarray of shape (N, V), int64
        Position (``iloc``) of each visit's row in the input frame, -1 for
        padding.
    features : tuple
        Feature (column) names, length ``K``.
    id_col, time_col : str
        Names of the ID and TIME columns (or index levels) of the input.
    n_rows : int
        Number of rows of the input frame.
    dropped_ids : tuple
        Subjects dropped because they had no observation
        (``on_empty="warn"``); their rows are ``NaN`` in :meth:`to_frame`.
    """

    ids: np.ndarray
    times: np.ndarray
    values: np.ndarray
    mask: np.ndarray
    visit_mask: np.ndarray
    row_index: np.ndarray
    features: tuple
    id_col: str
    time_col: str
    n_rows: int
    dropped_ids: tuple = ()
    # The input's index and its ID / TIME entries per row, for to_frame.
    index: pd.Index = field(default=None, repr=False)
    id_in_index: bool = field(default=False, repr=False)
    time_in_index: bool = field(default=False, repr=False)
    _row_ids: pd.Series = field(default=None, repr=False)
    _row_times: pd.Series = field(default=None, repr=False)

    def __repr__(self) -> str:
        return (
            f"LongitudinalData(n_subjects={self.n_subjects}, n_visits_max={self.n_visits_max}, "
            f"features={self.features!r}, n_observations={self.n_observations}, n_rows={self.n_rows})"
        )

    @property
    def n_subjects(self) -> int:
        """Number of subjects ``N``."""
        return int(self.times.shape[0])

    @property
    def n_visits_max(self) -> int:
        """Padded number of visits per subject ``V``."""
        return int(self.times.shape[1])

    @property
    def n_features(self) -> int:
        """Number of features ``K``."""
        return len(self.features)

    @property
    def n_observations(self) -> int:
        """Number of observed values (``mask.sum()``)."""
        return int(self.mask.sum())

    @property
    def n_visits_per_subject(self) -> np.ndarray:
        """Visits with at least one observed feature, per subject, shape (N,).

        Subjects with a single such visit carry no information on their own
        rate of progression; callers may want to warn about them.
        """
        return self.mask.any(axis=-1).sum(axis=-1)

    def to_frame(self, values, *, observed_only: bool = False) -> pd.DataFrame:
        """Put per-visit values back at the rows of the input frame.

        Parameters
        ----------
        values : array-like of shape (N, V, K)
            One value per subject, visit slot and feature (for example model
            predictions). Padding slots are ignored.
        observed_only : bool, default=False
            If True, cells that were not observed in the input are ``NaN``;
            otherwise every real visit gets its value.

        Returns
        -------
        DataFrame
            ``n_rows`` rows in the order of the input frame, with its index.
            Columns: the ID and TIME columns (unless they were index levels
            of the input, in which case the index carries them), then the
            features. Rows of dropped subjects hold ``NaN``.
        """
        arr = np.asarray(values, dtype=np.float64)
        expected = (self.n_subjects, self.n_visits_max, self.n_features)
        if arr.shape != expected:
            raise ValueError(
                f"values must have shape (n_subjects, n_visits_max, n_features) = {expected}, got {arr.shape}; "
                "pass an array laid out like LongitudinalData.values."
            )
        out = np.full((self.n_rows, self.n_features), np.nan)
        vis = self.visit_mask
        cells = arr[vis]
        if observed_only:
            cells = np.where(self.mask[vis], cells, np.nan)
        out[self.row_index[vis]] = cells
        index = self.index if self.index is not None else pd.RangeIndex(self.n_rows)
        cols = {}
        if not self.id_in_index and self._row_ids is not None:
            cols[self.id_col] = self._row_ids.array  # keeps the input's dtype
        if not self.time_in_index and self._row_times is not None:
            cols[self.time_col] = self._row_times.array
        for k, col in enumerate(self.features):
            cols[col] = out[:, k]
        return pd.DataFrame(cols, index=index)


# --------------------------------------------------------------------------- helpers


def _preview(items, k: int = _PREVIEW) -> str:
    items = list(items)
    shown = ", ".join(repr(x) for x in items[:k])
    return shown + (f", ... ({len(items)} in total)" if len(items) > k else "")


def _as_frame(df) -> pd.DataFrame:
    if isinstance(df, pd.DataFrame):
        return df
    if isinstance(df, dict):
        try:
            return pd.DataFrame(df)
        except Exception as exc:
            raise ValueError(f"df: could not build a DataFrame from the dict ({exc}); pass columns of equal length.") from exc
    raise TypeError(
        f"df must be a pandas DataFrame in long format (one row per visit, ID and TIME columns), "
        f"got {type(df).__name__}; build one with pd.DataFrame(...) or use from_arrays(ids, times, values)."
    )


def _resolve_id_time(frame: pd.DataFrame, id_col, time_col):
    """Move ID / TIME index levels into columns; report which came from the index."""
    index_names = [n for n in frame.index.names if n is not None]
    from_index = [c for c in (id_col, time_col) if c not in frame.columns and c in index_names]
    if from_index:
        frame = frame.reset_index(level=from_index)
    missing = [c for c in (id_col, time_col) if c not in frame.columns]
    if missing:
        which = " and ".join(f"{c!r}" for c in missing)
        arg = {id_col: "id_col", time_col: "time_col"}
        args = " / ".join(f"{arg[c]}=" for c in missing)
        raise ValueError(
            f"df has no {which} column (columns found: {list(frame.columns)}; index levels: {list(frame.index.names)}); "
            f"rename your columns or pass {args} with the right name."
        )
    return frame, id_col in from_index, time_col in from_index


def _numeric(series: pd.Series, name, role: str) -> np.ndarray:
    """A float64 copy of a column, NaN for missing, or a TypeError naming it."""
    dtype = series.dtype
    fix = f"convert it to numbers (e.g. pd.to_numeric(df[{name!r}], errors='coerce'))"
    if role == "feature":
        fix += " or leave it out of features=[...]"
    if pd.api.types.is_bool_dtype(dtype):
        return series.to_numpy(dtype=np.float64, na_value=np.nan)
    if pd.api.types.is_complex_dtype(dtype):
        raise TypeError(f"{role} column {name!r} holds complex numbers; pass real numbers.")
    if pd.api.types.is_datetime64_any_dtype(dtype) or pd.api.types.is_timedelta64_dtype(dtype):
        raise TypeError(
            f"{role} column {name!r} has dtype {dtype}; it must be numeric: convert it to a number "
            "(e.g. the age in years at the visit)."
        )
    if pd.api.types.is_numeric_dtype(dtype):
        return series.to_numpy(dtype=np.float64, na_value=np.nan)
    if dtype == object:
        present = series[series.notna()]
        bad = [v for v in present if not isinstance(v, numbers.Real) or isinstance(v, (str, bytes))]
        if not bad:
            return pd.to_numeric(series).to_numpy(dtype=np.float64, na_value=np.nan)
        raise TypeError(f"{role} column {name!r} holds non-numeric values ({_preview(bad)}); {fix}.")
    raise TypeError(f"{role} column {name!r} has non-numeric dtype {dtype}; {fix}.")


def _check_bounds(bounds):
    if bounds is None:
        return None
    try:
        low, high = bounds
    except (TypeError, ValueError):
        raise ValueError(f"bounds must be a pair (low, high) such as (0.0, 1.0), or None; got {bounds!r}.") from None
    for b in (low, high):
        if b is not None and (isinstance(b, bool) or not isinstance(b, numbers.Real) or np.isnan(b)):
            raise ValueError(f"bounds must hold numbers or None, got {bounds!r}.")
    if low is not None and high is not None and not low < high:
        raise ValueError(f"bounds=(low, high) needs low < high, got {bounds!r}.")
    return (None if low is None else float(low), None if high is None else float(high))


def _bounds_error(col, n_bad, lo_seen, hi_seen, low, high) -> str:
    lo_txt = "-inf" if low is None else f"{low:g}"
    hi_txt = "inf" if high is None else f"{high:g}"
    msg = (
        f"feature {col!r} has {n_bad} observed value(s) outside the open interval ({lo_txt}, {hi_txt}) "
        f"required by bounds=({lo_txt}, {hi_txt}) (observed range [{lo_seen:g}, {hi_seen:g}]). "
    )
    if low is not None and high is not None:
        msg += (
            f"Rescale the feature into ({lo_txt}, {hi_txt}), e.g. divide a score by the maximum of its scale, "
            f"and nudge values exactly at {lo_txt} or {hi_txt} inside yourself "
            f"(e.g. df[{col!r}].clip({lo_txt} + 1e-3, {hi_txt} - 1e-3))."
        )
    else:
        bound = lo_txt if low is not None else hi_txt
        msg += f"Transform or shift the feature so that its values are strictly beyond {bound}."
    return msg


# --------------------------------------------------------------------------- public constructors


def from_dataframe(
    df,
    *,
    features=None,
    id_col: str = "ID",
    time_col: str = "TIME",
    bounds=None,
    min_visits: int = 1,
    on_empty: str = "raise",
    pad_visits_to: int | None = None,
) -> LongitudinalData:
    """Validate a long-format frame and pack it into padded per-subject arrays.

    Parameters
    ----------
    df : DataFrame or dict of lists
        One row per visit: an ID column, a TIME column (age at the visit) and
        one numeric column per feature; ``NaN`` marks a missing observation.
        ID and TIME may also be index levels (Leaspy's ``(ID, TIME)``
        MultiIndex). Not modified.
    features : list of str, str or None, default=None
        Feature columns, in the order of the model's features. ``None`` takes
        every column other than ID and TIME.
    id_col, time_col : str, default="ID", "TIME"
        Names of the subject and time columns (or index levels).
    bounds : (low, high) or None, default=None
        If given, every observed value must lie in the open interval
        ``(low, high)`` (``(0.0, 1.0)`` for the logistic model); either end
        may be ``None`` for no bound on that side.
    min_visits : int, default=1
        Minimum number of visits with at least one observation per subject
        (0 for frames that only carry times to predict at).
    on_empty : {"raise", "warn", "keep"}, default="raise"
        What to do with subjects that have no observation at all: raise,
        drop them with a ``UserWarning``, or keep them (for prediction frames,
        whose feature columns may be all NaN).
    pad_visits_to : int or None, default=None
        Pad every subject to this many visit slots (at least the largest
        number of visits of a subject) so that callers can reuse compiled
        shapes, e.g. ``bucket_size(max_visits)``. ``None`` pads to the
        largest number of visits.

    Returns
    -------
    LongitudinalData

    Raises
    ------
    TypeError
        If ``df`` is not a frame, or a feature or TIME column is not numeric.
    ValueError
        For a missing ID/TIME column, unknown or absent features, infinite
        values, missing IDs or times, duplicate ``(ID, TIME)`` rows, values
        outside ``bounds``, subjects without observations
        (``on_empty="raise"``) or with fewer than ``min_visits`` observed
        visits, an empty frame or a too small ``pad_visits_to``.
    """
    frame = _as_frame(df)
    min_visits = check_int(min_visits, name="min_visits", low=0)
    on_empty = check_option(on_empty, name="on_empty", options=("raise", "warn", "keep"))
    if pad_visits_to is not None:
        pad_visits_to = check_int(pad_visits_to, name="pad_visits_to", low=1)
    bounds = _check_bounds(bounds)
    if id_col == time_col:
        raise ValueError(f"id_col and time_col must differ, both are {id_col!r}.")

    input_index = frame.index
    frame, id_in_index, time_in_index = _resolve_id_time(frame, id_col, time_col)
    if not frame.columns.is_unique:
        dup = frame.columns[frame.columns.duplicated()].unique()
        raise ValueError(f"df has duplicate column names {_preview(dup)}; rename them so that each column is unique.")
    if len(frame) == 0:
        raise ValueError("df is empty (0 rows); pass at least one visit (one row per subject and visit).")

    # ---- features
    others = [c for c in frame.columns if c not in (id_col, time_col)]
    if features is None:
        features = others
    else:
        if isinstance(features, str):
            features = [features]
        features = list(features)
        if len(set(features)) != len(features):
            raise ValueError(f"features lists some columns more than once: {features}; list each feature once.")
        clash = [f for f in features if f in (id_col, time_col)]
        if clash:
            raise ValueError(f"features must not include the ID or TIME column ({clash}); list only feature columns.")
        unknown = [f for f in features if f not in frame.columns]
        if unknown:
            raise ValueError(
                f"features {unknown} are not columns of df (feature columns found: {others}); fix the names."
            )
    if not features:
        raise ValueError(
            f"df has no feature column (columns found: {list(frame.columns)}); add one numeric column per "
            f"feature besides {id_col!r} and {time_col!r}."
        )

    # ---- values, checked column by column
    times = _numeric(frame[time_col], time_col, "TIME")
    n_inf = int(np.isinf(times).sum())
    if n_inf:
        raise ValueError(f"TIME column {time_col!r} holds {n_inf} infinite value(s); every visit needs a finite time.")
    n_nan = int(np.isnan(times).sum())
    if n_nan:
        raise ValueError(
            f"TIME column {time_col!r} holds {n_nan} missing (NaN) value(s); every visit needs a time: "
            f"drop those rows (df.dropna(subset=[{time_col!r}])) or fill in the times."
        )
    values = np.empty((len(frame), len(features)), dtype=np.float64)
    for k, col in enumerate(features):
        values[:, k] = _numeric(frame[col], col, "feature")
        n_inf = int(np.isinf(values[:, k]).sum())
        if n_inf:
            raise ValueError(
                f"feature {col!r} holds {n_inf} infinite value(s); replace them with NaN (missing) or finite values."
            )
    observed = ~np.isnan(values)
    never = [col for k, col in enumerate(features) if not observed[:, k].any()]
    if never and on_empty != "keep":
        raise ValueError(f"feature(s) {never} have no observed value at all; leave them out of features=[...].")

    # ---- subjects
    codes, uniques = pd.factorize(frame[id_col], sort=False, use_na_sentinel=True)
    n_na = int((codes < 0).sum())
    if n_na:
        raise ValueError(
            f"ID column {id_col!r} holds {n_na} missing value(s); every visit needs a subject ID: "
            f"drop those rows (df.dropna(subset=[{id_col!r}]))."
        )
    ids = np.array(uniques)  # a copy, in order of first appearance
    order = np.lexsort((times, codes))  # by subject, then time; stable
    s_codes, s_times = codes[order], times[order]
    dup = np.flatnonzero((s_codes[1:] == s_codes[:-1]) & (s_times[1:] == s_times[:-1]))
    if dup.size:
        pairs = [(ids[s_codes[i]], float(s_times[i])) for i in dup]
        raise ValueError(
            f"df has {dup.size} duplicate ({id_col}, {time_col}) row(s), e.g. {_preview(pairs)}; one row per "
            f"subject and time is needed: aggregate them (df.groupby([{id_col!r}, {time_col!r}], as_index=False)"
            f".mean()) or drop them (df.drop_duplicates([{id_col!r}, {time_col!r}]))."
        )

    if bounds is not None:
        low, high = bounds
        for k, col in enumerate(features):
            v = values[observed[:, k], k]
            bad = np.zeros(v.shape, dtype=bool)
            if low is not None:
                bad |= v <= low
            if high is not None:
                bad |= v >= high
            if bad.any():
                raise ValueError(_bounds_error(col, int(bad.sum()), v.min(), v.max(), low, high))

    visit_obs = observed.any(axis=1)
    obs_visits = np.bincount(codes, weights=visit_obs, minlength=len(ids)).astype(np.int64)
    empty = obs_visits == 0
    dropped_ids: tuple = ()
    if empty.any() and on_empty != "keep":
        empty_ids = list(ids[empty])
        if on_empty == "raise":
            raise ValueError(
                f"{len(empty_ids)} subject(s) have no observation at all (every feature is NaN on every visit): "
                f"{_preview(empty_ids)}; drop them from df or pass on_empty='warn' to drop them with a warning."
            )
        if empty.all():
            raise ValueError(
                "every subject has no observation at all (every feature is NaN on every visit); "
                "check the feature columns."
            )
        warnings.warn(
            f"Dropping {len(empty_ids)} subject(s) with no observation at all: {_preview(empty_ids)}.",
            UserWarning,
            stacklevel=2,
        )
        dropped_ids = tuple(empty_ids)
        keep_sub = ~empty
        remap = np.cumsum(keep_sub) - 1
        keep_rows = keep_sub[codes]
        order = order[keep_sub[s_codes]]
        codes = np.where(keep_rows, remap[codes], -1)
        ids = ids[keep_sub]
        obs_visits = obs_visits[keep_sub]

    few = obs_visits < min_visits
    if few.any():
        few_ids = [(i, int(n)) for i, n in zip(ids[few], obs_visits[few])]
        raise ValueError(
            f"{int(few.sum())} subject(s) have fewer than min_visits={min_visits} visit(s) with an observation "
            f"(ID, visits): {_preview(few_ids)}; drop those subjects from df or lower min_visits."
        )

    # ---- pack
    n_sub = len(ids)
    s_codes = codes[order]
    counts = np.bincount(s_codes, minlength=n_sub)
    n_vis = int(counts.max())
    if pad_visits_to is not None:
        if pad_visits_to < n_vis:
            raise ValueError(
                f"pad_visits_to={pad_visits_to} is smaller than the largest number of visits of a subject "
                f"({n_vis}); pass pad_visits_to >= {n_vis} (e.g. bucket_size({n_vis}) = {bucket_size(n_vis)}) or None."
            )
        n_vis = pad_visits_to
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    slot = np.arange(len(order)) - starts[s_codes]

    row_index = np.full((n_sub, n_vis), -1, dtype=np.int64)
    row_index[s_codes, slot] = order
    visit_mask = row_index >= 0
    last = order[starts + counts - 1]
    times_p = np.where(visit_mask, times[np.maximum(row_index, 0)], times[last][:, None])
    mask_p = observed[np.maximum(row_index, 0)] & visit_mask[..., None]
    values_p = np.where(mask_p, values[np.maximum(row_index, 0)], 0.0)

    arrays = [ids, times_p, values_p, mask_p, visit_mask, row_index]
    for a in arrays:
        a.setflags(write=False)
    return LongitudinalData(
        ids=ids,
        times=times_p,
        values=values_p,
        mask=mask_p,
        visit_mask=visit_mask,
        row_index=row_index,
        features=tuple(features),
        id_col=id_col,
        time_col=time_col,
        n_rows=len(frame),
        dropped_ids=dropped_ids,
        index=input_index,
        id_in_index=id_in_index,
        time_in_index=time_in_index,
        _row_ids=frame[id_col].reset_index(drop=True).copy(),
        _row_times=frame[time_col].reset_index(drop=True).copy(),
    )


def from_arrays(ids, times, values, *, features=None, **kwargs) -> LongitudinalData:
    """Like :func:`from_dataframe`, from one entry per visit row.

    Parameters
    ----------
    ids : array-like of shape (n_rows,)
        Subject ID of each row.
    times : array-like of shape (n_rows,)
        Time (age) of each visit.
    values : array-like of shape (n_rows,) or (n_rows, K)
        Observations, ``NaN`` where missing.
    features : list of str or None, default=None
        Feature names; ``None`` gives ``"feature_0"``, ``"feature_1"``, ...
    **kwargs
        Passed to :func:`from_dataframe` (``bounds``, ``min_visits``,
        ``on_empty``, ``pad_visits_to``).

    Returns
    -------
    LongitudinalData
        With ``id_col="ID"`` and ``time_col="TIME"``.
    """
    vals = np.asarray(values)
    if vals.ndim == 1:
        vals = vals[:, None]
    if vals.ndim != 2:
        raise ValueError(f"values must have shape (n_rows,) or (n_rows, n_features), got {vals.shape}.")
    ids = np.asarray(ids)
    times = np.asarray(times)
    if ids.ndim != 1 or times.ndim != 1 or not len(ids) == len(times) == len(vals):
        raise ValueError(
            f"ids, times and values need one entry per row: got shapes {ids.shape}, {times.shape} and {vals.shape}."
        )
    if features is None:
        features = [f"feature_{k}" for k in range(vals.shape[1])]
    elif isinstance(features, str):
        features = [features]
    features = list(features)
    if len(features) != vals.shape[1]:
        raise ValueError(f"features has {len(features)} name(s) but values has {vals.shape[1]} column(s); give one per column.")
    if "ID" in features or "TIME" in features:
        raise ValueError("features must not be named 'ID' or 'TIME'; rename them.")
    cols = {"ID": ids, "TIME": times}
    for k, f in enumerate(features):
        cols[f] = vals[:, k]
    return from_dataframe(pd.DataFrame(cols), features=features, **kwargs)
