import numpy as np
import pandas as pd
import pytest

from hqsearch.config import DataSection
from hqsearch.data import JET_HLF_FEATURES, DataError, load_dataset


def test_digits_split_is_seeded_and_disjoint():
    a = load_dataset(DataSection())
    b = load_dataset(DataSection())
    assert np.array_equal(a.x_test, b.x_test)
    assert len(a.x_train) + len(a.x_val) + len(a.x_test) == 1797
    assert len(a.x_test) == round(1797 * 0.25) and a.n_classes == 10
    assert a.x_train.max() <= 1.0
    c = load_dataset(DataSection(seed=1))
    assert not np.array_equal(a.x_test, c.x_test)


def test_digits_as_images():
    d = load_dataset(DataSection(image_shape=[8, 8, 1]))
    assert d.input_shape == (8, 8, 1)
    with pytest.raises(DataError, match="image_shape"):
        load_dataset(DataSection(image_shape=[7, 7, 1]))


def test_jet_hlf_from_a_local_file_in_openml_format(tmp_path):
    rng = np.random.default_rng(0)
    df = pd.DataFrame(rng.normal(size=(200, 16)) * 50 + 10, columns=JET_HLF_FEATURES)
    df["class"] = rng.choice(list("gqtwz"), size=200)
    path = tmp_path / "jets.csv"
    df.to_csv(path, index=False)
    d = load_dataset(DataSection(source="jet_hlf", path=path, standardize=True))
    assert d.classes == ("g", "q", "t", "w", "z") and d.input_shape == (16,)
    assert abs(float(d.x_train.mean())) < 1e-5 and float(d.x_train.std()) == pytest.approx(1.0, rel=1e-3)


def test_npz_csv_and_parquet(tmp_path):
    x = np.random.default_rng(0).random((50, 4)).astype(np.float32)
    y = np.arange(50) % 3
    np.savez(tmp_path / "d.npz", feats=x, labels=y)
    d = load_dataset(DataSection(source="npz", path=tmp_path / "d.npz", features="feats", label="labels"))
    assert d.n_classes == 3 and d.input_shape == (4,)
    df = pd.DataFrame(x, columns=list("abcd")).assign(target=y)
    df.to_parquet(tmp_path / "d.parquet")
    d = load_dataset(DataSection(source="parquet", path=tmp_path / "d.parquet", label="target", features=["a", "b"]))
    assert d.input_shape == (2,)
    with pytest.raises(DataError, match="has no column 'zz'"):
        load_dataset(DataSection(source="parquet", path=tmp_path / "d.parquet", label="target", features=["zz"]))
    with pytest.raises(DataError, match="does not exist"):
        load_dataset(DataSection(source="csv", path=tmp_path / "none.csv", label="target"))


def test_callable_source_errors_are_clear():
    with pytest.raises(DataError, match="cannot be imported"):
        load_dataset(DataSection(source="callable", function="no_such_module:load"))
