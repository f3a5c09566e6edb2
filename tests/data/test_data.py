"""data: built-in sets, CSV loading errors, and the JSON preprocessor that prediction relies on."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from epochpilot.data.table import (
    Preprocessor,
    infer_task,
    load_builtin,
    read_csv,
    write_builtin_csv,
)
from epochpilot.errors import DataError


@pytest.mark.parametrize(
    "name,rows,classes", [("digits", 1797, 10), ("wine", 178, 3), ("breast_cancer", 569, 2)]
)
def test_builtins_load(name, rows, classes):
    table = load_builtin(name)
    assert len(table.frame) == rows
    assert table.frame["target"].nunique() == classes


def test_diabetes_is_a_regression_target():
    table = load_builtin("diabetes")
    assert table.frame.shape == (442, 11)
    assert infer_task(table.frame["target"]) == "regression"


def test_mnist1d_is_generated_locally():
    table = load_builtin("mnist1d", n_samples=300)
    assert table.frame.shape == (300, 41)
    assert table.frame["target"].nunique() == 10


def test_unknown_builtin():
    with pytest.raises(DataError, match="digits, breast_cancer, wine, mnist1d, diabetes"):
        load_builtin("mnist")


def write(tmp_path, text, name="d.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "text,target,match",
    [
        ("", "y", "is empty"),
        ("a,b,y\n", "y", "no data rows"),
        ("a,b,label\n1,2,0\n", "lable", "did you mean 'label'"),
        ("y\n1\n2\n", "y", "only the target column"),
        ('a,b,y\n1,"2,0\n', "y", "cannot be parsed"),
    ],
)
def test_csv_errors(tmp_path, text, target, match):
    with pytest.raises(DataError, match=match):
        read_csv(write(tmp_path, text), target)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        read_csv(tmp_path / "nope.csv", "y")


def test_feature_problems_name_the_columns(tmp_path):
    table = read_csv(write(tmp_path, "a,b,c,y\n1,x,3,0\n2,z,4,1\n"), "y")
    with pytest.raises(DataError, match=r"non-numeric feature columns \['b'\]"):
        Preprocessor.fit(table)
    table = read_csv(write(tmp_path, "a,b,y\n1,,0\n2,5,1\n3,7,1\n"), "y")
    with pytest.raises(DataError, match=r"missing values in columns \['b'\].*--impute"):
        Preprocessor.fit(table)
    pre = Preprocessor.fit(table, impute="median")
    X, _ = pre.transform(table.frame)
    assert np.isfinite(X).all()
    assert pre.fill[1] == 6.0


def test_single_class(tmp_path):
    table = read_csv(write(tmp_path, "a,y\n1,cat\n2,cat\n"), "y")
    with pytest.raises(DataError, match="single class"):
        Preprocessor.fit(table)


def test_round_trip_and_column_checks(tmp_path):
    path = write_builtin_csv("wine", tmp_path / "wine.csv")
    table = read_csv(path, "target")
    pre = Preprocessor.fit(table)
    pre.to_json(tmp_path / "pre.json")
    again = Preprocessor.from_json(tmp_path / "pre.json")
    assert again == pre
    X1, y1 = pre.transform(table.frame)
    X2, y2 = again.transform(table.frame)
    np.testing.assert_array_equal(X1, X2)
    np.testing.assert_array_equal(y1, y2)
    np.testing.assert_allclose(X1.mean(axis=0), 0, atol=1e-5)
    with pytest.raises(DataError, match=r"missing feature columns \['x0'\]"):
        pre.transform(table.frame.drop(columns=["x0"]))
    with pytest.raises(DataError, match=r"unexpected columns \['extra'\]"):
        pre.transform(table.frame.assign(extra=1.0))


def test_text_labels_are_mapped_and_decoded():
    frame = pd.DataFrame({"a": [0.0, 1.0, 2.0, 3.0], "y": ["no", "yes", "no", "yes"]})
    from epochpilot.data.table import Table

    pre = Preprocessor.fit(Table(frame, "y"))
    assert pre.task == "classification" and pre.classes == ["no", "yes"]
    _, y = pre.transform(frame)
    assert pre.decode(y) == ["no", "yes", "no", "yes"]
    with pytest.raises(DataError, match="not seen in training"):
        pre.encode(pd.Series(["maybe"]))


def test_regression_targets_are_standardised_and_decoded():
    frame = pd.DataFrame({"a": [0.0, 1.0, 2.0, 3.0], "y": [100.0, 110.0, 120.0, 130.0]})
    from epochpilot.data.table import Table

    pre = Preprocessor.fit(Table(frame, "y"), task="regression")
    _, y = pre.transform(frame)
    np.testing.assert_allclose(y.mean(), 0.0, atol=1e-6)
    np.testing.assert_allclose(y.std(), 1.0, atol=1e-6)
    np.testing.assert_allclose(pre.decode_values(y), frame["y"], rtol=1e-6)


def test_infer_task():
    assert infer_task(pd.Series([0, 1, 2, 1])) == "classification"
    assert infer_task(pd.Series([0.5, 1.25, 2.0])) == "regression"
    assert infer_task(pd.Series(range(100))) == "regression"
