"""The Hugging Face adapter's policy default, budget, verbose line and kept model: ``EpochPilot(run_dir=...)``
with no policy stops as ``epochpilot.fit``'s default would, prints one line, and writes a ``save_pretrained``
folder (with the tokenizer) that ``from_pretrained`` loads back to the kept model."""

from __future__ import annotations

import inspect
import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
transformers = pytest.importorskip("transformers")

import torch  # noqa: E402
from transformers import AutoTokenizer, BertForSequenceClassification, BertTokenizerFast  # noqa: E402

from epochpilot.core.stopping import AutoStopper, default_stopper  # noqa: E402
from epochpilot.integrations.transformers import EpochPilot  # noqa: E402

from .test_transformers import Script, Tokens, make_trainer, same  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::FutureWarning")]
CURVE = [1.0, 0.8, 0.7] + [0.75 + 0.01 * i for i in range(20)]  # best at evaluation 3, then worse


def tokenizer(folder: Path) -> BertTokenizerFast:
    """A word-level BERT tokenizer over the test vocabulary (built here: nothing is downloaded)."""
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(95)]
    if "vocab" in inspect.signature(BertTokenizerFast.__init__).parameters:  # transformers >= 5
        return BertTokenizerFast(vocab={w: i for i, w in enumerate(words)})
    (folder / "vocab.txt").write_text("\n".join(words) + "\n")
    return BertTokenizerFast(vocab_file=str(folder / "vocab.txt"))


def test_no_policy_is_fits_default_and_the_kept_model_is_saved_pretrained(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    script = Script(CURVE)
    pilot = EpochPilot(run_dir=tmp_path / "run")
    trainer = make_trainer(tmp_path / "out", [script, pilot], epochs=len(CURVE))
    trainer.processing_class = tokenizer(tmp_path)
    trainer.callback_handler.processing_class = trainer.processing_class
    trainer.train()
    assert repr(pilot.policy) == repr(default_stopper("val_loss", "min"))
    assert (pilot.stopped_epoch_, pilot.best_epoch_) == (13, 3)
    assert same(trainer.model.state_dict(), script.weights[3])

    folder = tmp_path / "run" / "model"
    assert pilot.model_path_ == folder and (folder / "config.json").is_file()
    loaded = BertForSequenceClassification.from_pretrained(folder)
    assert same(loaded.state_dict(), trainer.model.state_dict())
    batch = Tokens(8, seed=5).ids
    loaded.eval(), trainer.model.eval()
    with torch.no_grad():
        assert torch.equal(
            loaded(input_ids=batch).logits,
            trainer.model(input_ids=batch.to(trainer.model.device)).logits,
        )
    assert AutoTokenizer.from_pretrained(folder)("w3 w7")["input_ids"] == [2, 8, 12, 3]
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["saved_model"] == "model"

    out = [line for line in capsys.readouterr().out.splitlines() if "early stopping" in line]
    assert out == [pilot.stop_line_]
    assert pilot.stop_line_.startswith("Epoch 13: early stopping: ")
    assert "Kept epoch 3 (val_loss 0.7): its weights are restored." in pilot.stop_line_
    assert pilot.stop_line_.endswith(f"Saved to {folder}.")


def test_a_second_run_replaces_the_saved_folder_and_verbose_false_is_quiet(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    (run / "model").mkdir(parents=True)
    (run / "model" / "stale.bin").write_text("old")
    pilot = EpochPilot("early", run_dir=run, verbose=False, report=False)
    make_trainer(tmp_path / "out", [Script(CURVE), pilot], epochs=len(CURVE)).train()
    assert pilot.stopped_epoch_ == 8 and not (run / "model" / "stale.bin").exists()
    assert (run / "model" / "config.json").is_file()
    assert "early stopping" not in capsys.readouterr().out
    assert sorted(p.name for p in run.iterdir() if p.name.startswith(".")) == []


def test_save_model_false_and_steps_evaluations(tmp_path: Path) -> None:
    pilot = EpochPilot(run_dir=tmp_path / "r", save_model=False, verbose=False, report=False)
    options = {"eval_strategy": "steps", "eval_steps": 4, "logging_strategy": "steps"}
    make_trainer(
        tmp_path / "o", [Script([1.0, 0.9, 0.95, 0.8]), pilot], 2, logging_steps=4, **options
    ).train()
    assert not (tmp_path / "r" / "model").exists() and pilot.model_path_ is None
    assert pilot.stop_line_.startswith(
        "Evaluation 4: training ran to its end; the stop policy did not fire."
    )
    assert "Kept evaluation 4 (val_loss 0.8), the last one." in pilot.stop_line_


@pytest.mark.parametrize(
    ("options", "budget"),
    [
        ({}, 3),
        (
            {
                "eval_strategy": "steps",
                "eval_steps": 4,
                "logging_strategy": "steps",
                "logging_steps": 4,
            },
            6,
        ),
        ({"max_steps": 10, "eval_strategy": "steps", "eval_steps": 5}, 2),
    ],
)
def test_forecast_reads_its_budget_from_the_trainer(
    tmp_path: Path, options: dict, budget: int
) -> None:
    pilot = EpochPilot("forecast", verbose=False, report=False)
    assert isinstance(pilot.policy, AutoStopper)
    make_trainer(tmp_path, [pilot], epochs=3, **options).train()
    assert pilot.policy.budget == budget


def test_a_model_without_save_pretrained_warns(tmp_path: Path) -> None:
    pilot = EpochPilot(run_dir=tmp_path)
    with pytest.warns(UserWarning, match="has no save_pretrained.*trainer.save_model"):
        assert pilot._save(torch.nn.Linear(2, 2), None) is None
