"""Save and load fitted estimators in a safe, versioned file format.

The format never uses pickle, so loading a file cannot run code. A model
file is a NumPy ``.npz`` archive (a zip of ``.npy`` arrays) holding

``__lateo_metadata__``
    UTF-8 JSON, stored as a uint8 array, with the format name
    (``"lateo-model"``), ``format_version``, the lateo version that wrote
    it, the estimator's fully qualified class name, its hyperparameters
    (``get_params()``) and its fitted attributes;
``param:<name>``, ``attr:<name>``, ...
    one plain numeric (or unicode) array per array-valued entry.

It is read back with ``numpy.load(..., allow_pickle=False)``, and only
classes under the ``lateo`` package are reconstructed. Writes are atomic: the
archive goes to a temporary file in the target folder, is flushed to disk and
then renamed over the target, so a crash never leaves a half-written model.

Values are encoded as JSON scalars (None, bool, int, float, str) or as tagged
objects: ``{"__array__": key, "kind": "ndarray"|"list"|"object"}``,
``{"__tuple__": [...]}``, ``{"__dict__": {...}}``,
``{"__dtype__": name}``, ``{"__namedtuple__": class, "fields": {...}}``,
and for pandas objects (no pickle either: values, index and columns as plain arrays)
``{"__index__": {"levels": [...], "names": [...]}}`` (an ``Index`` or a
``MultiIndex``, one array per level), ``{"__series__": {"values": ..., "index": ...,
"name": ...}}`` and ``{"__dataframe__": {"columns": ..., "index": ..., "data": [...]}}``
(one array per column, so mixed column dtypes survive). Files without pandas
values are unchanged; older lateo versions cannot read files that hold them.
"""

from __future__ import annotations

import importlib
import json
import numbers
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np

__all__ = ["save_model", "load_model", "FORMAT_NAME", "FORMAT_VERSION"]

FORMAT_NAME = "lateo-model"
FORMAT_VERSION = 1
_META_KEY = "__lateo_metadata__"
_ALLOWED_PREFIXES = ("lateo.",)


def lateo_version() -> str:
    """The installed lateo version, or ``"unknown"``."""
    try:
        import lateo

        version = getattr(lateo, "__version__", None)
        if version:
            return str(version)
    except ImportError:  # pragma: no cover - we are inside lateo
        pass
    try:
        from importlib.metadata import PackageNotFoundError, version as dist_version

        return dist_version("lateo")
    except PackageNotFoundError:
        return "unknown"


# --------------------------------------------------------------------------- encoding


