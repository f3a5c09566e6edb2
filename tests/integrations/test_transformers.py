"""The Hugging Face adapter: stops where epochpilot's trainer stops on the same metrics, restores the best
weights, keeps its state in checkpoints (both restore paths), drives the lr through ``to_hf_scheduler`` and
leaves a run dir the report reads. A 2-layer BERT built from a config: nothing is downloaded."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
transformers = pytest.importorskip("transformers")

import torch  # noqa: E402
from transformers import (  # noqa: E402
    BertConfig,
    BertForSequenceClassification,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)
from transformers.trainer_callback import PrinterCallback  # noqa: E402

from epochpilot.core.schedules import linear_with_warmup  # noqa: E402
from epochpilot.core.stopping import EarlyStopping  # noqa: E402
from epochpilot.core.stopping.base import Reason  # noqa: E402
from epochpilot.integrations.transformers import (  # noqa: E402
    EpochPilot,
    history_name,
    to_hf_scheduler,
)
from epochpilot.report import write_report  # noqa: E402

from ._native import native_run  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::FutureWarning")]


class Tokens(torch.utils.data.Dataset):
    """Random tokens; label: the first token is below 55 (15% flipped, so it can overfit)."""

    def __init__(self, n: int, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        self.ids = torch.randint(10, 100, (n, 12), generator=g)
        self.labels = ((self.ids[:, 0] < 55) ^ (torch.rand(n, generator=g) < 0.15)).long()

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.ids[i], "labels": self.labels[i]}


def bert() -> BertForSequenceClassification:
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=100,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
        max_position_embeddings=16,
        num_labels=2,
    )
    return BertForSequenceClassification(config)


class Script(TrainerCallback):
    """Replaces eval_loss by a scripted sequence and keeps the weights at every evaluation."""

    def __init__(self, values: list[float] | None = None) -> None:
        self.values = values
        self.weights: dict[int, dict[str, torch.Tensor]] = {}

    def on_evaluate(self, args, state, control, metrics=None, model=None, **kw) -> None:
        n = len(self.weights)
        if self.values is not None:
            metrics["eval_loss"] = self.values[n]
        self.weights[n + 1] = {k: v.detach().clone() for k, v in model.state_dict().items()}


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def make_trainer(
    out: Path, callbacks: list, epochs: int, schedule: Any = None, **kw: Any
) -> Trainer:
    model = bert()
    optimizers: tuple[Any, Any] = (None, None)
    if schedule is not None:
        opt = torch.optim.AdamW(model.parameters(), lr=schedule(0) or 1e-3)
        optimizers = (opt, to_hf_scheduler(schedule, opt))
    options: dict[str, Any] = {
        "output_dir": str(out),
        "num_train_epochs": epochs,
        "per_device_train_batch_size": 16,
        "per_device_eval_batch_size": 32,
        "learning_rate": 3e-3,
        "eval_strategy": "epoch",
        "logging_strategy": "epoch",
        "save_strategy": "no",
        "report_to": "none",
        "use_cpu": True,
        "disable_tqdm": True,
        "seed": 0,
    }
    options.update(kw)
    trainer = Trainer(
        model=model,
        args=TrainingArguments(**options),
        train_dataset=Tokens(128, seed=1),
        eval_dataset=Tokens(64, seed=2),
        optimizers=optimizers,
        callbacks=callbacks,
    )
    trainer.remove_callback(PrinterCallback)
    return trainer


def test_stops_where_epochpilots_trainer_stops_and_restores_best(tmp_path: Path) -> None:
    def policy() -> EarlyStopping:
        return EarlyStopping("val_loss", mode="min", patience=2)

    native = native_run(policy())
    assert native.stop_reason == Reason.PATIENCE and native.best_epoch < native.stopped_epoch
    script = Script([row["val_loss"] for row in native.history] + [9.0] * 10)
    pilot = EpochPilot(policy(), run_dir=tmp_path / "run")
    trainer = make_trainer(tmp_path / "out", [script, pilot], epochs=len(script.values))
    trainer.train()

    assert pilot.stopped_epoch_ == native.stopped_epoch
    assert pilot.best_epoch_ == native.best_epoch
    assert pilot.core.stop_reason == native.stop_reason
    replay = policy().decide(pilot.history_)
    assert (replay.stop, replay.best_epoch) == (True, pilot.best_epoch_)
    assert [row["hf_epoch"] for row in pilot.history_] == [
        float(e) for e in range(1, native.stopped_epoch + 1)
    ]
    assert same(trainer.model.state_dict(), script.weights[pilot.best_epoch_])
    assert not same(trainer.model.state_dict(), script.weights[pilot.stopped_epoch_])

    trainer.evaluate()  # outside train(): not an epoch of the run
    assert len(pilot.history_) == native.stopped_epoch
    run = tmp_path / "run"
    rows = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    assert rows == pilot.history_
    assert {"epoch", "step", "train_loss", "val_loss", "lr", "grad_norm"} <= set(rows[0])
    assert rows[1]["step"] == 16
    summary = json.loads((run / "summary.json").read_text())
    assert (summary["monitor"], summary["stop_reason"]) == ("val_loss", "patience")
    assert summary["best_epoch"] == native.best_epoch
    assert summary["stop_message"] == native.stop_message  # eval_strategy="epoch": no unit note
    assert write_report(run).is_file()


def test_restores_best_when_the_policy_never_stops_and_reads_hf_names(tmp_path: Path) -> None:
    script = Script([1.0, 0.5, 0.7])
    pilot = EpochPilot(EarlyStopping("eval_loss", mode="min", patience=10), report=False)
    trainer = make_trainer(tmp_path, [script, pilot], epochs=3)
    trainer.train()
    assert pilot.stopped_epoch_ is None and pilot.best_epoch_ == 2
    assert same(trainer.model.state_dict(), script.weights[2])
    assert pilot.summary_["stop_reason"] == "max_epochs"
    assert pilot.summary_["monitor"] == "val_loss"
    assert [history_name(k) for k in ("eval_loss", "eval_f1", "loss", "learning_rate")] == [
        "val_loss",
        "val_f1",
        "train_loss",
        "lr",
    ]


def test_step_evaluations_count_as_the_policys_epochs(tmp_path: Path) -> None:
    script = Script([1.0, 0.9, 0.95, 0.8])
    pilot = EpochPilot(EarlyStopping("val_loss", mode="min", patience=0), run_dir=tmp_path / "r")
    options = {"eval_strategy": "steps", "eval_steps": 4, "logging_strategy": "steps"}
    make_trainer(tmp_path / "o", [script, pilot], 2, logging_steps=4, **options).train()
    assert [r["epoch"] for r in pilot.history_] == [1, 2, 3]
    assert [r["hf_epoch"] for r in pilot.history_] == [0.5, 1.0, 1.5]
    assert [r["step"] for r in pilot.history_] == [4, 8, 12]
    assert all("train_loss" in r for r in pilot.history_)
    assert pilot.stopped_epoch_ == 3
    assert "(epochs here are evaluations, one every 4 steps)" in pilot.summary_["stop_message"]
    assert pilot.stop_line_.startswith("Evaluation 3: early stopping: ")
    assert "(epochs here are evaluations, one every 4 steps)" in pilot.stop_line_


def test_to_hf_scheduler_sets_the_lr_after_every_update(tmp_path: Path) -> None:
    class Spy(TrainerCallback):
        seen: list[tuple[int, float]] = []

        def on_step_end(self, args, state, control, optimizer=None, **kw) -> None:
            self.seen.append((state.global_step, optimizer.param_groups[0]["lr"]))

    schedule = linear_with_warmup(3e-3, warmup_steps=4, total_steps=16)
    pilot = EpochPilot(EarlyStopping("val_loss", mode="min", patience=9), report=False)
    make_trainer(tmp_path, [pilot, Spy()], epochs=2, schedule=schedule).train()
    assert [s for s, _ in Spy.seen] == list(range(1, 17))
    assert [lr for _, lr in Spy.seen] == pytest.approx([schedule(s) for s in range(1, 17)])
    assert pilot.history_[0]["lr"] == pytest.approx(schedule(8))


class Crash(TrainerCallback):
    """Kills training right after the checkpoint of epoch ``at`` is written."""

    def __init__(self, at: int) -> None:
        self.at = at

    def on_save(self, args, state, control, **kw) -> None:
        if round(state.epoch) == self.at:
            raise KeyboardInterrupt


REFERENCE: dict[str, Any] = {}


@pytest.mark.parametrize("hf_restores", [True, False])
def test_resume_from_a_checkpoint_matches_an_uninterrupted_run(
    tmp_path: Path, hf_restores: bool
) -> None:
    schedule = linear_with_warmup(2e-3, warmup_steps=8, total_steps=96)

    def policy() -> EarlyStopping:
        return EarlyStopping("val_loss", mode="min", patience=2)

    options = {"restore_callback_states_from_checkpoint": hf_restores}
    if "whole" not in REFERENCE:  # the uninterrupted run, shared by both parametrisations
        REFERENCE["whole"] = EpochPilot(policy(), report=False)
        REFERENCE["trainer"] = make_trainer(tmp_path / "a", [REFERENCE["whole"]], 12, schedule)
        REFERENCE["trainer"].train()
    whole, reference = REFERENCE["whole"], REFERENCE["trainer"]
    assert whole.stopped_epoch_ is not None and whole.best_epoch_ > 1
    crash_at = whole.best_epoch_ + 1  # the best weights must come back from the checkpoint

    first = EpochPilot(policy(), run_dir=tmp_path / "run", report=False)
    trainer = make_trainer(
        tmp_path / "b", [first, Crash(crash_at)], 12, schedule, save_strategy="epoch", **options
    )
    with pytest.raises(KeyboardInterrupt):
        trainer.train()
    ckpt = tmp_path / "b" / f"checkpoint-{8 * crash_at}"
    saved = json.loads((ckpt / "trainer_state.json").read_text())["stateful_callbacks"]
    assert len(saved["EpochPilot"]["attributes"]["epochpilot_state"]["history"]) == crash_at
    assert (ckpt / "epochpilot_best.pt").is_file()

    resumed = EpochPilot(policy(), run_dir=tmp_path / "run")
    trainer = make_trainer(
        tmp_path / "b", [resumed], 12, schedule, save_strategy="epoch", **options
    )
    trainer.train(resume_from_checkpoint=str(ckpt))
    (live,) = [cb for cb in trainer.callback_handler.callbacks if isinstance(cb, EpochPilot)]
    assert live.core is resumed.core and (live is not resumed) == hf_restores
    assert resumed.stopped_epoch_ == whole.stopped_epoch_
    assert resumed.best_epoch_ == whole.best_epoch_
    assert [r["epoch"] for r in resumed.history_] == [r["epoch"] for r in whole.history_]
    for a, b in zip(resumed.history_, whole.history_):
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-4)
        assert (a["step"], a["lr"]) == (b["step"], pytest.approx(b["lr"]))
    for key, value in reference.model.state_dict().items():
        torch.testing.assert_close(trainer.model.state_dict()[key], value)
    lines = (tmp_path / "run" / "history.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [r["epoch"] for r in whole.history_]
    assert write_report(tmp_path / "run").is_file()


def test_bad_input_is_named() -> None:
    with pytest.raises(TypeError, match="policy must be an epochpilot stop policy"):
        EpochPilot("val_loss")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="pass EpochPilot\\(policy"):
        EpochPilot(restore_key="EpochPilot(nothing)")
    pilot = EpochPilot(EarlyStopping("val_loss", mode="min"))
    state = pilot.state()
    assert json.loads(json.dumps(state)) == state
    clone = EpochPilot.from_state(state)
    assert clone.core is pilot.core
