"""Tests for epochpilot.audit: data sets built with known duplicates, leakage and conflicts; exact counts."""

from __future__ import annotations

import argparse
import json
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from epochpilot.cli import audit as cli_audit
from epochpilot.data.audit.near import minhash_signatures, shingles
from epochpilot.data.audit.report import AuditReport, audit
from epochpilot.errors import DataError


def _base(n: int = 200, d: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)), rng.integers(0, 3, size=n)


def test_repeated_rows_collapse_to_effective_samples():
    X = np.repeat(np.arange(200.0).reshape(100, 2), 10, axis=0)  # 100 rows, each ten times
    report = audit((X, np.arange(1000) % 2 * 0))
    assert report.n_rows == 1000
    assert report.exact_duplicates == 900
    assert report.duplicate_groups == 100
    assert report.max_repeats == 10
    assert report.near_duplicates == 0
    assert report.effective_samples == 100
    assert report.duplicate_ratio == pytest.approx(0.9)


def test_near_duplicate_numeric_rows_are_counted_apart_from_exact():
    X, y = _base()
    tiny = X[:7] + 1e-9  # far below 1% of a standard deviation
    far = X[7:10] + 5.0  # not duplicates of anything
    data = np.vstack([X, X[:3], tiny, far])
    report = audit((data, np.concatenate([y, y[:3], y[:7], y[7:10]])))
    assert report.exact_duplicates == 3
    assert report.near_duplicates == 7
    assert report.effective_samples == 203


def test_leakage_exact_and_near_with_examples_pointing_at_train_rows():
    X, y = _base()
    rng = np.random.default_rng(1)
    val = np.vstack([X[[5, 6, 7, 8]], X[[20, 21]] + 1e-9, rng.normal(size=(14, 4)) + 10])
    test = np.vstack([X[[50]], rng.normal(size=(9, 4)) - 10])
    report = audit((X, y), (val, np.zeros(20)), (test, np.zeros(10)))
    v, t = report.overlap("val"), report.overlap("test")
    assert (v.n_rows, v.exact, v.near) == (20, 4, 2)
    assert v.fraction == pytest.approx(0.3)
    assert (t.n_rows, t.exact, t.near) == (10, 1, 0)
    assert [e["train_row"] for e in v.examples] == [5, 6, 7, 8, 20]
    assert [e["kind"] for e in v.examples] == ["exact"] * 4 + ["near"]
    assert t.examples[0]["train_row"] == 50 and t.examples[0]["row"] == 0
    assert any("val rows" in w for w in report.warnings)


def test_no_leakage_between_disjoint_splits():
    X, y = _base(300)
    report = audit((X[:200], y[:200]), (X[200:], y[200:]))
    assert report.overlap("val").exact == 0 and report.overlap("val").near == 0
    assert report.overlap("test") is None
    assert report.warnings == ()


def test_label_conflicts_counted_per_input_and_per_row():
    X, y = _base(100)
    y = np.zeros(100, dtype=int)
    X2 = np.vstack([X, X[:4], X[:4], X[10:12]])  # rows 0-3 three times, 10-11 twice
    y2 = np.concatenate([y, np.ones(4, int), np.full(4, 2), np.zeros(2, int)])  # 10-11 agree
    report = audit((X2, y2))
    assert report.label_conflicts == 4
    assert report.label_conflict_rows == 12
    assert report.exact_duplicates == 10
    first = report.conflict_examples[0]
    assert first["rows"] == [0, 100, 104] and first["labels"] == ["0", "1", "2"]


def test_class_balance_counts_ratio_and_entropy():
    y = np.array([0] * 60 + [1] * 30 + [2] * 10)
    X = np.arange(300.0).reshape(100, 3)
    report = audit((X, y))
    assert report.task == "classification"
    assert report.class_counts == {"0": 60, "1": 30, "2": 10}
    assert report.imbalance_ratio == pytest.approx(6.0)
    p = np.array([0.6, 0.3, 0.1])
    assert report.class_entropy == pytest.approx(float(-(p * np.log2(p)).sum()))
    assert report.n_classes == 3


def test_single_class_target_is_a_warning_not_an_error():
    report = audit((np.arange(20.0).reshape(10, 2), np.ones(10)))
    assert report.class_counts == {"1.0": 10}
    assert any("single class" in w for w in report.warnings)


def test_regression_target_has_no_class_balance():
    X, _ = _base(50)
    report = audit((X, np.linspace(0, 1, 50) + 0.001))
    assert report.task == "regression"
    assert report.class_counts == {} and report.imbalance_ratio is None


