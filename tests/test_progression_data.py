"""Longitudinal data for progression models: validation, packing, putting results back."""

import warnings

import numpy as np
import pandas as pd
import pytest

from lateo.models.progression._data import (
    LongitudinalData,
    bucket_size,
    from_arrays,
    from_dataframe,
)


def _frame():
    """3 subjects, unsorted times, some NaN, a non-default index."""
    return pd.DataFrame(
        {
            "ID": ["s2", "s1", "s2", "s1", "s3", "s1"],
            "TIME": [71.0, 60.5, 65.0, 62.0, 50.0, 61.0],
            "mmse": [0.2, 0.3, np.nan, 0.5, 0.1, 0.4],
            "cdr": [0.1, np.nan, 0.3, 0.4, 0.9, 0.6],
        },
        index=pd.Index([30, 10, 20, 40, 50, 60], name="row"),
    )


def _random_frame(rng, n_sub=7, k=3, p_nan=0.3):
    rows = []
    for s in range(n_sub):
        n_vis = rng.integers(1, 6)
        times = 60 + np.sort(rng.choice(40, size=n_vis, replace=False)) + rng.random()
        for t in times:
            vals = rng.uniform(0.05, 0.95, size=k)
            vals[rng.random(k) < p_nan] = np.nan
            vals[0] = rng.uniform(0.05, 0.95)  # at least one observation per visit
            rows.append({"ID": f"p{s}", "TIME": t, **{f"f{j}": v for j, v in enumerate(vals)}})
    return pd.DataFrame(rows)


def test_round_trip_arrays():
    df = _frame()
    data = from_dataframe(df)
    assert isinstance(data, LongitudinalData)
    assert list(data.ids) == ["s2", "s1", "s3"]  # order of first appearance
    assert data.features == ("mmse", "cdr")
    assert (data.n_subjects, data.n_visits_max, data.n_features) == (3, 3, 2)
    assert data.n_rows == 6
    assert data.n_observations == int(df[["mmse", "cdr"]].notna().to_numpy().sum())
    np.testing.assert_array_equal(data.times[0], [65.0, 71.0, 71.0])  # padding repeats the last time
    np.testing.assert_array_equal(data.times[1], [60.5, 61.0, 62.0])
    np.testing.assert_array_equal(data.times[2], [50.0, 50.0, 50.0])
    np.testing.assert_array_equal(data.visit_mask, [[True, True, False], [True, True, True], [True, False, False]])
    np.testing.assert_array_equal(data.row_index, [[2, 0, -1], [1, 5, 3], [4, -1, -1]])
    np.testing.assert_array_equal(data.mask[0], [[False, True], [True, True], [False, False]])
    np.testing.assert_allclose(data.values[0], [[0.0, 0.3], [0.2, 0.1], [0.0, 0.0]])
    np.testing.assert_allclose(data.values[1], [[0.3, 0.0], [0.4, 0.6], [0.5, 0.4]])
    assert data.values.dtype == np.float64 and data.times.dtype == np.float64
    assert data.mask.dtype == bool and data.row_index.dtype == np.int64
    np.testing.assert_array_equal(data.n_visits_per_subject, [2, 3, 1])
    assert not data.values.flags.writeable
    assert "n_subjects=3" in repr(data)


def test_every_observed_cell_maps_back_to_its_row():
    rng = np.random.default_rng(0)
    df = _random_frame(rng)
    data = from_dataframe(df)
    raw = df[list(data.features)].to_numpy()
    vis = data.visit_mask
    np.testing.assert_array_equal(data.mask[vis], ~np.isnan(raw[data.row_index[vis]]))
    np.testing.assert_array_equal(data.values[data.mask], raw[data.row_index[vis]][data.mask[vis]])
    np.testing.assert_array_equal(data.times[vis], df["TIME"].to_numpy()[data.row_index[vis]])
    assert np.all(np.diff(data.times, axis=1) >= 0)
    assert np.all(data.values[~data.mask] == 0.0)
    assert not data.mask[~vis].any()
    assert data.n_visits_max == df.groupby("ID").size().max()
    assert sorted(data.row_index[vis].tolist()) == list(range(len(df)))


