"""What a checkpoint costs the training thread: on the CPU its files are serialized once, on the training
thread (the writer thread only does file I/O), and the history in ``meta.json`` is encoded one row at a time,
never again as a whole at every save."""

from __future__ import annotations

import json
import threading

import torch
from hypothesis import given
from hypothesis import strategies as st

from epochpilot.train import fit, load_checkpoint
from epochpilot.train import persist as persist_mod
from epochpilot.train.serial import JSONList, json_bytes, json_text

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
)
_rows = st.lists(st.dictionaries(st.text(max_size=6), _scalars, max_size=5), max_size=6)


def _fit(blobs, make_mlp, tmp_path, epochs: int) -> None:
    """A small run with a checkpoint every epoch under ``tmp_path / "run"``."""
    X, y = blobs
    fit(
        make_mlp(),
        (X[:64], y[:64]),
        (X[64:], y[64:]),
        max_epochs=epochs,
        seed=0,
        stopper=False,
        run_dir=tmp_path / "run",
        report=False,
    )


@given(
    plain=st.dictionaries(st.text(max_size=6), _scalars, max_size=5),
    lists=st.dictionaries(st.text(max_size=6), _rows, max_size=3),
)
def test_spliced_lists_read_back_as_if_encoded_whole(plain, lists):
    data = dict(plain)
    for key, rows in lists.items():
        data[key] = JSONList.of(rows, [json_text(r) for r in rows])
    expected = json.loads(
        json_text({k: list(v) if isinstance(v, list) else v for k, v in data.items()})
    )
    assert json.loads(json_bytes(data)) == expected


def test_cpu_checkpoints_are_serialized_on_the_training_thread(
    blobs, make_mlp, tmp_path, monkeypatch
):
    where: list[str] = []
    real = torch.save

    def spy(obj, f, *args, **kwargs):
        where.append(threading.current_thread().name)
        return real(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", spy)
    _fit(blobs, make_mlp, tmp_path, epochs=4)
    main = threading.main_thread().name
    assert where and all(name == main for name in where), where
    ckpt = load_checkpoint(tmp_path / "run" / "checkpoints" / "epoch-0004")
    assert set(ckpt["state"]) >= {"rng", "acc", "callbacks", "data"}


def test_history_rows_are_encoded_once_however_many_saves(blobs, make_mlp, tmp_path, monkeypatch):
    encoded: list[object] = []
    real = persist_mod.json_text

    def counting(obj):
        encoded.append(obj)
        return real(obj)

    monkeypatch.setattr(persist_mod, "json_text", counting)
    _fit(blobs, make_mlp, tmp_path, epochs=6)
    # one per row, though every epoch's checkpoint holds the history so far
    assert len(encoded) == 6
    meta = load_checkpoint(tmp_path / "run" / "checkpoints" / "epoch-0006")["meta"]
    lines = (tmp_path / "run" / "history.jsonl").read_text().splitlines()
    assert meta["history"] == [json.loads(line) for line in lines]
