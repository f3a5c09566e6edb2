"""Output files written through a temporary file and a rename: a failure while writing (a full disk, a kill)
leaves the old file byte-identical and no temporary file behind. Covers the writers outside the trainer and
the CLI commands: ``schedule --plot``, ``LRFindResult.plot``, ``Preprocessor.to_json`` and the framework
adapters' history files."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")
import matplotlib.figure  # noqa: E402

from epochpilot.cli import main  # noqa: E402

OLD = b"the old file, whole"


def _leftovers(folder: Path, keep: set[str]) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name not in keep)


def _full_disk_savefig(monkeypatch: pytest.MonkeyPatch) -> None:
    """Figure.savefig writes half a PNG into its target, then the disk is full."""

    def savefig(self, fname, *args, **kwargs):
        if isinstance(fname, (str, os.PathLike)):
            Path(fname).write_bytes(b"\x89PNG half")
        else:
            fname.write(b"\x89PNG half")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", savefig)


def test_schedule_plot_keeps_the_old_file_on_a_full_disk(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "lr.png").write_bytes(OLD)
    _full_disk_savefig(monkeypatch)
    code = main(["schedule", "cosine", "--steps", "100", "--plot", "lr.png"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith(
        "epochpilot schedule: error: --plot 'lr.png': cannot write"
    ), err
    assert (tmp_path / "lr.png").read_bytes() == OLD
    assert _leftovers(tmp_path, {"lr.png"}) == []


def _lr_result():
    from epochpilot.train.lr_find import LRFindResult

    lrs = tuple(10 ** (-5 + i / 5) for i in range(20))
    losses = tuple(2.0 - 0.05 * i for i in range(20))
    return LRFindResult(lrs, losses, losses, 1e-3, "valley", False)


def test_lr_find_plot_keeps_the_old_file_when_writing_fails(tmp_path, monkeypatch):
    path = tmp_path / "lr.png"
    path.write_bytes(OLD)
    _full_disk_savefig(monkeypatch)
    with pytest.raises(OSError):
        _lr_result().plot(path)
    assert path.read_bytes() == OLD
    assert _leftovers(tmp_path, {"lr.png"}) == []


def test_lr_find_plot_writes_a_whole_png(tmp_path):
    path = _lr_result().plot(tmp_path / "sub" / "lr.png")
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and b"IEND" in data[-16:]
    assert _leftovers(path.parent, {"lr.png"}) == []


def _failing_replace(monkeypatch: pytest.MonkeyPatch) -> None:
    """The rename that would publish the new file fails (as on a full disk or a kill just before it)."""

    def replace(src, dst):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "replace", replace)


def test_preprocessor_to_json_is_atomic(tmp_path, monkeypatch):
    import pandas as pd

    from epochpilot.data.table import Preprocessor, Table

    pre = Preprocessor.fit(Table(pd.DataFrame({"a": [1.0, 2.0, 3.0, 4.0], "y": [0, 1, 0, 1]}), "y"))
    path = tmp_path / "preprocessor.json"
    pre.to_json(path)
    assert Preprocessor.from_json(path) == pre
    path.write_bytes(OLD)
    _failing_replace(monkeypatch)
    with pytest.raises(OSError):
        pre.to_json(path)
    assert path.read_bytes() == OLD, "to_json wrote over the old file in place"
    assert _leftovers(tmp_path, {"preprocessor.json"}) == []


def test_adapter_history_files_leave_no_temporary_file_on_failure(tmp_path, monkeypatch):
    from epochpilot.integrations._common import write_json_atomic

    path = tmp_path / "summary.json"
    write_json_atomic(path, {"best_epoch": 3, "best_value": float("nan")})
    assert path.read_text() == '{\n "best_epoch": 3,\n "best_value": null\n}\n'
    path.write_bytes(OLD)
    _failing_replace(monkeypatch)
    with pytest.raises(OSError):
        write_json_atomic(path, {"best_epoch": 4})
    assert path.read_bytes() == OLD
    assert _leftovers(tmp_path, {"summary.json"}) == [], "the temporary file was left behind"


def test_write_builtin_csv_is_atomic(tmp_path, monkeypatch):
    from epochpilot.data.table import read_csv, write_builtin_csv

    path = write_builtin_csv("wine", tmp_path / "wine.csv")
    assert len(read_csv(path, "target").frame) == 178
    path.write_bytes(OLD)
    _failing_replace(monkeypatch)
    with pytest.raises(OSError):
        write_builtin_csv("wine", path)
    assert path.read_bytes() == OLD
    assert _leftovers(tmp_path, {"wine.csv"}) == []