class _Encoder:
    """Turn parameter / attribute values into JSON plus a dict of arrays."""

    def __init__(self):
        self.arrays: dict[str, np.ndarray] = {}

    def _store(self, key: str, array: np.ndarray, kind: str) -> dict:
        if array.dtype.kind == "O":
            try:
                array = array.astype(str)
            except (TypeError, ValueError):
                raise TypeError("an object array that is not all strings") from None
            kind = "object"
        if array.dtype.kind not in "biufcU":
            raise TypeError(f"an array of dtype {array.dtype}")
        self.arrays[key] = np.ascontiguousarray(array).reshape(array.shape)  # ascontiguousarray makes 0-d 1-d
        return {"__array__": key, "kind": kind}

    def encode(self, value, key: str):
        if value is None or isinstance(value, (bool, str)):
            return value
        if isinstance(value, np.generic) and value.dtype.kind in "biuf":
            return value.item()
        if isinstance(value, numbers.Integral):
            return int(value)
        if isinstance(value, numbers.Real):
            return float(value)
        if isinstance(value, np.dtype) or (isinstance(value, type) and issubclass(value, np.generic)):
            return {"__dtype__": np.dtype(value).name}
        if isinstance(value, np.ndarray) or type(value).__module__.startswith(("jax", "jaxlib")):
            return self._store(key, np.asarray(value), "ndarray")
        if isinstance(value, tuple) and hasattr(value, "_fields"):
            cls = type(value)
            fields = {f: self.encode(getattr(value, f), f"{key}.{f}") for f in value._fields}
            return {"__namedtuple__": f"{cls.__module__}.{cls.__qualname__}", "fields": fields}
        if isinstance(value, list) and value and all(_is_number(v) for v in value):
            return self._store(key, np.asarray(value), "list")
        if isinstance(value, (list, tuple)):
            items = [self.encode(v, f"{key}.{i}") for i, v in enumerate(value)]
            return items if isinstance(value, list) else {"__tuple__": items}
        if isinstance(value, dict) and all(isinstance(k, str) for k in value):
            return {"__dict__": {k: self.encode(v, f"{key}.{k}") for k, v in value.items()}}
        pandas = _pandas_types()
        if pandas is not None and isinstance(value, pandas):
            return self._encode_pandas(value, key)
        raise TypeError(f"a value of type {type(value).__name__}")

    # pandas: values, index and columns as plain arrays, never pickled objects

    def _column(self, values, key: str, what: str) -> dict:
        """One 1-D array: a NumPy dtype, or pandas' string dtypes (other extension dtypes are refused)."""
        dtype = getattr(values, "dtype", None)
        pandas_dtype = str(dtype) if dtype is not None and not isinstance(dtype, np.dtype) else None
        if pandas_dtype is not None and pandas_dtype not in _PANDAS_STRING_DTYPES:
            raise TypeError(f"{what} of pandas dtype {dtype}")
        array = np.asarray(values, dtype=object) if pandas_dtype else np.asarray(values)
        if array.dtype.kind == "O" and not all(isinstance(v, str) for v in array.ravel()):
            raise TypeError(f"{what} of objects that are not all strings (missing values?)")
        spec = self._store(key, array, "ndarray")
        if pandas_dtype:
            spec["pandas_dtype"] = pandas_dtype
        return spec

    def _encode_index(self, index, key: str) -> dict:
        import pandas as pd

        if isinstance(index, pd.MultiIndex):
            levels = [index.get_level_values(i) for i in range(index.nlevels)]
        else:
            levels = [index]
        names = [self.encode(name, f"{key}.name{i}") for i, name in enumerate(index.names)]
        if not all(name is None or isinstance(name, (str, int, float, bool)) for name in names):
            raise TypeError("an index whose names are not strings or numbers")
        arrays = [self._column(level, f"{key}.level{i}", "an index level") for i, level in enumerate(levels)]
        return {"__index__": {"levels": arrays, "names": names, "multi": isinstance(index, pd.MultiIndex)}}

    def _encode_pandas(self, value, key: str) -> dict:
        import pandas as pd

        if isinstance(value, pd.Index):
            return self._encode_index(value, key)
        if isinstance(value, pd.Series):
            name = self.encode(value.name, f"{key}.name")
            if not (name is None or isinstance(name, (str, int, float, bool))):
                raise TypeError("a Series whose name is not a string or number")
            return {"__series__": {"values": self._column(value, f"{key}.values", "a Series"),
                                   "index": self._encode_index(value.index, f"{key}.index"), "name": name}}
        data = [self._column(value.iloc[:, j], f"{key}.c{j}", "a DataFrame column") for j in range(value.shape[1])]
        return {"__dataframe__": {"data": data, "index": self._encode_index(value.index, f"{key}.index"),
                                  "columns": self._encode_index(value.columns, f"{key}.columns")}}


_PANDAS_STRING_DTYPES = ("str", "string")  # pandas' default string dtype (pandas >= 3) and StringDtype()


def _decode_column(value, arrays):
    """A column / index level: the array, back in its pandas string dtype if it had one."""
    array = _decode(value, arrays)
    pandas_dtype = value.get("pandas_dtype") if isinstance(value, dict) else None
    if pandas_dtype is None:
        return array
    if pandas_dtype not in _PANDAS_STRING_DTYPES:
        raise ValueError(f"unknown pandas dtype {pandas_dtype!r}")
    import pandas as pd

    return pd.array(np.asarray(array, dtype=object), dtype=pandas_dtype)


