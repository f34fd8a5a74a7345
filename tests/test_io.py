"""Model files: exact round trips, atomic writes, and clear errors on bad files."""

from __future__ import annotations

import json
import os
import struct
import warnings
import zipfile

import numpy as np
import pandas as pd
import pytest

import lateo.io as lio
from lateo.datasets import load_nile, make_gaussian_mixture
from lateo.io import FORMAT_NAME, FORMAT_VERSION, load_model, save_model
from lateo.models.gaussian_mixture import GaussianMixture
from lateo.models.hmm import GaussianHMM
from lateo.models.kmeans import KMeans

META = "__lateo_metadata__"


@pytest.fixture(scope="module")
def data():
    X, _ = make_gaussian_mixture(120, n_components=2, n_features=2, separation=5.0, random_state=0)
    return pd.DataFrame(X, columns=["x", "y"])


@pytest.fixture(scope="module")
def gmm(data):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return GaussianMixture(2, covariance_type="full", random_state=0, progress=False).fit(data)


@pytest.fixture(scope="module")
def kmeans(data):
    return KMeans(2, random_state=0, progress=False).fit(data)


def _write_npz(path, meta, **arrays):
    payload = {META: np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8), **arrays}
    with open(path, "wb") as handle:
        np.savez(handle, **payload)
    return path


def _metadata(path):
    with np.load(path, allow_pickle=False) as archive:
        return json.loads(archive[META].tobytes()), {k: archive[k] for k in archive.files if k != META}


# --------------------------------------------------------------------------- round trips


def test_gmm_round_trip_reproduces_predictions_exactly(gmm, data, tmp_path):
    path = save_model(gmm, tmp_path / "gmm.npz")
    loaded = load_model(path)
    assert type(loaded) is GaussianMixture
    np.testing.assert_array_equal(loaded.predict(data), gmm.predict(data))
    np.testing.assert_array_equal(loaded.predict_proba(data), gmm.predict_proba(data))
    np.testing.assert_array_equal(loaded.score_samples(data), gmm.score_samples(data))
    assert loaded.bic(data) == gmm.bic(data)


def test_gmm_round_trip_restores_attributes_and_types(gmm, tmp_path):
    loaded = load_model(save_model(gmm, tmp_path / "gmm.npz"))
    assert loaded.get_params() == gmm.get_params()
    names = [n for n in vars(gmm) if n.endswith("_") and not n.startswith("_")]
    assert {"weights_", "means_", "covariances_", "precisions_cholesky_", "lower_bounds_"} <= set(names)
    for name in names:
        before, after = getattr(gmm, name), getattr(loaded, name)
        assert type(after) is type(before), name
        if isinstance(before, np.ndarray):
            assert after.dtype == before.dtype and after.shape == before.shape, name
            np.testing.assert_array_equal(after, before)
        else:
            assert after == before, name
    assert loaded.feature_names_in_.dtype == object


def test_kmeans_round_trip(kmeans, data, tmp_path):
    loaded = load_model(save_model(kmeans, tmp_path / "km.npz"))
    assert type(loaded) is KMeans
    np.testing.assert_array_equal(loaded.predict(data), kmeans.predict(data))
    np.testing.assert_array_equal(loaded.cluster_centers_, kmeans.cluster_centers_)
    np.testing.assert_array_equal(loaded.labels_, kmeans.labels_)
    assert float(loaded.inertia_) == float(kmeans.inertia_)
    assert loaded.n_iter_ == kmeans.n_iter_