def test_to_frame_aligns_with_a_shuffled_frame():
    rng = np.random.default_rng(1)
    base = _random_frame(rng, n_sub=9)
    df = base.sample(frac=1.0, random_state=3)
    df.index = pd.Index([f"r{i}" for i in rng.permutation(len(df))])
    data = from_dataframe(df)
    back = data.to_frame(data.values, observed_only=True)
    assert back.index.equals(df.index)
    assert list(back.columns) == ["ID", "TIME", *data.features]
    pd.testing.assert_frame_equal(back, df)
    # Every real visit gets a value when observed_only=False (here: the time itself).
    filled = data.to_frame(np.repeat(data.times[..., None], data.n_features, axis=-1))
    for f in data.features:
        np.testing.assert_array_equal(filled[f].to_numpy(), df["TIME"].to_numpy())
    with pytest.raises(ValueError, match="values must have shape"):
        data.to_frame(data.values[:, :, :1])


def test_multiindex_input():
    df = _frame()
    flat = from_dataframe(df)
    mi = df.set_index(["ID", "TIME"])
    data = from_dataframe(mi)
    for name in ("times", "values", "mask", "visit_mask", "row_index"):
        np.testing.assert_array_equal(getattr(data, name), getattr(flat, name))
    back = data.to_frame(data.values, observed_only=True)
    assert back.index.equals(mi.index)
    pd.testing.assert_frame_equal(back, mi)
    # ID in the index only, TIME a column.
    half = from_dataframe(df.set_index("ID"))
    np.testing.assert_array_equal(half.values, flat.values)
    assert list(half.to_frame(half.values).columns) == ["TIME", "mmse", "cdr"]


def test_dict_and_from_arrays():
    df = _frame()
    ref = from_dataframe(df)
    data = from_dataframe({c: df[c].tolist() for c in df.columns})
    np.testing.assert_array_equal(data.values, ref.values)
    arr = from_arrays(df["ID"], df["TIME"], df[["mmse", "cdr"]].to_numpy(), features=["mmse", "cdr"])
    np.testing.assert_array_equal(arr.values, ref.values)
    one = from_arrays([1, 1, 2], [1.0, 2.0, 3.0], [0.1, 0.2, 0.3])
    assert one.features == ("feature_0",) and one.n_visits_max == 2
    with pytest.raises(ValueError, match="features has 1 name"):
        from_arrays([1, 2], [1.0, 2.0], np.ones((2, 2)), features=["a"])


def test_features_subset_and_order():
    data = from_dataframe(_frame(), features=["cdr", "mmse"])
    assert data.features == ("cdr", "mmse")
    single = from_dataframe(_frame(), features="cdr")
    assert single.features == ("cdr",)


def test_input_not_modified():
    df = _frame()
    df["visits"] = pd.array([1, 2, 3, 4, 5, 6], dtype="Int64")
    df["mmse"] = df["mmse"].astype(np.float32)
    before = df.copy(deep=True)
    dtypes, index, columns = df.dtypes.copy(), df.index.copy(), df.columns.copy()
    data = from_dataframe(df.iloc[::-1], features=["mmse", "cdr"], on_empty="warn")
    data.to_frame(data.values)
    from_dataframe(df)
    pd.testing.assert_frame_equal(df, before)
    assert df.dtypes.equals(dtypes) and df.index.equals(index) and df.columns.equals(columns)
    mi = df.set_index(["ID", "TIME"])
    mi_before = mi.copy(deep=True)
    from_dataframe(mi)
    pd.testing.assert_frame_equal(mi, mi_before)


def test_padding_and_bucket_size():
    data = from_dataframe(_frame(), pad_visits_to=8)
    assert data.n_visits_max == 8
    assert data.visit_mask.sum() == 6 and (data.row_index[:, 3:] == -1).all()
    np.testing.assert_array_equal(data.times[1, 2:], 62.0)
    with pytest.raises(ValueError, match=r"pad_visits_to=2 is smaller than .* \(3\)"):
        from_dataframe(_frame(), pad_visits_to=2)
    assert [bucket_size(n) for n in (0, 1, 3, 4, 5, 8, 9, 100)] == [4, 4, 4, 4, 8, 8, 16, 128]
    with pytest.raises(ValueError, match="n must be"):
        bucket_size(-1)