def _pandas_types():
    """``(DataFrame, Series, Index)`` if pandas is already imported (a pandas value implies it), else None."""
    import sys

    pd = sys.modules.get("pandas")
    return None if pd is None else (pd.DataFrame, pd.Series, pd.Index)


def _decode_index(value, arrays):
    import pandas as pd

    spec = value["__index__"]
    levels = [_decode_column(level, arrays) for level in spec["levels"]]
    names = list(spec["names"])
    levels = [pd.Index(level, dtype=_dtype_of(level)) for level in levels]
    if spec.get("multi", len(levels) > 1):
        return pd.MultiIndex.from_arrays(levels, names=names)
    return levels[0].rename(names[0])


def _dtype_of(values):
    """The dtype to rebuild a pandas object with: kept as stored (pandas >= 3 would make object strings ``str``)."""
    return values.dtype if isinstance(values, np.ndarray) else None


def _is_number(value) -> bool:
    return isinstance(value, (numbers.Number, np.generic)) and not isinstance(value, (bool, np.bool_))


def _decode(value, arrays):
    if isinstance(value, list):
        return [_decode(v, arrays) for v in value]
    if not isinstance(value, dict):
        return value
    if "__array__" in value:
        array = arrays[value["__array__"]]
        kind = value.get("kind", "ndarray")
        if kind == "list":
            return array.tolist()
        return array.astype(object) if kind == "object" else array
    if "__tuple__" in value:
        return tuple(_decode(v, arrays) for v in value["__tuple__"])
    if "__dict__" in value:
        return {k: _decode(v, arrays) for k, v in value["__dict__"].items()}
    if "__dtype__" in value:
        return np.dtype(value["__dtype__"]).name
    if "__namedtuple__" in value:
        cls = _import_lateo_class(value["__namedtuple__"])
        return cls(**{k: _decode(v, arrays) for k, v in value["fields"].items()})
    if "__index__" in value:
        return _decode_index(value, arrays)
    if "__series__" in value:
        import pandas as pd

        spec = value["__series__"]
        values = _decode_column(spec["values"], arrays)
        return pd.Series(values, index=_decode_index(spec["index"], arrays), name=spec["name"], dtype=_dtype_of(values))
    if "__dataframe__" in value:
        import pandas as pd

        spec = value["__dataframe__"]
        columns = _decode_index(spec["columns"], arrays)
        index = _decode_index(spec["index"], arrays)
        data = [_decode_column(column, arrays) for column in spec["data"]]
        if len(data) != len(columns):
            raise ValueError("a DataFrame whose column count does not match its columns")
        frame = pd.DataFrame({j: pd.Series(v, dtype=_dtype_of(v)) for j, v in enumerate(data)},
                             index=pd.RangeIndex(len(index)))
        frame.index = index
        frame.columns = columns
        return frame
    raise ValueError(f"unknown tagged value {sorted(value)}")


def _is_fitted_attribute(cls, name: str) -> bool:
    """Whether ``name`` is fitted state that a model file carries.

    That is a public attribute ending in ``_`` (scikit-learn's fitted
    attributes), or the private storage ``_name_`` behind a property
    ``name_`` of the class: an HMM's ``covars_`` is stored in its covariance
    type's own shape and read as full matrices, so the storage, not the
    property's view, is what restores the model exactly.
    """
    if not name.endswith("_") or name.endswith("__") or name.startswith("__"):
        return False
    return not name.startswith("_") or isinstance(getattr(cls, name[1:], None), property)


def _fitted_attributes(estimator) -> dict:
    """The estimator's fitted attributes (see :func:`_is_fitted_attribute`)."""
    cls = type(estimator)
    return {name: value for name, value in vars(estimator).items() if _is_fitted_attribute(cls, name)}


