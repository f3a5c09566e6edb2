"""The loop: data handling, stopping, restore-best, extend, accumulation, schedules, records and results."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import tomllib
import torch

from epochpilot.core.budget import steps_per_epoch
from epochpilot.core.schedules import Cosine, ReduceOnPlateau, Warmup
from epochpilot.core.stopping import EarlyStopping, Reason
from epochpilot.train import Callback, Request, Trainer, accuracy, fit

FORMAT_KEYS = {
    "epoch",
    "step",
    "train_loss",
    "val_loss",
    "lr",
    "grad_norm",
    "epoch_time_s",
    "samples_per_s",
}


class WeightLog(Callback):
    """Keeps a copy of the weights after every epoch (to check restore-best)."""

    def __init__(self) -> None:
        self.weights: dict[int, dict] = {}

    def on_validation_end(self, state):
        self.model_state = None

    def on_epoch_end(self, state):
        self.weights[state.epoch] = {k: v.clone() for k, v in self.model.state_dict().items()}


def test_fit_tuple_numpy_records_history_and_restores_best(blobs, make_mlp, tmp_path):
    X, y = blobs
    model = make_mlp()
    log = WeightLog()
    log.model = model
    result = fit(
        model,
        (X[:64], y[:64]),
        (X[64:], y[64:]),
        metrics={"accuracy": "accuracy"},
        max_epochs=6,
        lr=0.2,
        optimizer="sgd",
        stopper=False,
        seed=0,
        run_dir=tmp_path / "run",
        callbacks=[log],
    )
    assert [r["epoch"] for r in result.history] == [1, 2, 3, 4, 5, 6]
    row = result.history[0]
    assert FORMAT_KEYS | {"train_accuracy", "val_accuracy"} == set(row)
    assert row["step"] == 2 and result.history[-1]["step"] == 12 and result.total_steps == 12
    assert result.stop_reason is Reason.MAX_EPOCHS and result.stopped_epoch == 6
    losses = [r["val_loss"] for r in result.history]
    assert result.best_epoch == 1 + int(np.argmin(losses)) and result.best_value == min(losses)
    for key, value in model.state_dict().items():
        assert torch.equal(value, log.weights[result.best_epoch][key])
    assert result.model is model
    # records: jsonl + csv rows equal the history; summary per the contract
    lines = (tmp_path / "run" / "history.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == result.history
    with open(tmp_path / "run" / "history.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4, 5, 6]
    assert float(rows[2]["val_loss"]) == pytest.approx(result.history[2]["val_loss"])
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    for key in (
        "monitor",
        "mode",
        "best_epoch",
        "best_value",
        "stopped_epoch",
        "stop_reason",
        "stop_message",
        "max_epochs",
        "epochs_run",
        "total_steps",
        "steps_per_epoch",
        "batch_size",
        "n_train",
        "n_val",
        "elapsed_s",
        "epochpilot_version",
        "final_metrics",
    ):
        assert key in summary, key
    assert (
        summary["stop_reason"] == "max_epochs"
        and summary["n_train"] == 64
        and summary["n_val"] == 32
    )
    assert summary["final_metrics"]["epoch"] == result.best_epoch
    config = tomllib.loads((tmp_path / "run" / "config.toml").read_text())
    assert config["train"]["max_epochs"] == 6 and config["train"]["optimizer"] == "sgd"
    assert config["model"]["parameters"] == sum(p.numel() for p in model.parameters())


def test_restore_best_when_the_stopper_fires(blobs, make_mlp, scripted):
    X, y = blobs
    result = fit(
        make_mlp(),
        (X[:64], y[:64]),
        (X[64:], y[64:]),
        max_epochs=9,
        seed=0,
        stopper=scripted(
            {4: {"stop": True, "reason": Reason.PATIENCE, "message": "no improvement in 2 epochs"}}
        ),
    )
    assert result.stopped_epoch == 4 and len(result.history) == 4
    assert (
        result.stop_reason is Reason.PATIENCE
        and result.stop_message == "no improvement in 2 epochs"
    )


def test_default_stopper_monitors_val_loss_or_train_loss(blobs, make_mlp):
    X, y = blobs
    with_val = fit(make_mlp(), (X[:64], y[:64]), (X[64:], y[64:]), max_epochs=2, seed=0)
    assert with_val.monitor == "val_loss" and with_val.best_value == min(
        r["val_loss"] for r in with_val.history
    )
    no_val = fit(make_mlp(), (X, y), max_epochs=2, seed=0)
    assert no_val.monitor == "train_loss" and "val_loss" not in no_val.history[0]
    assert no_val.best_value == min(r["train_loss"] for r in no_val.history)


def test_early_stopping_stops_and_says_why(make_mlp):
    X = torch.randn(64, 4)
    y = torch.randint(0, 3, (64,))  # pure noise: validation loss stops improving quickly
    result = fit(
        make_mlp(),
        (X[:48], y[:48]),
        (X[48:], y[48:]),
        lr=0.05,
        max_epochs=200,
        seed=0,
        stopper=EarlyStopping("val_loss", "min", patience=3),
    )
    assert result.stop_reason is Reason.PATIENCE
    assert result.stopped_epoch == result.best_epoch + 3 < 200
    assert "3" in result.stop_message


@pytest.mark.parametrize(("extend", "epochs"), [(1.0, 5), (None, 3)])
def test_extend_by_grants_more_epochs_only_when_extend_allows(
    blobs, make_mlp, scripted, extend, epochs
):
    """max_epochs is a hard cap unless ``extend`` allows a stopper's request (here 2 more epochs)."""
    X, y = blobs
    result = fit(
        make_mlp(),
        (X[:64], y[:64]),
        (X[64:], y[64:]),
        max_epochs=3,
        seed=0,
        stopper=scripted({3: {"extend_by": 2}}),
        extend=extend,
    )
    assert len(result.history) == epochs and result.stop_reason is Reason.MAX_EPOCHS
    assert result.summary["max_epochs"] == 3 and result.summary["extended_by"] == epochs - 3


