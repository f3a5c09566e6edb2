"""The Lightning adapter: stops where epochpilot's trainer stops on the same metrics, restores the best weights,
sets the lr per optimizer step, keeps its state in Lightning checkpoints across ``fit(ckpt_path=...)``,
honours ``extend_by`` and leaves a run dir the report reads."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from collections.abc import Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

pl = pytest.importorskip("lightning.pytorch")

import torch  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

from epochpilot.core.schedules import cosine_with_warmup  # noqa: E402
from epochpilot.core.stopping import EarlyStopping  # noqa: E402
from epochpilot.core.stopping.base import Decision, Policy, Reason  # noqa: E402
from epochpilot.integrations.lightning import EpochPilot, history_metrics  # noqa: E402
from epochpilot.report import write_report  # noqa: E402

from ._native import native_run  # noqa: E402

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::UserWarning"),
]
ROOT = Path(__file__).resolve().parents[2]


def loaders(val: bool = True) -> tuple[DataLoader, DataLoader | None]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(160, 6, generator=g)
    y = ((x[:, 0] + torch.randn(160, generator=g)) > 0).long()
    train = DataLoader(TensorDataset(x[:120], y[:120]), batch_size=16)
    return train, DataLoader(TensorDataset(x[120:], y[120:]), batch_size=40) if val else None


class Net(pl.LightningModule):
    """A small classifier; ``script`` replaces the logged val_loss by a given sequence."""

    def __init__(self, script: list[float] | None = None, lr: float = 0.01) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.nn.Sequential(
            torch.nn.Linear(6, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2)
        )
        self.script, self.lr = script, lr

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        logits = self.net(x)
        self.log("train_acc", (logits.argmax(1) == y).float().mean(), on_epoch=True, on_step=False)
        return torch.nn.functional.cross_entropy(logits, y)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        loss = torch.nn.functional.cross_entropy(self.net(x), y)
        if self.script is not None:
            loss = torch.tensor(self.script[self.current_epoch])
        self.log("val_loss", loss)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.lr)


class Weights(pl.Callback):
    """Keeps a copy of the weights at the end of every training epoch (1-based)."""

    def __init__(self) -> None:
        self.at: dict[int, dict[str, torch.Tensor]] = {}

    def on_train_epoch_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self.at[trainer.current_epoch + 1] = {
            k: v.detach().clone() for k, v in module.state_dict().items()
        }


def same(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def trainer(callbacks: list, max_epochs: int, **kw: Any) -> pl.Trainer:
    options: dict[str, Any] = {
        "accelerator": "cpu",
        "devices": 1,
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "num_sanity_val_steps": 1,
    }
    options.update(kw)
    return pl.Trainer(max_epochs=max_epochs, callbacks=callbacks, **options)


def test_stops_where_epochpilots_trainer_stops_and_restores_best(tmp_path: Path) -> None:
    def policy() -> EarlyStopping:
        return EarlyStopping("val_loss", mode="min", patience=2)

    native = native_run(policy())
    assert native.stop_reason == Reason.PATIENCE and native.best_epoch < native.stopped_epoch
    curve = [row["val_loss"] for row in native.history] + [9.0] * 10
    weights = Weights()
    pilot = EpochPilot(policy(), run_dir=tmp_path / "run")
    module = Net(curve)
    trainer([pilot, weights], max_epochs=len(curve)).fit(module, *loaders())

    assert pilot.stopped_epoch_ == native.stopped_epoch
    assert pilot.best_epoch_ == native.best_epoch
    assert pilot.core.stop_reason == native.stop_reason
    replay = policy().decide(pilot.history_)
    assert (replay.stop, replay.best_epoch) == (True, pilot.best_epoch_)
    assert [row["epoch"] for row in pilot.history_] == list(range(1, native.stopped_epoch + 1))
    assert same(module.state_dict(), weights.at[pilot.best_epoch_])
    assert not same(module.state_dict(), weights.at[pilot.stopped_epoch_])

    run = tmp_path / "run"
    rows = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    assert rows == pilot.history_
    assert {"epoch", "step", "train_loss", "train_acc", "val_loss", "lr"} <= set(rows[0])
    assert rows[0]["step"] == 8 and rows[1]["step"] == 16
    summary = json.loads((run / "summary.json").read_text())
    assert (summary["monitor"], summary["stop_reason"]) == ("val_loss", "patience")
    assert summary["best_epoch"] == native.best_epoch
    assert summary["stop_message"] == native.stop_message  # one validation per epoch: no unit note
    assert write_report(run).is_file()


def test_train_loss_is_the_epoch_mean_of_training_step_losses() -> None:
    class Spy(pl.Callback):
        losses: list[float] = []

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
            self.losses.append(float(outputs["loss"]))

    pilot = EpochPilot(EarlyStopping("val_loss", mode="min", patience=9), report=False)
    trainer([pilot, Spy()], max_epochs=1).fit(Net(), *loaders())
    assert pilot.history_[0]["train_loss"] == pytest.approx(sum(Spy.losses) / len(Spy.losses))


def test_restores_best_when_the_policy_never_stops() -> None:
    weights = Weights()
    pilot = EpochPilot(EarlyStopping("val_loss", mode="min", patience=10))
    module = Net([1.0, 0.5, 0.7])
    trainer([pilot, weights], max_epochs=3).fit(module, *loaders())
    assert pilot.stopped_epoch_ is None and pilot.best_epoch_ == 2
    assert same(module.state_dict(), weights.at[2])
    assert pilot.summary_["stop_reason"] == "max_epochs"


def test_schedule_sets_the_lr_before_every_optimizer_step() -> None:
    class Spy(pl.Callback):
        seen: list[tuple[int, float]] = []

        def on_before_optimizer_step(self, trainer, module, optimizer) -> None:
            self.seen.append((trainer.global_step, optimizer.param_groups[0]["lr"]))

    schedule = cosine_with_warmup(0.05, warmup_steps=3, total_steps=12)
    pilot = EpochPilot(EarlyStopping("val_loss", mode="min", patience=9), schedule=schedule)
    trainer([pilot, Spy()], max_epochs=3, accumulate_grad_batches=2).fit(Net(), *loaders())
    assert [s for s, _ in Spy.seen] == list(range(12))  # 8 batches / 2 = 4 updates per epoch
    assert [lr for _, lr in Spy.seen] == pytest.approx([schedule(s) for s in range(12)])
    assert pilot.history_[-1]["lr"] == pytest.approx(schedule(12))


def test_resume_from_a_lightning_checkpoint_matches_an_uninterrupted_run(tmp_path: Path) -> None:
    schedule = cosine_with_warmup(0.02, warmup_steps=8, total_steps=8 * 12)

    def policy() -> EarlyStopping:
        return EarlyStopping("val_loss", mode="min", patience=2)

    whole = EpochPilot(policy(), schedule=schedule, report=False)
    module = Net()
    trainer([whole], max_epochs=12).fit(module, *loaders())
    assert whole.stopped_epoch_ is not None and whole.stopped_epoch_ > 3

    ckpts = pl.callbacks.ModelCheckpoint(dirpath=tmp_path / "ckpt", save_top_k=-1)
    first = EpochPilot(policy(), schedule=schedule, run_dir=tmp_path / "run", report=False)
    trainer([first, ckpts], max_epochs=3, enable_checkpointing=True).fit(Net(), *loaders())
    (ckpt,) = [p for p in (tmp_path / "ckpt").iterdir() if "epoch=2" in p.name]
    saved = torch.load(ckpt, weights_only=True)["callbacks"][first.state_key]
    assert len(saved["core"]["history"]) == 3 and "best_weights" in saved

    resumed = EpochPilot(policy(), schedule=schedule, run_dir=tmp_path / "run")
    module2 = Net()
    trainer([resumed], max_epochs=12).fit(module2, *loaders(), ckpt_path=ckpt)
    assert resumed.stopped_epoch_ == whole.stopped_epoch_
    assert resumed.best_epoch_ == whole.best_epoch_
    assert [r["epoch"] for r in resumed.history_] == [r["epoch"] for r in whole.history_]
    for a, b in zip(resumed.history_, whole.history_):
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-5)
        assert (a["step"], a["lr"]) == (b["step"], pytest.approx(b["lr"]))
    for key, value in module.state_dict().items():
        torch.testing.assert_close(module2.state_dict()[key], value)
    lines = (tmp_path / "run" / "history.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [r["epoch"] for r in whole.history_]
    assert write_report(tmp_path / "run").is_file()


class Extender(Policy):
    """Asks for 2 more epochs at epoch 2; never stops."""

    _state_keys = ("seen_",)

    def __init__(self) -> None:
        self.monitor, self.mode = "val_loss", "min"
        self._init_state()

    def _init_state(self) -> None:
        self.seen_ = 0

    def update(self, epoch: int, metrics: Mapping[str, float]) -> Decision:
        self.seen_ += 1
        extend = 2 if epoch == 2 else 0
        return Decision(False, Reason.CONTINUE, False, None, None, "go on", "Extender", extend)


def test_extend_by_raises_max_epochs_and_two_pilots_keep_separate_state(tmp_path: Path) -> None:
    extender = EpochPilot(Extender(), report=False)
    other = EpochPilot(EarlyStopping("train_loss", mode="min", patience=99), report=False)
    assert extender.state_key != other.state_key
    ckpts = pl.callbacks.ModelCheckpoint(dirpath=tmp_path, save_last=True)
    run = trainer([extender, other, ckpts], max_epochs=3, enable_checkpointing=True)
    run.fit(Net(), *loaders())
    assert len(extender.history_) == 5 and extender.core.extended == 2
    assert len(other.history_) == 5
    saved = torch.load(tmp_path / "last.ckpt", weights_only=True)["callbacks"]
    assert saved[extender.state_key]["core"]["policy"]["state"] == {"seen_": 5}


def test_without_validation_the_policy_reads_train_loss() -> None:
    def policy() -> EarlyStopping:
        return EarlyStopping("train_loss", mode="min", patience=9, stopping_threshold=0.6)

    pilot = EpochPilot(policy(), report=False)
    train, _ = loaders(val=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer([pilot], max_epochs=6, limit_val_batches=0).fit(Net(lr=0.3), train)
    assert "val_loss" not in pilot.history_[0]
    losses = [row["train_loss"] for row in pilot.history_]
    expected = next(i + 1 for i, loss in enumerate(losses) if loss < 0.6)
    assert pilot.stopped_epoch_ == expected == len(losses) < 6
    assert pilot.core.stop_reason == Reason.STOPPING_THRESHOLD
    assert policy().decide(pilot.history_).stop


def test_a_stop_on_another_rank_stops_this_one() -> None:
    class Strategy:
        asked: tuple[bool, bool] | None = None

        def reduce_boolean_decision(self, decision: bool, all: bool = True) -> bool:
            self.asked = (decision, all)
            return True  # another rank said stop

        def broadcast(self, obj: Any, src: int = 0) -> Any:
            return obj

    pilot = EpochPilot(EarlyStopping("val_loss", mode="min", patience=9), report=False)
    fake = SimpleNamespace(
        strategy=Strategy(), should_stop=False, fit_loop=SimpleNamespace(max_epochs=10)
    )
    pilot._decide(fake, Net(), {"epoch": 1, "step": 8, "val_loss": 1.0})
    assert fake.should_stop and fake.strategy.asked == (False, False)
    assert pilot.stopped_epoch_ == 1 and "another rank" in pilot.core.stop_message
    assert pilot.core.stop_reason == Reason.USER


@pytest.mark.slow
def test_ddp_ranks_stop_together(tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), OMP_NUM_THREADS="1")
    script = Path(__file__).with_name("_lightning_ddp.py")
    proc = subprocess.run(
        [sys.executable, str(script), str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert (summary["world_size"], summary["epochs_run"], summary["stopped_epoch"]) == (2, 2, 2)
    assert summary["stop_reason"] == "user" and "another rank" in summary["stop_message"]
    assert (tmp_path / "report.html").is_file()


def test_history_metrics_and_bad_input() -> None:
    metrics = {
        "val_loss": torch.tensor(0.5),
        "acc_step": 1.0,
        "acc_epoch": 0.75,
        "img": torch.ones(3),
    }
    assert history_metrics(metrics) == {"val_loss": 0.5, "acc_epoch": 0.75, "acc": 0.75}
    with pytest.raises(TypeError, match="policy must be an epochpilot stop policy"):
        EpochPilot(object())  # type: ignore[arg-type]
    pilot = EpochPilot(EarlyStopping("val_acc", mode="max"))
    with pytest.raises(KeyError, match="val_acc.*lightning logged"):
        trainer([pilot], max_epochs=1).fit(Net(), *loaders())
    with pytest.raises(ValueError, match="'core'"):
        pilot.load_state_dict({})