# --------------------------------------------------------------------------- errors


def test_not_a_frame():
    with pytest.raises(TypeError, match="df must be a pandas DataFrame"):
        from_dataframe(np.ones((3, 3)))


def test_empty_frame():
    with pytest.raises(ValueError, match="df is empty"):
        from_dataframe(_frame().iloc[:0])


@pytest.mark.parametrize("col, arg", [("ID", "id_col="), ("TIME", "time_col=")])
def test_missing_id_or_time(col, arg):
    df = _frame().drop(columns=col)
    with pytest.raises(ValueError, match=rf"no '{col}' column \(columns found: .*mmse.*\).*{arg}"):
        from_dataframe(df)


def test_custom_column_names():
    df = _frame().rename(columns={"ID": "subject", "TIME": "age"})
    data = from_dataframe(df, id_col="subject", time_col="age")
    assert data.n_subjects == 3
    assert list(data.to_frame(data.values).columns[:2]) == ["subject", "age"]


def test_unknown_or_no_features():
    with pytest.raises(ValueError, match=r"features \['adas'\] are not columns of df"):
        from_dataframe(_frame(), features=["adas"])
    with pytest.raises(ValueError, match="no feature column"):
        from_dataframe(_frame()[["ID", "TIME"]])
    with pytest.raises(ValueError, match="more than once"):
        from_dataframe(_frame(), features=["mmse", "mmse"])
    with pytest.raises(ValueError, match="must not include the ID or TIME"):
        from_dataframe(_frame(), features=["mmse", "TIME"])


def test_feature_never_observed():
    df = _frame().assign(adas=np.nan)
    with pytest.raises(ValueError, match=r"\['adas'\] have no observed value"):
        from_dataframe(df)


def test_non_numeric_feature():
    df = _frame().assign(sex=["F", "M", "F", "M", "F", "M"])
    with pytest.raises(TypeError, match="feature column 'sex'.*features="):
        from_dataframe(df)
    assert from_dataframe(df, features=["mmse", "cdr"]).n_features == 2
    obj = _frame().assign(mmse=pd.Series([0.1, "x", None, 0.2, 0.3, 0.4], index=_frame().index, dtype=object))
    with pytest.raises(TypeError, match=r"feature column 'mmse' holds non-numeric values \('x'\)"):
        from_dataframe(obj)
    # An object column of numbers and None is fine.
    ok = _frame().assign(mmse=pd.Series([0.1, None, 0.2, 0.2, 0.3, 0.4], index=_frame().index, dtype=object))
    assert from_dataframe(ok).n_observations == from_dataframe(_frame()).n_observations


def test_non_numeric_time():
    df = _frame().assign(TIME=pd.to_datetime(["2020-01-01"] * 6))
    with pytest.raises(TypeError, match="TIME column 'TIME' has dtype datetime64"):
        from_dataframe(df)
    df = _frame().assign(TIME=["a", "b", "c", "d", "e", "f"])
    with pytest.raises(TypeError, match="TIME column 'TIME'"):
        from_dataframe(df)


def test_infinite_values():
    df = _frame()
    df.loc[[30, 40], "cdr"] = np.inf
    with pytest.raises(ValueError, match="feature 'cdr' holds 2 infinite value"):
        from_dataframe(df)
    df = _frame()
    df.loc[30, "TIME"] = -np.inf
    with pytest.raises(ValueError, match="TIME column 'TIME' holds 1 infinite value"):
        from_dataframe(df)


def test_nan_time_and_id():
    df = _frame()
    df.loc[30, "TIME"] = np.nan
    with pytest.raises(ValueError, match=r"'TIME' holds 1 missing \(NaN\).*dropna"):
        from_dataframe(df)
    df = _frame()
    df.loc[30, "ID"] = None
    with pytest.raises(ValueError, match="ID column 'ID' holds 1 missing"):
        from_dataframe(df)


