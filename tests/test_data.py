import numpy as np
import pandas as pd
import pytest

from hqsearch.config.schema import DataSection
from hqsearch.pipeline.data import JET_HLF_FEATURES, DataError, load_dataset


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


def test_a_non_numeric_feature_column_is_named_with_its_file(tmp_path):
    rows = "".join(f"{i},{'unknown' if i == 7 else i * 2},{i % 2}\n" for i in range(40))
    (tmp_path / "d.csv").write_text("a,b,label\n" + rows)
    with pytest.raises(DataError) as err:
        load_dataset(DataSection(source="csv", path=tmp_path / "d.csv", label="label"))
    assert err.value.key == "data.path"  # every column but the label is a feature by default
    assert err.value.message.startswith(f"{tmp_path / 'd.csv'}: feature column 'b' is not numeric (e.g. 'unknown')")
    pd.DataFrame({"a": np.arange(40.0), "b": ["x"] * 40, "label": np.arange(40) % 2}).to_parquet(tmp_path / "d.parquet")
    with pytest.raises(DataError, match=r"d\.parquet: feature column 'b' is not numeric") as err:
        load_dataset(DataSection(source="parquet", path=tmp_path / "d.parquet", label="label", features=["a", "b"]))
    assert err.value.key == "data.features"
    d = load_dataset(DataSection(source="parquet", path=tmp_path / "d.parquet", label="label", features=["a"]))
    assert d.input_shape == (1,)


def test_a_file_that_is_not_an_npz_is_named(tmp_path):
    (tmp_path / "text.npz").write_text("a,b\n1,2\n")
    np.save(tmp_path / "one.npy", np.zeros((20, 3)))
    np.savez(tmp_path / "objects.npz", x=np.array([{"a": 1}] * 20, dtype=object), y=np.arange(20) % 2)
    np.savez(tmp_path / "words.npz", x=np.array([["a", "b"]] * 20), y=np.arange(20) % 2)
    (tmp_path / "folder.npz").mkdir()
    cases = {
        "text.npz": (
            "data.path",
            r"is not an npz file \(expected arrays saved with numpy.savez or savez_compressed\)$",
        ),
        "one.npy": ("data.path", "is not an npz file .*: it holds one array, as numpy.save writes"),
        "objects.npz": ("data.path", "arrays 'x' and 'y' cannot be read .*allow_pickle=False"),
        "words.npz": ("data.features", r"array 'x' is not numeric \(dtype <U1\)"),
        "folder.npz": ("data.path", "is a folder, not a data file"),
    }
    for name, (key, message) in cases.items():
        with pytest.raises(DataError, match=message) as err:
            load_dataset(DataSection(source="npz", path=tmp_path / name))
        assert err.value.key == key and str(tmp_path / name) in err.value.message, name
