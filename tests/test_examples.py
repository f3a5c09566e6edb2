"""Every script in examples/ runs, on small data (``EPOCHPILOT_EXAMPLE_TINY=1``, what ``--tiny`` does), and
leaves what it promises: a run directory with the report and the kept model in the framework's own format.
A script whose framework is not installed is skipped, naming it."""

from __future__ import annotations

import json
import os
import runpy
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::FutureWarning"),
    pytest.mark.filterwarnings("ignore::UserWarning"),
]


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """One torch thread, as the examples run on a shared machine (Keras' torch backend included)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def run_example(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *args: str) -> Path:
    """Run examples/<name> as ``__main__`` in ``tmp_path`` in tiny mode; return its run directory root."""
    script = ROOT / "examples" / name
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("EPOCHPILOT_EXAMPLE_TINY", "1")
    monkeypatch.setattr(sys, "argv", [str(script), *args])
    runpy.run_path(str(script), run_name="__main__")
    return tmp_path / "runs"


def summary(run: Path) -> dict:
    return json.loads((run / "summary.json").read_text())


def test_every_example_has_a_test() -> None:
    tested = {"pytorch_example.py", "keras_example.py", "lightning_example.py", "hf_example.py"}
    # tested in tests/finetune/test_finetune.py and tests/cli
    others = {"finetune_example.py", "my_model.py"}
    assert {p.name for p in (ROOT / "examples").glob("*.py")} == tested | others


@pytest.mark.fit_report  # the example's run directory holds fit's report.html
def test_pytorch_example_swaps_the_loop_for_fit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    runs = run_example("pytorch_example.py", tmp_path, monkeypatch)
    out = capsys.readouterr().out
    run = runs / "pytorch-example"
    assert "kept epoch" in out and (run / "report.html").is_file()
    assert summary(run)["epochs_run"] <= 3 and (run / "config.toml").is_file()

    run_example("pytorch_example.py", tmp_path, monkeypatch, "--classic")
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines] == ["epoch 1", "epoch 2", "epoch 3"]
    assert (tmp_path / "digits_cnn.pt").is_file()


def test_keras_example_writes_a_loadable_keras_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KERAS_BACKEND", os.environ.get("KERAS_BACKEND", "torch"))
    pytest.importorskip("keras")
    run = run_example("keras_example.py", tmp_path, monkeypatch) / "keras-example"
    out = capsys.readouterr().out
    assert "test accuracy of the kept model" in out
    assert out.startswith("Epoch 4: ") and "Saved to runs/keras-example/model.keras." in out
    assert (run / "model.keras").is_file() and (run / "report.html").is_file()
    assert summary(run)["saved_model"] == "model.keras"


@pytest.mark.slow
def test_lightning_example_tests_the_kept_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("lightning.pytorch")
    run = run_example("lightning_example.py", tmp_path, monkeypatch) / "lightning-example"
    assert "test accuracy of the kept model" in capsys.readouterr().out
    assert (run / "model.ckpt").is_file() and (run / "report.html").is_file()
    assert summary(run)["saved_model"] == "model.ckpt"


@pytest.mark.slow
def test_hf_example_writes_a_save_pretrained_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    pytest.importorskip("transformers")
    run = run_example("hf_example.py", tmp_path, monkeypatch) / "hf-example"
    out = capsys.readouterr().out
    assert "validation accuracy of the kept model" in out
    assert "Saved to runs/hf-example/model." in out
    assert (run / "model" / "config.json").is_file() and (run / "report.html").is_file()
    assert summary(run)["saved_model"] == "model"
