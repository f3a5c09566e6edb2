"""The Lightning adapter's policy default, budget, verbose line and kept model: ``EpochPilot(run_dir=...)``
with no policy stops as ``epochpilot.fit``'s default would, logs one line like Lightning's
``EarlyStopping(verbose=True)``, and writes ``model.ckpt`` that works as ``ckpt_path`` and loads back to the
kept model; an extension a policy asked for is kept apart from ``max_epochs`` and survives a resume."""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

pl = pytest.importorskip("lightning.pytorch")

import torch  # noqa: E402

from epochpilot.core.stopping import AutoStopper, default_stopper  # noqa: E402
from epochpilot.integrations.lightning import EpochPilot  # noqa: E402

from .test_lightning import Extender, Net, Weights, loaders, same, trainer  # noqa: E402

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::UserWarning"),
]
CURVE = [1.0, 0.8, 0.7] + [0.75 + 0.01 * i for i in range(20)]  # best at epoch 3, then worse


@pytest.fixture
def lines() -> Iterator[list[str]]:
    """What Lightning's rank_zero_info logs (the logger Lightning shows at INFO)."""
    seen: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record.getMessage())

    logger = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    handler = Keep(level=logging.INFO)
    logger.addHandler(handler)
    yield seen
    logger.removeHandler(handler)


def test_no_policy_is_fits_default_and_logs_one_line(tmp_path: Path, lines: list[str]) -> None:
    weights = Weights()
    pilot = EpochPilot(run_dir=tmp_path / "run", save_model=False, report=False)
    module = Net(CURVE)
    trainer([pilot, weights], max_epochs=len(CURVE)).fit(module, *loaders())
    assert repr(pilot.policy) == repr(default_stopper("val_loss", "min"))
    assert (pilot.stopped_epoch_, pilot.best_epoch_) == (13, 3)
    assert same(module.state_dict(), weights.at[3])
    assert [line for line in lines if "early stopping" in line] == [pilot.stop_line_]
    assert pilot.stop_line_.startswith("Epoch 13: early stopping: ")
    assert "Kept epoch 3 (val_loss 0.7): its weights are restored." in pilot.stop_line_
    assert not (tmp_path / "run" / "model.ckpt").exists()

    lines.clear()
    quiet = EpochPilot(verbose=False, report=False)
    trainer([quiet], max_epochs=len(CURVE)).fit(Net(CURVE), *loaders())
    assert quiet.stop_line_ == pilot.stop_line_ and not [x for x in lines if "stopping" in x]


def test_the_kept_model_is_a_checkpoint_for_ckpt_path(tmp_path: Path) -> None:
    pilot = EpochPilot("early", run_dir=tmp_path / "run", verbose=False, report=False)
    module = Net(lr=0.05)
    trainer([pilot], max_epochs=30).fit(module, *loaders())
    assert pilot.stopped_epoch_ is not None and pilot.best_epoch_ < pilot.stopped_epoch_
    path = tmp_path / "run" / "model.ckpt"
    assert pilot.model_path_ == path and path.is_file()
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["saved_model"] == "model.ckpt" and pilot.stop_line_.endswith(f"{path}.")

    loaded = Net.load_from_checkpoint(path)
    assert same(loaded.state_dict(), module.state_dict())
    _, val = loaders()
    check = trainer([], max_epochs=1)
    (from_ckpt,) = check.validate(Net(), val, ckpt_path=path, verbose=False)
    (kept,) = check.validate(module, val, verbose=False)
    assert from_ckpt["val_loss"] == pytest.approx(kept["val_loss"], abs=0)
    saved = torch.load(path, weights_only=True)["callbacks"][pilot.state_key]
    assert saved["best_weights"] == "model"  # the model's weights are the best: not stored twice

    # resuming fit from it (one more epoch, no better): the best weights are the checkpoint's model weights
    resumed = EpochPilot("early", verbose=False, report=False)
    again = Net([9.0] * 100, lr=0.05)
    trainer([resumed], max_epochs=40).fit(again, *loaders(), ckpt_path=path)
    assert resumed.stopped_epoch_ == pilot.stopped_epoch_ + 1
    assert resumed.best_epoch_ == pilot.best_epoch_
    assert same(again.state_dict(), module.state_dict())


def test_forecast_reads_its_budget_from_the_trainer() -> None:
    def run(**kw: object) -> EpochPilot:
        pilot = EpochPilot("forecast", verbose=False, report=False)
        assert isinstance(pilot.policy, AutoStopper)
        trainer([pilot], **kw).fit(Net(), *loaders())  # type: ignore[arg-type]
        return pilot

    assert run(max_epochs=2).policy.budget == 2
    every_two = run(max_epochs=4, check_val_every_n_epoch=2)
    assert every_two.policy.budget == 2
    assert every_two.core.note == "counted in validations, one every 2 epochs"
    assert run(max_epochs=-1, max_steps=12).policy.budget == 2  # 8 updates an epoch
    with pytest.raises(ValueError, match="policy='forecast' plans for the trainer's epoch budget"):
        run(max_epochs=-1, max_steps=-1, max_time={"seconds": 1})


def test_without_validation_the_default_watches_train_loss() -> None:
    pilot = EpochPilot(verbose=False, report=False)
    train, _ = loaders(val=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer([pilot], max_epochs=3, limit_val_batches=0).fit(Net(), train)
    assert pilot.core.monitor == "train_loss" and pilot.best_epoch_ is not None
    assert not [w for w in caught if "not fed" in str(w.message)]
    assert pilot.state_key == "EpochPilot{'policy': 'auto'}"


def test_a_policy_without_its_metric_warns_that_it_is_not_fed() -> None:
    from epochpilot.core.stopping import EarlyStopping

    pilot = EpochPilot(EarlyStopping("val_loss", mode="min"), verbose=False, report=False)
    train, _ = loaders(val=False)
    with pytest.warns(UserWarning, match="no validation loop and no 'val_loss'.*not fed"):
        trainer([pilot], max_epochs=2, limit_val_batches=0).fit(Net(), train)


def test_an_extension_is_kept_apart_and_survives_a_resume(tmp_path: Path) -> None:
    extender = EpochPilot(Extender(), run_dir=tmp_path / "run", save_model=False, report=False)
    ckpts = pl.callbacks.ModelCheckpoint(dirpath=tmp_path / "ckpt", save_top_k=-1)
    trainer([extender, ckpts], max_epochs=3, enable_checkpointing=True).fit(Net(), *loaders())
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert (summary["max_epochs"], summary["extended_by"], summary["epochs_run"]) == (3, 2, 5)

    (third,) = [p for p in (tmp_path / "ckpt").iterdir() if "epoch=2" in p.name]
    resumed = EpochPilot(Extender(), verbose=False, report=False)
    trainer([resumed], max_epochs=3).fit(Net(), *loaders(), ckpt_path=third)
    assert [row["epoch"] for row in resumed.history_] == [1, 2, 3, 4, 5]
    assert (resumed.summary_["max_epochs"], resumed.summary_["extended_by"]) == (3, 2)