def test_hmm_round_trip_keeps_property_storage(tmp_path):
    """GaussianHMM.covars_ is a property over ``_covars_`` (the type's own shape): the storage is saved."""
    X = load_nile(as_frame=False)
    hmm = GaussianHMM(2, covariance_type="diag", n_iter=50, random_state=0, progress=False).fit(X)
    path = save_model(hmm, tmp_path / "hmm.npz")
    meta, _ = _metadata(path)
    assert {"_covars_", "means_", "startprob_", "transmat_", "lower_bounds_"} <= set(meta["attributes"])
    assert "covars_" not in meta["attributes"]  # the property's full-matrix view is not stored
    loaded = load_model(path)
    assert type(loaded) is GaussianHMM and loaded.get_params() == hmm.get_params()
    assert loaded._covars_.shape == (2, 1)
    np.testing.assert_array_equal(loaded.covars_, hmm.covars_)
    np.testing.assert_array_equal(loaded.predict(X), hmm.predict(X))
    np.testing.assert_array_equal(loaded.predict_proba(X), hmm.predict_proba(X))
    assert loaded.score(X) == hmm.score(X)
    # A name that is neither a fitted attribute nor a property's storage is refused.
    meta, arrays = _metadata(path)
    meta["attributes"]["_private_"] = 1.0
    with pytest.raises(ValueError, match="'_private_' is not a fitted attribute"):
        load_model(_write_npz(tmp_path / "odd.npz", meta, **arrays))


def test_array_and_nested_parameters_round_trip(tmp_path):
    model = GaussianMixture(
        2, means_init=np.array([[0.0, 1.0], [2.0, 3.0]]), weights_init=[0.4, 0.6],
        prior={"mean_precision": 0.01, "scale": np.eye(2)}, random_state=np.int64(3), dtype="float32",
    )
    loaded = load_model(save_model(model, tmp_path / "unfitted.npz"))
    params = loaded.get_params()
    np.testing.assert_array_equal(params["means_init"], model.means_init)
    assert params["weights_init"] == [0.4, 0.6]
    assert params["prior"]["mean_precision"] == 0.01
    np.testing.assert_array_equal(params["prior"]["scale"], np.eye(2))
    assert params["random_state"] == 3 and params["dtype"] == "float32"
    assert not hasattr(loaded, "means_")


def test_file_is_plain_npz_with_versioned_metadata(gmm, tmp_path):
    path = save_model(gmm, tmp_path / "gmm.npz")
    meta, arrays = _metadata(path)  # allow_pickle=False: nothing pickled anywhere
    assert meta["format"] == FORMAT_NAME == "lateo-model"
    assert meta["format_version"] == FORMAT_VERSION == 1
    assert meta["class"] == "lateo.models.gaussian_mixture.GaussianMixture"
    assert isinstance(meta["lateo_version"], str)
    assert meta["params"]["n_components"] == 2
    assert all(a.dtype != object for a in arrays.values())


def test_unsaveable_random_state_warns_and_is_dropped(tmp_path):
    model = GaussianMixture(2, random_state=np.random.default_rng(0))
    with pytest.warns(UserWarning, match="random_state=None"):
        save_model(model, tmp_path / "m.npz")
    assert load_model(tmp_path / "m.npz").random_state is None


# --------------------------------------------------------------------------- what may be saved


class NotLateo:
    def get_params(self, deep=True):
        return {}


def test_refuses_to_save_foreign_estimators(tmp_path):
    with pytest.raises(ValueError, match="lateo estimators only"):
        save_model(NotLateo(), tmp_path / "x.npz")
    assert not (tmp_path / "x.npz").exists()


def test_unsupported_parameter_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="Cannot save parameter prior"):
        save_model(GaussianMixture(prior=object()), tmp_path / "x.npz")
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- atomic writes


def _failing_savez(handle, **arrays):
    handle.write(b"PK\x03\x04 partial archive")
    raise OSError("disk full")


def test_failed_write_leaves_no_file(gmm, tmp_path, monkeypatch):
    monkeypatch.setattr(lio.np, "savez", _failing_savez)
    with pytest.raises(OSError, match="disk full"):
        save_model(gmm, tmp_path / "gmm.npz")
    assert list(tmp_path.iterdir()) == []