def _metadata(estimator, encoder: _Encoder) -> dict:
    cls = type(estimator)
    class_name = f"{cls.__module__}.{cls.__qualname__}"
    if not class_name.startswith(_ALLOWED_PREFIXES):
        raise ValueError(
            f"save_model saves lateo estimators only; got {class_name}. "
            "Use that library's own persistence for other objects."
        )
    if not hasattr(estimator, "get_params"):
        raise ValueError(f"{class_name} has no get_params(); it is not a lateo estimator.")
    params = {}
    for name, value in estimator.get_params(deep=False).items():
        try:
            params[name] = encoder.encode(value, f"param:{name}")
        except TypeError as exc:
            if name == "random_state":
                warnings.warn(
                    f"random_state={value!r} cannot be saved; the loaded model has random_state=None.",
                    UserWarning,
                    stacklevel=3,
                )
                params[name] = None
            else:
                raise ValueError(
                    f"Cannot save parameter {name}={value!r}: {exc} is not supported "
                    "(use numbers, strings, None, arrays, lists, tuples or dicts of these)."
                ) from None
    attributes = {}
    for name, value in _fitted_attributes(estimator).items():
        try:
            attributes[name] = encoder.encode(value, f"attr:{name}")
        except TypeError as exc:
            warnings.warn(f"Fitted attribute {name} is not saved: {exc} is not supported.", UserWarning, stacklevel=3)
    return {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "lateo_version": lateo_version(),
        "class": class_name,
        "params": params,
        "attributes": attributes,
    }


# --------------------------------------------------------------------------- saving


def save_model(estimator, path) -> Path:
    """Save a lateo estimator (fitted or not) to ``path``, atomically.

    Parameters
    ----------
    estimator : lateo estimator
        Any estimator whose class lives under ``lateo.``. Its
        hyperparameters (``get_params()``) and fitted attributes (public
        attributes ending in ``_``, and the private ``_name_`` behind a
        property ``name_``: arrays, numbers, booleans, strings) are
        written; nothing is pickled.
    path : str or os.PathLike
        Target file, written exactly at this name (the suffix ``.npz`` is
        conventional, e.g. ``"model.lateo.npz"``). An existing file is
        replaced only once the new one is complete.

    Returns
    -------
    pathlib.Path
        The path written.

    Raises
    ------
    ValueError
        If ``estimator`` is not a lateo estimator or has a hyperparameter
        that cannot be stored safely.

    See Also
    --------
    load_model : read the file back.
    """
    path = Path(path)
    encoder = _Encoder()
    meta = _metadata(estimator, encoder)
    payload = {_META_KEY: np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8)}
    payload.update(encoder.arrays)
    _atomic_write(path, lambda handle: np.savez(handle, **payload))
    return path


def _atomic_write(path: Path, write) -> None:
    """Call ``write(file)`` on a temp file beside ``path``, fsync, then rename."""
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise FileNotFoundError(f"Cannot save to {path}: folder {folder} does not exist.")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(folder)


def _umask() -> int:
    """The process umask (mkstemp creates 0600 files; the model gets the usual mode)."""
    try:  # Linux: read it without changing it (os.umask is not thread-safe)
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _fsync_dir(folder: Path) -> None:
    """Make the rename durable (POSIX); a no-op where folders cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - Windows
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


# --------------------------------------------------------------------------- loading


def load_model(path):
    """Load an estimator saved with :func:`save_model`.

    Parameters
    ----------
    path : str or os.PathLike
        The model file.

    Returns
    -------
    estimator
        A new estimator of the saved class, with the saved hyperparameters
        and fitted attributes; its predictions equal the saved model's.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the file is corrupt or truncated, is not a lateo model file, was
        written in another format version, or names a class outside lateo.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"Model file {path} does not exist.")
    meta, arrays = _read_archive(path)
    _check_metadata(meta, path)
    cls = _import_estimator_class(meta["class"], path)
    try:
        params = {k: _decode(v, arrays) for k, v in meta["params"].items()}
        attributes = {k: _decode(v, arrays) for k, v in meta["attributes"].items()}
    except (KeyError, TypeError, AttributeError, IndexError) as exc:
        raise ValueError(f"{path} is corrupt ({type(exc).__name__}: {exc} while decoding it). Save it again.") from None
    try:
        estimator = cls(**params)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"{path} holds a {meta['class']} whose parameters this lateo ({lateo_version()}) does not accept "
            f"({exc}); it was written by lateo {meta.get('lateo_version')}. Install that version or re-fit."
        ) from None
    for name, value in attributes.items():
        if not _is_fitted_attribute(cls, name):
            raise ValueError(f"{path} is corrupt: {name!r} is not a fitted attribute of {meta['class']}. Save it again.")
        setattr(estimator, name, value)
    return estimator


