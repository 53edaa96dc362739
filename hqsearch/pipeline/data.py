"""Dataset sources, each turned into the same seeded train/validation/test split.

The split depends only on the data section (its `seed`), never on the trial, so every trial of a study
is trained and scored on the same samples and their accuracies are comparable.
"""

from __future__ import annotations

import importlib
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from hqsearch.config.schema import DataSection
from hqsearch.exceptions import DataError, DataFileMissing

# OpenML 42468, "hls4ml_lhc_jets_hlf": 16 high-level jet features and one of five jet classes.
JET_HLF_OPENML_ID = 42468
JET_HLF_FEATURES = [
    "zlogz",
    "c1_b0_mmdt",
    "c1_b1_mmdt",
    "c1_b2_mmdt",
    "c2_b1_mmdt",
    "c2_b2_mmdt",
    "d2_b1_mmdt",
    "d2_b2_mmdt",
    "d2_a1_b1_mmdt",
    "d2_a1_b2_mmdt",
    "m2_b1_mmdt",
    "m2_b2_mmdt",
    "n2_b1_mmdt",
    "n2_b2_mmdt",
    "mass_mmdt",
    "multiplicity",
]
JET_HLF_LABEL = "class"


@dataclass(frozen=True)
class Dataset:
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: tuple[str, ...]

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])


def _call(spec: str, what: str):
    module_name, _, attr = spec.partition(":")
    try:
        fn = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as err:
        raise DataError(f"{spec!r} cannot be imported: {err}", what) from None
    return fn


def _digits(cfg: DataSection) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    return (x / 16.0).astype(np.float32), y  # pixels are 0..16; scaled to [0, 1]


def _frame_xy(df: pd.DataFrame, cfg: DataSection, source: str, label: str) -> tuple[np.ndarray, np.ndarray]:
    if label not in df.columns:
        raise DataError(f"{source} has no column {label!r} (columns: {', '.join(map(str, df.columns))})", "data.label")
    features = cfg.features if isinstance(cfg.features, list) else [c for c in df.columns if c != label]
    missing = [c for c in features if c not in df.columns]
    if missing:
        raise DataError(f"{source} has no column {', '.join(map(repr, missing))}", "data.features")
    for c in features:  # a feature the network cannot take: one error naming it, not numpy's ValueError
        if not (pd.api.types.is_numeric_dtype(df[c]) or pd.api.types.is_bool_dtype(df[c])):
            found = _first_non_number(df[c])
            key = "data.features" if isinstance(cfg.features, list) else "data.path"
            raise DataError(
                f"{source}: feature column {c!r} is not numeric{found}: "
                "list the numeric columns in data.features, or make this one numbers",
                key,
            )
    return df[features].to_numpy(np.float32), df[label].to_numpy()


def _first_non_number(column: pd.Series) -> str:
    """` (e.g. 'abc')`: a value of a column that is not a number, for the error; "" when none is found."""
    try:
        bad = column[pd.to_numeric(column, errors="coerce").isna() & column.notna()]
    except (TypeError, ValueError):  # values pandas cannot even try (lists, mappings)
        bad = column.dropna()
    return f" (e.g. {str(bad.iloc[0])[:40]!r})" if len(bad) else ""


def _existing(path: Path) -> Path:
    if not path.exists():
        raise DataFileMissing(f"data file {path} does not exist", "data.path")
    if path.is_dir():
        raise DataError(f"{path} is a folder, not a data file", "data.path")
    return path


def _read_table(path: Path) -> pd.DataFrame:
    _existing(path)
    try:
        return pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    except Exception as err:  # pandas and pyarrow raise many types for a file they cannot read
        kind = "Parquet" if path.suffix == ".parquet" else "CSV"
        raise DataError(f"{path} cannot be read as {kind} ({type(err).__name__}: {err})", "data.path") from None


def _jet_hlf(cfg: DataSection) -> tuple[np.ndarray, np.ndarray]:
    if cfg.path is not None:
        df = _read_table(cfg.path)
        source = str(cfg.path)
    else:
        from sklearn.datasets import fetch_openml

        try:
            df = fetch_openml(data_id=JET_HLF_OPENML_ID, data_home=cfg.cache_dir, as_frame=True, parser="auto").frame
        except Exception as err:  # network, cache or OpenML errors all mean the same to the user
            raise DataError(
                f"not set, and OpenML {JET_HLF_OPENML_ID} cannot be fetched ({err}); download it once and set it",
                "data.path",
            ) from None
        source = f"OpenML {JET_HLF_OPENML_ID}"
    cfg_feats = cfg.model_copy(update={"features": cfg.features or JET_HLF_FEATURES})
    return _frame_xy(df, cfg_feats, source, cfg.label or JET_HLF_LABEL)