def test_constant_and_missing_columns():
    frame = pd.DataFrame(
        {
            "a": np.arange(10.0),
            "const": 3.0,
            "gappy": [1.0, np.nan, 2.0, np.nan, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0],
            "y": [0, 1] * 5,
        }
    )
    report = audit(frame, target="y")
    assert report.constant_columns == ("const",)
    assert report.missing == {"gappy": 0.2}
    assert report.n_features == 3


TEXTS = [
    "the quick brown fox jumps over the lazy dog near the river bank",
    "The quick brown fox jumps over the lazy dog near the river bank!",  # near-dup of 0
    "a completely different sentence about training neural networks",
    "stock prices fell sharply on monday after the announcement",
    "stock prices fell sharply on monday after the announcement.",  # near-dup of 3
    "weather will be sunny tomorrow with light winds from the west",
    "the quick brown fox jumps over the lazy dog near the river bank",  # exact dup of 0
]


def test_text_near_duplicates_known_pairs():
    frame = pd.DataFrame({"text": TEXTS, "label": [0, 0, 1, 2, 2, 1, 0]})
    report = audit(frame, target="label", text_column="text")
    assert report.exact_duplicates == 1
    assert report.near_duplicates == 2
    assert report.effective_samples == 4
    lengths = report.text_lengths
    assert lengths["words"]["max"] == 13 and lengths["words"]["min"] == 8


def test_text_leakage_is_found_near_and_exact():
    val = [
        TEXTS[2],
        "Weather will be sunny tomorrow, with light winds from the west",
        "brand new text",
    ]
    report = audit(TEXTS, val, text_column="text")
    v = report.overlap("val")
    assert (v.exact, v.near) == (1, 1)
    assert [e["train_row"] for e in v.examples] == [2, 5]


def test_word_shingles_and_threshold_control_what_counts_as_near():
    base = "one two three four five six seven eight nine ten eleven twelve"
    texts = [base, base.replace("six", "SIXTY"), "alpha beta gamma delta epsilon zeta eta theta"]
    # word 3-grams: a changed middle word touches 3 of 10 grams, Jaccard 7/13 = 0.54
    assert audit(texts, shingle="word").near_duplicates == 0
    assert audit(texts, shingle="word", near_threshold=0.3).near_duplicates == 1
    with pytest.raises(ValueError, match="near_threshold"):
        audit(texts, near_threshold=0.0)
    with pytest.raises(ValueError, match="num_perm"):
        audit(texts, num_perm=4)


def test_minhash_agreement_tracks_true_jaccard():
    a, b = (
        "alpha beta gamma delta epsilon zeta eta theta",
        "alpha beta gamma delta epsilon zeta eta iota",
    )
    sa, sb = set(shingles(a)), set(shingles(b))
    true = len(sa & sb) / len(sa | sb)
    sig = minhash_signatures(np.array([a, b], dtype=object), "char", 256)
    assert abs((sig[0] == sig[1]).mean() - true) < 0.1
    assert shingles("Hi  There", "word") == [b"hi there"]


def test_inputs_of_every_kind_give_the_same_counts(tmp_path):
    torch = pytest.importorskip("torch")
    X = np.vstack([np.arange(30.0).reshape(10, 3)] * 2).astype(np.float32)
    y = (np.arange(20) >= 10).astype(np.int64)  # each input seen with labels 0 and 1
    frame = pd.DataFrame(X, columns=["a", "b", "c"]).assign(y=y)
    path = tmp_path / "train.csv"
    frame.to_csv(path, index=False)

    class Pairs(torch.utils.data.Dataset):
        def __len__(self):
            return 20

        def __getitem__(self, i):
            return torch.from_numpy(X[i]), torch.tensor(y[i])

    tensors = torch.utils.data.TensorDataset(torch.from_numpy(X), torch.from_numpy(y))
    reports = [
        audit((X, y)),
        audit(frame, target="y"),
        audit(str(path), target="y"),
        audit(tensors),
        audit(Pairs()),
    ]
    for report in reports:
        assert (report.exact_duplicates, report.effective_samples, report.label_conflicts) == (
            10,
            10,
            10,
        )