def _read_archive(path: Path):
    """Metadata dict and all arrays, read eagerly; ValueError if unreadable."""
    what_to_do = "Save the model again with lateo.io.save_model."
    with open(path, "rb") as handle:
        magic = handle.read(4)
    if magic != b"PK\x03\x04":
        raise ValueError(
            f"{path} is not a lateo model file (not a .npz archive). "
            "Load files written by lateo.io.save_model (or `lateo fit ... --out`)."
        )
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except Exception as exc:  # zipfile.BadZipFile, EOFError, OSError, zlib.error, ValueError, ...
        raise ValueError(
            f"{path} is truncated or corrupt: it could not be read ({type(exc).__name__}: {exc}). {what_to_do}"
        ) from None
    if _META_KEY not in arrays:
        raise ValueError(
            f"{path} is a .npz archive but not a lateo model file (no {_META_KEY} entry). "
            "Load files written by lateo.io.save_model."
        )
    raw = arrays.pop(_META_KEY)
    try:
        meta = json.loads(raw.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path} is corrupt: its metadata is not valid JSON ({exc}). {what_to_do}") from None
    if not isinstance(meta, dict):
        raise ValueError(f"{path} is corrupt: its metadata is not a JSON object. {what_to_do}")
    return meta, arrays


def _check_metadata(meta: dict, path: Path) -> None:
    if meta.get("format") != FORMAT_NAME:
        raise ValueError(
            f"{path} is not a lateo model file: its format is {meta.get('format')!r}, expected {FORMAT_NAME!r}."
        )
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise ValueError(
            f"{path} uses lateo model format version {version!r} (written by lateo "
            f"{meta.get('lateo_version', 'unknown')}), but this lateo ({lateo_version()}) reads format version "
            f"{FORMAT_VERSION}. Load it with the lateo version that wrote it, or re-fit and save the model again."
        )
    missing = [key for key in ("class", "params", "attributes") if key not in meta]
    if missing or not isinstance(meta["params"], dict) or not isinstance(meta["attributes"], dict):
        raise ValueError(f"{path} has incomplete metadata (missing {missing or 'params/attributes'}). Save it again.")


def _import_lateo_class(name, path=None):
    """Import ``name`` (``"pkg.module.Class"``), refusing anything outside lateo."""
    where = f"{path} names class" if path is not None else "Refusing class"
    if not isinstance(name, str) or not name.startswith(_ALLOWED_PREFIXES):
        raise ValueError(
            f"{where} {name!r}, which is not a lateo class; only classes under 'lateo.' are loaded, "
            "so that loading a file never runs foreign code."
        )
    module_name, _, qualname = name.rpartition(".")
    while module_name:
        try:
            obj = importlib.import_module(module_name)
            break
        except ImportError:
            module_name, _, head = module_name.rpartition(".")
            qualname = f"{head}.{qualname}"
    else:
        raise ValueError(f"{where} {name!r}, which this lateo ({lateo_version()}) does not have.")
    try:
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except AttributeError:
        raise ValueError(f"{where} {name!r}, which this lateo ({lateo_version()}) does not have.") from None
    if not isinstance(obj, type):
        raise ValueError(f"{where} {name!r}, which is not a class.")
    return obj


def _import_estimator_class(name, path):
    cls = _import_lateo_class(name, path)
    if not (hasattr(cls, "get_params") and hasattr(cls, "set_params")):
        raise ValueError(f"{path} names class {name!r}, which is not a lateo estimator.")
    return cls