def _npz(cfg: DataSection) -> tuple[np.ndarray, np.ndarray]:
    assert cfg.path is not None
    path = _existing(cfg.path)
    not_npz = f"{path} is not an npz file (expected arrays saved with numpy.savez or savez_compressed)"
    try:
        with path.open("rb") as f:
            magic = f.read(6)
    except OSError as err:
        raise DataError(f"{path} cannot be read ({err.strerror})", "data.path") from None
    if magic == b"\x93NUMPY":
        raise DataError(f"{not_npz}: it holds one array, as numpy.save writes", "data.path")
    if not zipfile.is_zipfile(path):  # numpy would try it as a pickle and say so, which misleads
        raise DataError(not_npz, "data.path")
    try:
        arrays = np.load(path)  # no pickles: object arrays are refused, never unpickled
    except Exception as err:  # a damaged zip: numpy and zipfile raise many types
        raise DataError(f"{not_npz}: {type(err).__name__}: {err}", "data.path") from None
    with arrays:
        xk = cfg.features if isinstance(cfg.features, str) else "x"
        yk = cfg.label or "y"
        for k in (xk, yk):
            if k not in arrays:
                key = "data.features" if k == xk else "data.label"
                raise DataError(f"{path} has no array {k!r} (arrays: {', '.join(arrays.files)})", key)
        try:
            x, y = arrays[xk], arrays[yk]
        except Exception as err:  # a damaged member, or an array of Python objects (pickled)
            why = f"{type(err).__name__}: {err}"
            raise DataError(f"{path}: arrays {xk!r} and {yk!r} cannot be read ({why})", "data.path") from None
    try:
        return x.astype(np.float32), y
    except (TypeError, ValueError):
        raise DataError(f"{path}: array {xk!r} is not numeric (dtype {x.dtype})", "data.features") from None


def _table(cfg: DataSection) -> tuple[np.ndarray, np.ndarray]:
    assert cfg.path is not None and cfg.label is not None
    return _frame_xy(_read_table(cfg.path), cfg, str(cfg.path), cfg.label)


def _callable(cfg: DataSection) -> tuple[np.ndarray, np.ndarray]:
    assert cfg.function is not None
    fn = _call(cfg.function, "data.function")
    try:
        out = fn()
    except Exception as err:  # the user's loader failed: say so where the config names it
        raise DataError(f"{cfg.function!r} raised {type(err).__name__}: {err}", "data.function") from err
    if not (isinstance(out, tuple) and len(out) == 2):
        raise DataError(f"{cfg.function!r} must return (x, y), got {type(out).__name__}", "data.function")
    return np.asarray(out[0], np.float32), np.asarray(out[1])


_SOURCES = {
    "digits": _digits,
    "jet_hlf": _jet_hlf,
    "npz": _npz,
    "csv": _table,
    "parquet": _table,
    "callable": _callable,
}


def _encode_labels(y: np.ndarray) -> tuple[np.ndarray, tuple[str, ...]]:
    y = np.asarray(y)
    if y.ndim == 2:  # one-hot
        return y.argmax(axis=1), tuple(str(i) for i in range(y.shape[1]))
    classes, idx = np.unique(y, return_inverse=True)
    return idx, tuple(str(c) for c in classes)


def load_dataset(cfg: DataSection) -> Dataset:
    x, y = _SOURCES[cfg.source](cfg)
    if len(x) != len(y):
        raise DataError(f"{len(x)} samples but {len(y)} labels", "data.source")
    if len(x) < 10:
        raise DataError(f"only {len(x)} samples", "data.source")
    y, classes = _encode_labels(y)
    if len(classes) < 2:
        raise DataError("the labels have a single class", "data.label" if cfg.label else "data.source")

    order = np.random.default_rng(cfg.seed).permutation(len(x))
    x, y = x[order], y[order]
    n_test = max(1, round(len(x) * cfg.test_fraction))
    n_val = round(len(x) * cfg.val_fraction)
    x_test, y_test = x[:n_test], y[:n_test]
    x_val, y_val = x[n_test : n_test + n_val], y[n_test : n_test + n_val]
    x_train, y_train = x[n_test + n_val :], y[n_test + n_val :]

    if cfg.standardize:  # statistics from the training split only
        mean = x_train.mean(axis=0)
        std = x_train.std(axis=0)
        std[std == 0] = 1.0
        x_train, x_val, x_test = ((a - mean) / std for a in (x_train, x_val, x_test))

    if cfg.image_shape:
        shape = tuple(cfg.image_shape)
        if int(np.prod(shape)) != int(np.prod(x.shape[1:])):
            raise DataError(f"{list(shape)} does not hold {int(np.prod(x.shape[1:]))} features", "data.image_shape")
        x_train, x_val, x_test = (a.reshape(len(a), *shape) for a in (x_train, x_val, x_test))

    return Dataset(
        x_train.astype(np.float32),
        y_train,
        x_val.astype(np.float32),
        y_val,
        x_test.astype(np.float32),
        y_test,
        classes,
    )