def test_duplicate_visits():
    df = pd.concat([_frame(), _frame().iloc[[1, 4]]])
    with pytest.raises(ValueError, match=r"2 duplicate \(ID, TIME\) row\(s\), e\.g\. .*'s1', 60\.5.*aggregate.*drop_duplicates"):
        from_dataframe(df)


def test_bounds():
    ok = from_dataframe(_frame(), bounds=(0.0, 1.0))
    assert ok.n_subjects == 3
    df = _frame()
    df.loc[[30, 10], "mmse"] = [1.0, 27.0]
    with pytest.raises(ValueError, match=r"feature 'mmse' has 2 observed value\(s\) outside the open interval \(0, 1\).*Rescale.*maximum"):
        from_dataframe(df, bounds=(0.0, 1.0))
    df = _frame()
    df.loc[50, "cdr"] = 0.0
    with pytest.raises(ValueError, match=r"feature 'cdr' has 1 .*nudge"):
        from_dataframe(df, bounds=(0.0, 1.0))
    # NaN is never out of bounds; one-sided bounds work.
    assert from_dataframe(_frame(), bounds=(0.0, None)).n_subjects == 3
    with pytest.raises(ValueError, match="bounds=.*needs low < high"):
        from_dataframe(_frame(), bounds=(1.0, 0.0))
    with pytest.raises(ValueError, match="bounds must be a pair"):
        from_dataframe(_frame(), bounds=0.5)


def test_empty_subjects_raise_or_warn():
    df = _frame()
    df = pd.concat([df, pd.DataFrame({"ID": ["s9", "s9"], "TIME": [70.0, 71.0], "mmse": np.nan, "cdr": np.nan})])
    df.index = pd.RangeIndex(100, 100 + len(df))
    with pytest.raises(ValueError, match=r"1 subject\(s\) have no observation at all.*'s9'.*on_empty='warn'"):
        from_dataframe(df)
    with pytest.warns(UserWarning, match=r"Dropping 1 subject\(s\) with no observation at all: 's9'"):
        data = from_dataframe(df, on_empty="warn")
    assert list(data.ids) == ["s2", "s1", "s3"] and data.dropped_ids == ("s9",)
    assert data.n_rows == len(df)
    np.testing.assert_array_equal(data.values, from_dataframe(_frame()).values)
    back = data.to_frame(data.values, observed_only=True)
    assert back.index.equals(df.index)
    assert back.loc[back["ID"] == "s9", ["mmse", "cdr"]].isna().all().all()
    pd.testing.assert_frame_equal(back, df)
    with pytest.raises(ValueError, match="on_empty must be one of"):
        from_dataframe(df, on_empty="drop")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        from_dataframe(_frame(), on_empty="warn")  # nothing to drop: no warning


def test_min_visits():
    # s3 has one visit; a visit with every feature NaN does not count.
    df = pd.concat([_frame(), pd.DataFrame({"ID": ["s3"], "TIME": [55.0], "mmse": [np.nan], "cdr": [np.nan]})])
    df.index = pd.RangeIndex(len(df))
    data = from_dataframe(df)
    assert data.n_visits_per_subject.tolist() == [2, 3, 1]
    assert data.visit_mask.sum() == len(df)  # the all-NaN visit is kept as a visit
    with pytest.raises(ValueError, match=r"1 subject\(s\) have fewer than min_visits=2 .*\('s3', 1\).*lower min_visits"):
        from_dataframe(df, min_visits=2)
    with pytest.raises(ValueError, match=r"2 subject\(s\) have fewer than min_visits=3"):
        from_dataframe(df, min_visits=3)
    with pytest.raises(ValueError, match="min_visits must be"):
        from_dataframe(df, min_visits=-1)
    assert from_dataframe(df, min_visits=0).n_subjects == 3  # prediction frames need no observation


def test_duplicate_column_names():
    df = _frame()
    df.columns = ["ID", "TIME", "mmse", "mmse"]
    with pytest.raises(ValueError, match="duplicate column names"):
        from_dataframe(df)
