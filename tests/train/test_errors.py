"""Bad input: each a one-line error naming the cause and the fix; no existing file damaged."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from epochpilot.core.stopping import EarlyStopping
from epochpilot.errors import ConfigError, DataError
from epochpilot.train import TrainConfig, Trainer, fit


def _one_line(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert "\n" not in text
    return text


def test_wrong_class_count_names_both_shapes(blobs):
    X, y = blobs
    with pytest.raises(DataError, match=r"output shape \(32, 2\) vs target shape \(32,\)") as err:
        fit(torch.nn.Linear(4, 2), (X, y), max_epochs=1)  # labels go up to 2
    assert "last layer" in _one_line(err)


def test_regression_broadcast_is_caught():
    X, y = torch.randn(40, 4), torch.randn(40)
    with pytest.raises(DataError, match=r"broadcast.*\(32, 1\) vs target shape \(32,\)") as err:
        fit(torch.nn.Linear(4, 1), (X, y), max_epochs=1)
    _one_line(err)


def test_regression_width_mismatch():
    X, y = torch.randn(40, 4), torch.randn(40, 5)
    with pytest.raises(DataError, match=r"\(32, 3\) vs target shape \(32, 5\)"):
        fit(torch.nn.Linear(4, 3), (X, y), max_epochs=1)


@pytest.mark.parametrize(
    "data",
    [
        (np.zeros((0, 4)), np.zeros(0)),
        torch.utils.data.TensorDataset(torch.zeros(0, 4), torch.zeros(0)),
    ],
)
def test_empty_dataset(data):
    with pytest.raises(DataError, match="train_data is empty: give at least one sample") as err:
        fit(torch.nn.Linear(4, 1), data)
    _one_line(err)


def test_batch_larger_than_data(blobs):
    X, y = blobs
    with pytest.raises(
        DataError, match=r"batch_size 512 > 96 training samples: lower batch_size to at most 96"
    ):
        fit(torch.nn.Linear(4, 3), (X, y), batch_size=512)


def test_length_mismatch_and_bad_data_type(blobs):
    X, y = blobs
    with pytest.raises(DataError, match="different lengths"):
        fit(torch.nn.Linear(4, 3), (X, y[:10]))
    with pytest.raises(DataError, match="give \\(X, y\\)"):
        fit(torch.nn.Linear(4, 3), {"X": X})


def test_stopper_metric_missing(blobs):
    X, y = blobs
    with pytest.raises(ConfigError, match="'val_accuracy'.*add the metric to metrics=") as err:
        fit(torch.nn.Linear(4, 3), (X, y), (X, y), stopper=EarlyStopping("val_accuracy", "max"))
    _one_line(err)
    with pytest.raises(ConfigError, match="'val_loss'.*pass val_data"):
        fit(torch.nn.Linear(4, 3), (X, y), stopper=EarlyStopping("val_loss", "min"))


def test_non_writable_run_dir(blobs, tmp_path):
    X, y = blobs
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ConfigError, match="is not writable.*choose a directory") as err:
        fit(torch.nn.Linear(4, 3), (X, y), run_dir=blocker / "run")
    _one_line(err)
    with pytest.raises(ConfigError, match="is a file"):
        fit(torch.nn.Linear(4, 3), (X, y), run_dir=blocker)


def _snapshot(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_existing_run_is_refused_and_untouched(blobs, make_mlp, tmp_path):
    X, y = blobs
    run = tmp_path / "run"
    fit(make_mlp(), (X, y), (X, y), lr=0.01, max_epochs=2, seed=0, run_dir=run)
    before = _snapshot(run)
    with pytest.raises(
        ConfigError, match="different config \\(differs in lr\\).*resume=True.*overwrite=True"
    ) as err:
        fit(make_mlp(), (X, y), (X, y), lr=0.02, max_epochs=2, seed=0, run_dir=run, resume="auto")
    _one_line(err)
    with pytest.raises(ConfigError, match="already holds a run of a different config"):
        fit(make_mlp(), (X, y), (X, y), lr=0.02, max_epochs=2, seed=0, run_dir=run)
    with pytest.raises(ConfigError, match="already holds a run: pass resume='auto'"):
        fit(make_mlp(), (X, y), (X, y), lr=0.01, max_epochs=2, seed=0, run_dir=run)
    assert _snapshot(run) == before
    again = fit(
        make_mlp(), (X, y), (X, y), lr=0.02, max_epochs=1, seed=0, run_dir=run, overwrite=True
    )
    assert len(again.history) == 1
    assert len((run / "history.jsonl").read_text().splitlines()) == 1


def test_resume_true_with_a_changed_config_continues(blobs, make_mlp, tmp_path):
    X, y = blobs
    run = tmp_path / "run"
    fit(make_mlp(), (X, y), lr=0.01, max_epochs=2, seed=0, run_dir=run, stopper=False)
    result = fit(
        make_mlp(), (X, y), lr=0.02, max_epochs=3, seed=0, run_dir=run, resume=True, stopper=False
    )
    assert [r["epoch"] for r in result.history] == [1, 2, 3]
    with pytest.raises(ConfigError, match="holds no run"):
        fit(make_mlp(), (X, y), run_dir=tmp_path / "fresh", resume=True)


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("lr", -1.0, "lr must be a positive number"),
        ("batch_size", 0, "batch_size must be an int >= 1"),
        ("max_epochs", 1.5, "max_epochs must be an int >= 1"),
        ("accumulation", 0, "accumulation must be an int >= 1"),
        ("optimizer", "rmsprop", "optimizer='rmsprop' is unknown"),
        ("loss_fn", "hinge", "loss_fn='hinge' is unknown"),
        ("precision", "16", "precision='16' is unknown"),
        ("on_nan", "ignore", "on_nan='ignore' is unknown"),
        ("checkpoint_every", "5 minutes", "checkpoint_every='5 minutes' is not understood"),
        ("checkpoint_every", True, "checkpoint_every=True is ambiguous"),
        ("metrics", {"x": "nope"}, "metrics\\['x'\\] = 'nope' is not a callable"),
        ("keep_last", 0, "keep_last must be an int >= 1"),
        ("device", "tpu", "device='tpu' is unknown"),
        ("resume", "auto", "resume='auto' needs a run_dir"),
        ("stopper", "patience", "stopper must be a stop policy"),
        ("clip_grad_norm", -1, "clip_grad_norm must be > 0"),
    ],
)
def test_config_validation(field, value, match):
    with pytest.raises(ConfigError, match=match) as err:
        TrainConfig(**{field: value})
    _one_line(err)


def test_unknown_field_and_bad_model(blobs):
    with pytest.raises(ConfigError, match="epochs"):
        Trainer(epochs=3)
    with pytest.raises(TypeError, match="torch.nn.Module"):
        fit(lambda x: x, blobs)


def test_duplicate_callback_state_keys(blobs):
    from epochpilot.train import Callback

    X, y = blobs
    with pytest.raises(ConfigError, match="state_key"):
        fit(torch.nn.Linear(4, 3), (X, y), callbacks=[Callback(), Callback()])


def test_model_returning_a_tuple(blobs):
    class Pair(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = torch.nn.Linear(4, 3)

        def forward(self, x):
            return self.lin(x), x

    X, y = blobs
    with pytest.raises(DataError, match="returned a tuple, not a tensor") as err:
        fit(Pair(), (X, y), max_epochs=1)
    _one_line(err)


def test_deterministic_flag_is_restored(blobs):
    X, y = blobs
    torch.use_deterministic_algorithms(True)
    try:
        fit(torch.nn.Linear(4, 3), (X, y), max_epochs=1, deterministic=True)
        assert torch.are_deterministic_algorithms_enabled()
    finally:
        torch.use_deterministic_algorithms(False)
