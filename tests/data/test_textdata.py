"""The offline fortune data set: parsing, labels by category, stratified disjoint splits, clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from epochpilot.data.text import (
    FORTUNES_DIR,
    INSTALL_HINT,
    TextSet,
    fortune_categories,
    load_fortunes,
)


def write(root, name, entries):
    (root / name).write_text("\n%\n".join(entries) + "\n%\n")


def test_parses_percent_separated_entries_and_filters_by_length(tmp_path):
    write(tmp_path, "alpha", ["first   entry\n\twrapped line", "x", "another entry here"])
    write(tmp_path, "beta", ["b" * 500, "beta entry number one"])
    data = load_fortunes(["alpha", "beta"], root=tmp_path, min_chars=5, max_chars=100)
    assert data.texts == ["first entry wrapped line", "another entry here", "beta entry number one"]
    assert data.labels.tolist() == [0, 0, 1] and data.classes == ["alpha", "beta"]
    assert fortune_categories(tmp_path) == {"alpha": 3, "beta": 2}


def test_missing_files_name_the_install_command(tmp_path):
    with pytest.raises(FileNotFoundError, match="apt-get install -y fortunes"):
        load_fortunes(["computers"], root=tmp_path / "absent")
    write(tmp_path, "alpha", ["some entry text"])
    with pytest.raises(FileNotFoundError, match=r"'nope' not found .*have: alpha"):
        load_fortunes(["nope"], root=tmp_path)


def test_split_is_disjoint_stratified_and_seeded():
    labels = np.array([0] * 60 + [1] * 30 + [2] * 10)
    data = TextSet([f"t{i}" for i in range(100)], labels, ["a", "b", "c"])
    train, val = data.split(50, 20, seed=1)
    assert not set(train.texts) & set(val.texts)
    assert np.bincount(train.labels, minlength=3).tolist() == pytest.approx([30, 15, 5], abs=1)
    assert np.bincount(val.labels, minlength=3).tolist() == pytest.approx([12, 6, 2], abs=1)
    assert data.split(50, seed=1)[0].texts == train.texts
    assert data.split(50, seed=2)[0].texts != train.texts
    with pytest.raises(ValueError, match="only 100 available"):
        data.split(80, 30)


@pytest.mark.skipif(not FORTUNES_DIR.is_dir(), reason=f"fortune data set absent: {INSTALL_HINT}")
def test_the_installed_debian_databases_load():
    data = load_fortunes(["computers", "politics", "science", "work"])
    counts = np.bincount(data.labels)
    assert len(counts) == 4 and counts.min() > 400