def test_accumulation_counts_updates_like_budget(blobs, make_mlp):
    X, y = blobs
    result = fit(
        make_mlp(), (X, y), batch_size=10, accumulation=3, max_epochs=2, stopper=False, seed=0
    )
    per_epoch = steps_per_epoch(96, 10, accumulation=3)
    assert per_epoch == 4  # 10 batches -> 3 + 3 + 3 + 1
    assert [r["step"] for r in result.history] == [per_epoch, 2 * per_epoch]
    assert result.summary["steps_per_epoch"] == per_epoch


def test_accumulation_matches_one_big_batch():
    """Two micro-batches of 8 accumulate to the same update as one batch of 16 (mean loss, SGD)."""
    X, y = torch.randn(16, 4), torch.randint(0, 3, (16,))
    results = []
    for bs, acc in ((16, 1), (8, 2)):
        torch.manual_seed(0)
        model = torch.nn.Linear(4, 3)
        fit(
            model,
            (X, y),
            batch_size=bs,
            accumulation=acc,
            shuffle=False,
            max_epochs=1,
            stopper=False,
            optimizer="sgd",
            lr=0.5,
        )
        results.append(model.weight.detach().clone())
    torch.testing.assert_close(results[0], results[1])


def test_schedule_sets_lr_per_update_and_plateau_is_fed(blobs, make_mlp):
    X, y = blobs
    sched = Warmup(Cosine(0.1, total_steps=20), steps=4)
    result = fit(
        make_mlp(), (X, y), batch_size=32, schedule=sched, max_epochs=4, stopper=False, seed=0
    )
    assert [r["lr"] for r in result.history] == [pytest.approx(sched(s)) for s in (3, 6, 9, 12)]
    plateau = ReduceOnPlateau(
        "train_loss", mode="max", patience=0, factor=0.5
    )  # "max": every epoch is bad
    result = fit(
        make_mlp(),
        (X, y),
        schedule=plateau.wrap(Cosine(0.1, total_steps=100)),
        max_epochs=3,
        stopper=False,
        seed=0,
    )
    assert plateau.scale == 0.25  # epoch 1 sets the best, epochs 2 and 3 each halve
    # a row's lr is the one in force at the end of its training pass, before its own validation
    assert result.history[-1]["lr"] == pytest.approx(Cosine(0.1, total_steps=100)(9) * 0.5)


def test_metrics_by_name_function_and_list(blobs, make_mlp):
    X, y = blobs
    for metrics in ({"acc": accuracy}, ["accuracy"], {"accuracy": "accuracy"}):
        result = fit(make_mlp(), (X, y), (X, y), metrics=metrics, max_epochs=1, seed=0)
        (name,) = [
            k[len("train_") :]
            for k in result.history[0].keys() - FORMAT_KEYS
            if k.startswith("train_")
        ]
        assert 0.0 <= result.history[0][f"val_{name}"] <= 1.0


def test_accuracy_metric_values():
    out = torch.tensor([[2.0, 1.0], [0.0, 3.0], [1.0, 0.0]])
    assert accuracy(out, torch.tensor([0, 1, 1])).item() == pytest.approx(2 / 3)
    assert accuracy(torch.tensor([1.5, -2.0]), torch.tensor([1.0, 1.0])).item() == 0.5
    with pytest.raises(ValueError, match="shape"):
        accuracy(torch.zeros(3, 2, 2), torch.zeros(5))