@pytest.mark.parametrize(
    "args, message",
    [
        ((np.zeros((0, 3)),), "empty"),
        (((np.zeros((5, 2)), np.zeros(4)),), "X has 5 rows but y has 4"),
        ((pd.DataFrame({"a": [1.0, 2.0], "b": ["x", "y"]}),), "text_column='b'"),
        ((pd.DataFrame({"a": [1.0, 2.0]}),), "target column 'y' not found"),
        ((object(),), "cannot audit a object"),
    ],
)
def test_bad_input_raises_one_line_data_error(args, message):
    kwargs = {"target": "y"} if message.startswith("target") else {}
    with pytest.raises(DataError, match=message) as info:
        audit(*args, **kwargs)
    assert "\n" not in str(info.value)


def test_unparseable_csv_names_the_line(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("a,b\n1,2\n3,4\n5,6,7\n")
    with pytest.raises(DataError, match="line 4: expected 2 fields, saw 3"):
        audit(str(path))
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(DataError, match="is empty"):
        audit(str(tmp_path / "empty.csv"))


def test_to_dict_is_json_safe_and_render_shows_the_numbers():
    X, y = _base(50)
    report = audit((np.vstack([X, X[:5]]), np.concatenate([y, y[:5]])), (X[:2], y[:2]))
    data = json.loads(json.dumps(report.to_dict()))
    assert data["exact_duplicates"] == 5 and data["overlaps"][0]["fraction"] == pytest.approx(1.0)
    assert data["duplicate_ratio"] == pytest.approx(5 / 55, abs=1e-6)
    text = str(report)
    assert "effective samples" in text and "50" in text and "leakage train/val" in text
    assert isinstance(report, AuditReport)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3)), min_size=1, max_size=60))
def test_exact_duplicates_match_numpy_unique(rows):
    X = np.array(rows, dtype=float)
    report = audit(X)
    unique = len(np.unique(X, axis=0))
    assert report.exact_duplicates == len(X) - unique
    assert report.effective_samples == unique  # integer grid: no near-duplicates beyond exact ones
    assert math.isclose(report.duplicate_ratio, 1 - unique / len(X))


def _cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    cli_audit.add_parser(sub)
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_prints_table_and_writes_json(tmp_path, capsys):
    X, y = _base(40)
    train = pd.DataFrame(np.vstack([X, X[:3]]), columns=list("abcd")).assign(y=np.r_[y, y[:3]])
    train.to_csv(tmp_path / "train.csv", index=False)
    train.iloc[:2].to_csv(tmp_path / "val.csv", index=False)
    out = tmp_path / "audit.json"
    code = _cli(
        [
            "audit",
            str(tmp_path / "train.csv"),
            "--val",
            str(tmp_path / "val.csv"),
            "--target",
            "y",
            "--json",
            str(out),
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "exact duplicates" in printed and "leakage train/val" in printed
    data = json.loads(out.read_text())
    assert data["exact_duplicates"] == 3 and data["overlaps"][0]["exact"] == 2


def test_cli_bad_input_is_one_line_and_exit_code_2(tmp_path, capsys):
    path = tmp_path / "bad.csv"
    path.write_text("a,b\n1,2\n3,4,5\n")
    assert _cli(["audit", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"epochpilot audit: error: {path} ") and "line 3" in err
    assert err.count("\n") == 1
    assert _cli(["audit", str(tmp_path / "missing.csv")]) == 2


@pytest.mark.parametrize(
    "files, args, message",
    [
        ({"t.csv": "a,b,label\n"}, ["t.csv"], "t.csv: the data is empty (0 rows)"),
        ({"t.csv": "a,label\n1,0\n2,1\n"}, ["t.csv", "--target", "y"], "t.csv: target column 'y'"),
        ({"t.csv": "a,label\n1,0\n"}, ["t.csv", "--val", "v.csv"], "--val v.csv: no such file"),
        (
            {"t.csv": "a,b,label\n1,2,0\n", "v.csv": "a,label\n1,0\n"},
            ["t.csv", "--val", "v.csv"],
            "--val v.csv: missing feature columns ['b'] that t.csv has",
        ),
    ],
)
def test_cli_errors_name_the_command_the_flag_and_the_file(
    tmp_path, monkeypatch, capsys, files, args, message
):
    """Audit errors are the CLI's one line "epochpilot audit: error: ..." naming the file (and --val/--test),
    not the split's Python name ("train: ...")."""
    monkeypatch.chdir(tmp_path)
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    target = [] if "--target" in args else ["--target", "label"]
    assert _cli(["audit", *args, *target]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"epochpilot audit: error: {message}"), err
    assert err.count("\n") == 1 and "train" not in err