def test_failed_write_keeps_the_previous_file(gmm, data, tmp_path, monkeypatch):
    path = save_model(gmm, tmp_path / "gmm.npz")
    before = path.read_bytes()
    monkeypatch.setattr(lio.np, "savez", _failing_savez)
    with pytest.raises(OSError):
        save_model(GaussianMixture(3), path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gmm.npz"]
    np.testing.assert_array_equal(load_model(path).predict(data), gmm.predict(data))


def test_overwrite_and_permissions(gmm, kmeans, tmp_path):
    path = save_model(gmm, tmp_path / "model.npz")
    save_model(kmeans, path)
    assert type(load_model(path)) is KMeans
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.npz"]
    mask = os.umask(0)
    os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask


def test_save_into_missing_folder(gmm, tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        save_model(gmm, tmp_path / "nope" / "m.npz")


# --------------------------------------------------------------------------- bad files


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_model(tmp_path / "absent.npz")


def test_truncated_file(gmm, tmp_path):
    path = save_model(gmm, tmp_path / "gmm.npz")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ValueError, match="(?i)truncated or corrupt.*save the model again"):
        load_model(path)


def test_corrupted_bytes(gmm, tmp_path):
    path = save_model(gmm, tmp_path / "gmm.npz")
    raw = bytearray(path.read_bytes())
    info = zipfile.ZipFile(path).getinfo("attr:means_.npy")
    name_len, extra_len = struct.unpack("<HH", raw[info.header_offset + 26 : info.header_offset + 30])
    end = info.header_offset + 30 + name_len + extra_len + info.compress_size
    raw[end - 16 : end] = b"\xff" * 16  # the last two means, inside the entry's data
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="truncated or corrupt.*Bad CRC-32 for file 'attr:means_.npy'"):
        load_model(path)


def test_not_a_zip_file(tmp_path):
    path = tmp_path / "data.npz"
    path.write_text("eruptions,waiting\n3.6,79\n")
    with pytest.raises(ValueError, match="not a lateo model file"):
        load_model(path)


def test_npz_without_metadata(tmp_path):
    path = tmp_path / "plain.npz"
    np.savez(path, a=np.arange(3))
    with pytest.raises(ValueError, match="not a lateo model file"):
        load_model(path)


def test_corrupt_metadata_json(tmp_path):
    path = tmp_path / "m.npz"
    np.savez(path, **{META: np.frombuffer(b"{not json", dtype=np.uint8)})
    with pytest.raises(ValueError, match="metadata is not valid JSON"):
        load_model(path)


def test_other_format(gmm, tmp_path):
    meta, arrays = _metadata(save_model(gmm, tmp_path / "gmm.npz"))
    meta["format"] = "something-else"
    with pytest.raises(ValueError, match="not a lateo model file"):
        load_model(_write_npz(tmp_path / "other.npz", meta, **arrays))


def test_wrong_format_version(gmm, tmp_path):
    meta, arrays = _metadata(save_model(gmm, tmp_path / "gmm.npz"))
    meta["format_version"] = 2
    with pytest.raises(ValueError, match="format version 2.*reads format version 1.*re-fit"):
        load_model(_write_npz(tmp_path / "v2.npz", meta, **arrays))


@pytest.mark.parametrize(
    "class_name, match",
    [
        ("os.system", "not a lateo class"),
        ("sklearn.mixture.GaussianMixture", "not a lateo class"),
        ("lateo_evil.Estimator", "not a lateo class"),
        ("lateo.models.no_such_module.Model", "does not have"),
        ("lateo.core.progress.FitProgress", "not a lateo estimator"),
    ],
)
def test_refuses_classes_outside_lateo(gmm, tmp_path, class_name, match):
    meta, arrays = _metadata(save_model(gmm, tmp_path / "gmm.npz"))
    meta["class"] = class_name
    with pytest.raises(ValueError, match=match):
        load_model(_write_npz(tmp_path / "evil.npz", meta, **arrays))


def test_missing_array_entry(gmm, tmp_path):
    meta, arrays = _metadata(save_model(gmm, tmp_path / "gmm.npz"))
    del arrays["attr:means_"]
    with pytest.raises(ValueError, match="corrupt"):
        load_model(_write_npz(tmp_path / "partial.npz", meta, **arrays))