def test_dataset_and_dataloader_inputs(blobs, make_mlp):
    X, y = blobs
    ds = torch.utils.data.TensorDataset(
        torch.tensor(X, dtype=torch.float32), torch.tensor(y, dtype=torch.long)
    )
    a = fit(make_mlp(), ds, max_epochs=2, seed=0)
    b = fit(make_mlp(), (X, y), max_epochs=2, seed=0)
    assert [r["train_loss"] for r in a.history] == pytest.approx(
        [r["train_loss"] for r in b.history]
    )
    loader = torch.utils.data.DataLoader(ds, batch_size=16, shuffle=True)
    c = fit(make_mlp(), loader, loader, max_epochs=2, seed=0)
    assert c.history[-1]["step"] == 12


def test_regression_float_targets_pick_mse(make_mlp):
    X = np.random.default_rng(0).normal(size=(40, 4))
    y = X @ np.array([[1.0], [2.0], [0.0], [-1.0]])
    result = fit(make_mlp(n_out=1), (X, y), max_epochs=3, lr=0.01, seed=0)
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]


def test_callback_stop_request_at_step_end(blobs, make_mlp):
    class StopAt(Callback):
        def on_step_end(self, state):
            return Request("stop", message="enough") if state.step == 5 else None

    X, y = blobs
    result = fit(make_mlp(), (X, y), (X, y), max_epochs=10, callbacks=[StopAt()], seed=0)
    assert result.stop_reason is Reason.USER and result.stop_message == "enough"
    assert result.stopped_epoch == 2 and result.history[-1]["step"] == 5


def test_nonfinite_values_are_null_in_json_and_nan_in_csv(blobs, make_mlp, tmp_path):
    X, y = blobs
    result = fit(
        make_mlp(), (X, y), max_epochs=1, grad_norm_every=0, run_dir=tmp_path / "r", seed=0
    )
    assert math.isnan(result.history[0]["grad_norm"])
    row = json.loads((tmp_path / "r" / "history.jsonl").read_text())
    assert row["grad_norm"] is None
    assert "NaN" in (tmp_path / "r" / "history.csv").read_text()


def test_bf16_mixed_on_cpu_and_16_mixed_refused(blobs, make_mlp):
    X, y = blobs
    result = fit(
        make_mlp(), (X, y), (X, y), precision="bf16-mixed", max_epochs=2, seed=0, device="cpu"
    )
    assert math.isfinite(result.history[-1]["val_loss"])
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="16-mixed.*CUDA"):
            fit(make_mlp(), (X, y), precision="16-mixed", max_epochs=1, device="cpu")


def test_seeded_runs_are_identical(blobs, make_mlp):
    X, y = blobs
    runs = [
        fit(make_mlp(), (X, y), (X, y), max_epochs=3, seed=7, deterministic=True) for _ in range(2)
    ]
    strip = [
        [
            {k: v for k, v in r.items() if k not in ("epoch_time_s", "samples_per_s")}
            for r in run.history
        ]
        for run in runs
    ]
    assert strip[0] == strip[1]
    assert not torch.are_deterministic_algorithms_enabled()


def test_trainer_object_and_config_reuse(blobs, make_mlp):
    X, y = blobs
    trainer = Trainer(max_epochs=2, seed=0)
    assert trainer.fit(make_mlp(), (X, y)).stopped_epoch == 2
    assert Trainer(trainer.config, max_epochs=1).fit(make_mlp(), (X, y)).stopped_epoch == 1


def test_optimizer_instance_factory_and_loss_by_name(blobs, make_mlp):
    X, y = blobs
    model = make_mlp()
    instance = torch.optim.SGD(model.parameters(), lr=0.05)
    result = fit(model, (X, y), optimizer=instance, loss_fn="cross_entropy", max_epochs=2, seed=0)
    assert (
        result.history[-1]["lr"] == 0.05 and instance.state_dict()["param_groups"][0]["lr"] == 0.05
    )
    made = []

    def factory(params):
        made.append(torch.optim.AdamW(params, lr=0.02))
        return made[-1]

    result = fit(make_mlp(), (X, y), optimizer=factory, max_epochs=1, seed=0)
    assert len(made) == 1 and result.history[0]["lr"] == 0.02
    with pytest.raises(ValueError, match="not a torch optimizer"):
        fit(make_mlp(), (X, y), optimizer=lambda params: "adam", max_epochs=1)
