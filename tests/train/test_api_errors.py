"""The Python API refuses bad arguments with one epochpilot error line that names the argument and the fix,
before training starts where it can; a loss that turns NaN never leaves a non-finite epoch as the best."""

from __future__ import annotations

import logging
import math
import re

import numpy as np
import pytest
import torch

from epochpilot.core import stopping as S
from epochpilot.errors import ConfigError, ConfigTypeError, DataError, EpochpilotError
from epochpilot.train import Callback, TrainConfig, Trainer, fit
from epochpilot.train.data import TensorBatches
from epochpilot.train.rng import get_rng
from epochpilot.train.validate import dry_forward


def _data(n: int = 48, width: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    X = (rng.normal(size=(n, width)) + y[:, None]).astype(np.float32)
    return X, y


def _mlp(n_in: int = 4, n_out: int = 3) -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(n_in, 8), torch.nn.ReLU(), torch.nn.Linear(8, n_out))


def _weights(model: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters()]


def _same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


X, Y = _data()
OTHER = _mlp()


class _Counter(Callback):
    def on_epoch_start(self, state):  # pragma: no cover - trivial
        return None


def _nan_x() -> np.ndarray:
    bad = X.copy()
    bad[[3, 7, 7], [0, 1, 2]] = [np.nan, np.inf, -np.inf]
    return bad


#: (id, fit arguments, error class, text the message must hold: the argument's name and the fix)
BAD = [
    ("loss-float", dict(loss_fn=lambda o, t: 1.0), ConfigTypeError, r"loss_fn returned a float"),
    (
        "loss-numpy",
        dict(loss_fn=lambda o, t: np.float32(torch.nn.functional.cross_entropy(o, t).item())),
        ConfigTypeError,
        r"loss_fn returned a float32, not a tensor",
    ),
    (
        "loss-vector",
        dict(loss_fn=lambda o, t: torch.nn.functional.cross_entropy(o, t, reduction="none")),
        DataError,
        r"loss_fn returned shape \(16,\), not a scalar: use reduction='mean'",
    ),
    (
        "loss-detached",
        dict(loss_fn=lambda o, t: torch.nn.functional.cross_entropy(o.detach(), t)),
        ConfigError,
        r"loss_fn returned a tensor without a gradient",
    ),
    (
        "loss-class",
        dict(loss_fn=torch.nn.MSELoss),
        ConfigTypeError,
        r"loss_fn=.*MSELoss is a class",
    ),
    ("loss-int", dict(loss_fn=3), ConfigTypeError, r"loss_fn must be a callable"),
    (
        "callbacks-int",
        dict(callbacks=[3]),
        ConfigTypeError,
        r"callbacks\[0\] \(int\) is not a callback",
    ),
    (
        "callbacks-function",
        dict(callbacks=[_Counter(), lambda state: None]),
        ConfigTypeError,
        r"callbacks\[1\] \(function\) is not a callback.*subclass epochpilot.train.Callback",
    ),
    (
        "callbacks-class",
        dict(callbacks=[_Counter]),
        ConfigTypeError,
        r"callbacks\[0\] \(type\) is not a callback \(a class: pass an instance, _Counter\(\)\)",
    ),
    ("callbacks-one", dict(callbacks=_Counter()), ConfigTypeError, r"callbacks=\[cb\]"),
    ("callbacks-str", dict(callbacks="early"), ConfigTypeError, r"callbacks must be a list"),
    (
        "optimizer-other-model",
        dict(optimizer=torch.optim.SGD(OTHER.parameters(), lr=0.1)),
        ConfigError,
        r"optimizer holds none of the 4 trainable parameter tensors of model Sequential.*model.parameters",
    ),
    (
        "optimizer-factory-arity",
        dict(optimizer=lambda: None),
        ConfigTypeError,
        r"optimizer factory <lambda> failed",
    ),
    (
        "optimizer-factory-returns",
        dict(optimizer=lambda p: 3),
        ConfigTypeError,
        r"optimizer factory returned int, not a torch optimizer",
    ),
    (
        "device-cuda-index",
        dict(device="cuda:99"),
        ConfigError,
        r"device='cuda:99'.*use device='cpu' or 'auto'",
    ),
    ("lr-str", dict(lr="0.1"), ConfigError, r"lr must be a positive number, got '0.1'"),
    ("lr-inf", dict(lr=math.inf), ConfigError, r"lr must be a positive number"),
    (
        "max_epochs-str",
        dict(max_epochs="3"),
        ConfigError,
        r"max_epochs must be an int >= 1, got '3'",
    ),
    ("max_epochs-zero", dict(max_epochs=0), ConfigError, r"max_epochs must be an int >= 1, got 0"),
    (
        "max_epochs-bool",
        dict(max_epochs=True),
        ConfigError,
        r"max_epochs must be an int >= 1, got True",
    ),
    ("batch_size-neg", dict(batch_size=-4), ConfigError, r"batch_size must be an int >= 1"),
    ("batch_size-float", dict(batch_size=8.0), ConfigError, r"batch_size must be an int >= 1"),
    ("weight_decay-bool", dict(weight_decay=True), ConfigError, r"weight_decay must be >= 0"),
    ("weight_decay-nan", dict(weight_decay=math.nan), ConfigError, r"weight_decay must be >= 0"),
    ("clip-str", dict(clip_grad_norm="1"), ConfigError, r"clip_grad_norm must be > 0"),
    ("seed-str", dict(seed="1"), ConfigError, r"seed must be an int"),
    ("seed-negative", dict(seed=-1), ConfigError, r"seed must be an int from 0"),
    ("seed-huge", dict(seed=2**70), ConfigError, r"seed must be an int from 0 to 2\*\*62 - 1"),
    ("shuffle-str", dict(shuffle="no"), ConfigError, r"shuffle must be True or False, got 'no'"),
    ("drop_last-int", dict(drop_last=2), ConfigError, r"drop_last must be True or False"),
    (
        "deterministic-str",
        dict(deterministic="yes"),
        ConfigError,
        r"deterministic must be True or False",
    ),
    ("overwrite-str", dict(overwrite="yes"), ConfigError, r"overwrite must be True or False"),
    ("tensorboard-int", dict(tensorboard=1), ConfigError, r"tensorboard must be True or False"),
    ("run_dir-int", dict(run_dir=3), ConfigError, r"run_dir must be a folder path"),
    ("run_dir-empty", dict(run_dir=""), ConfigError, r"run_dir must be a folder path"),
    (
        "val_every_steps-neg",
        dict(val_every_steps=-1),
        ConfigError,
        r"val_every_steps must be an int >= 1",
    ),
    (
        "val_every_steps-str",
        dict(val_every_steps="2"),
        ConfigError,
        r"val_every_steps must be an int",
    ),
    (
        "num_workers-bool",
        dict(num_workers=True),
        ConfigError,
        r"num_workers must be an int from 0 to 1024",
    ),
    ("max_time-neg", dict(max_time=-1), ConfigError, r"max_time must be a positive duration"),
    ("metrics-int", dict(metrics=3), ConfigError, r"metrics must be a dict"),
    (
        "metrics-fails",
        dict(metrics={"bad": lambda o, t: o[:, :2]}),
        ConfigError,
        r"metrics\['bad'\] failed on the first batch",
    ),
    (
        "unknown-setting",
        dict(epochs=3),
        ConfigTypeError,
        r"unknown setting 'epochs': did you mean 'max_epochs'",
    ),
    (
        "model-none",
        dict(model=None),
        ConfigTypeError,
        r"model must be a torch.nn.Module, got NoneType",
    ),
    ("model-no-params", dict(model=torch.nn.ReLU()), ConfigError, r"model ReLU has no parameters"),
    (
        "model-width",
        dict(model=_mlp(32)),
        DataError,
        r"model Sequential failed on the first batch of train_data \(inputs \(16, 4\)\).*"
        r"model expects 32 input features \(layer '0'\), the data has 4 columns",
    ),
    (
        "model-int-inputs",
        dict(data=(X.astype(np.int64), Y)),
        DataError,
        r"inputs have dtype torch.int64 but the model's weights are torch.float32",
    ),
    (
        "X-1d",
        dict(data=(X[:, 0], Y)),
        DataError,
        r"model expects 4 input features.*1-D inputs.*X.reshape\(-1, 1\)",
    ),
    (
        "X-y-lengths",
        dict(data=(X, Y[:10])),
        DataError,
        r"train_data arrays have different lengths \[48, 10\]",
    ),
    ("X-empty", dict(data=(X[:0], Y[:0])), DataError, r"train_data is empty"),
    ("X-only", dict(data=(X,)), DataError, r"train_data holds 1 array\(s\): give \(X, y\)"),
    (
        "X-scalar",
        dict(data=(1.0, 2.0)),
        DataError,
        r"train_data\[0\] is a single value: give an array",
    ),
    (
        "X-nonfinite",
        dict(data=(_nan_x(), Y)),
        DataError,
        r"train_data\[0\] has 3 non-finite values \(NaN or inf\) in 2 of 48 rows \(first: row 3\): drop or impute",
    ),
    (
        "y-nonfinite",
        dict(data=(X, np.where(Y > 1, np.nan, 0.0)), loss_fn="mse", model=_mlp(4, 1)),
        DataError,
        r"train_data\[1\] has \d+ non-finite values",
    ),
    (
        "y-text",
        dict(data=(X, Y.astype(str))),
        DataError,
        r"train_data\[1\] has dtype <U\d+ \(text\)",
    ),
    ("X-objects", dict(data=(X.astype(object), Y)), DataError, r"train_data\[0\] has dtype object"),
    (
        "y-float-for-cross-entropy",
        dict(data=(X, Y.astype(np.float32)), loss_fn="cross_entropy"),
        DataError,
        r"loss_fn failed on the first batch.*y has dtype torch.float32: give integer class labels",
    ),
    ("data-dict", dict(data={"X": X, "y": Y}), DataError, r"train_data is a dict: give \(X, y\)"),
    (
        "val-width",
        dict(val=(X[:, :3], Y)),
        DataError,
        r"first batch of val_data.*val_data has 3 columns \(torch.float32\), train_data has 4 columns",
    ),
    ("val-nonfinite", dict(val=(_nan_x(), Y)), DataError, r"val_data\[0\] has 3 non-finite values"),
    ("val-lengths", dict(val=(X, Y[:5])), DataError, r"val_data arrays have different lengths"),
    (
        "val_every_steps-without-val",
        dict(val_every_steps=2, val=None),
        ConfigError,
        r"val_every_steps needs val_data",
    ),
]


#: checked on the first training batch (the loss and the metrics run on the training forward's output), so
#: after the run directory was prepared; every other case is refused before it is touched
FIRST_BATCH = {"loss-float", "loss-numpy", "loss-vector", "loss-detached", "metrics-fails"}
FIRST_BATCH |= {"y-float-for-cross-entropy"}


@pytest.mark.parametrize(("case", "args", "error", "match"), BAD, ids=[b[0] for b in BAD])
def test_bad_argument_is_one_epochpilot_line(case, args, error, match, tmp_path):
    args = dict(args)
    model = args.pop("model", _mlp())
    data = args.pop("data", (X, Y))
    val = args.pop("val", (X, Y))
    run = tmp_path / "run"
    with pytest.raises(EpochpilotError) as err:
        fit(model, data, val, **{"max_epochs": 2, "batch_size": 16, "run_dir": run, **args})
    assert isinstance(err.value, error), f"{type(err.value).__name__}: {err.value}"
    if isinstance(err.value, ConfigTypeError):
        assert isinstance(err.value, TypeError)
    else:
        assert isinstance(err.value, ValueError)
    text = str(err.value)
    assert "\n" not in text and len(text) < 400, text
    assert re.search(match, text), text
    if case not in FIRST_BATCH:
        assert not run.exists(), "refused before the run directory was touched"


@pytest.mark.parametrize("device", ["cuda", "cuda:3", "mps"])
def test_missing_device_is_one_line(device, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(
        ConfigError, match=rf"^device='{device}' but .* use device='cpu' or 'auto'$"
    ):
        fit(_mlp(), (X, Y), max_epochs=1, device=device)


def test_cuda_index_past_the_last_device(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(
        ConfigError, match=r"device='cuda:3' but this machine has 2 CUDA device\(s\)"
    ):
        fit(_mlp(), (X, Y), max_epochs=1, device="cuda:3")


def test_loss_errors_come_before_any_update():
    model = _mlp()
    before = _weights(model)
    with pytest.raises(ConfigTypeError, match="loss_fn returned a float"):
        fit(model, (X, Y), max_epochs=1, loss_fn=lambda o, t: o.detach().sum().item())
    assert _same(before, _weights(model))


def test_a_detaching_model_is_named():
    class Detached(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = torch.nn.Linear(4, 3)

        def forward(self, x):
            return self.lin(x).detach()

    with pytest.raises(ConfigError, match=r"model Detached's output has no gradient"):
        fit(Detached(), (X, Y), max_epochs=1)


def test_frozen_model_is_refused():
    model = _mlp()
    for p in model.parameters():
        p.requires_grad_(False)
    with pytest.raises(ConfigError, match=r"model Sequential is frozen: there is nothing to train"):
        fit(model, (X, Y), max_epochs=1)


def test_optimizer_over_part_of_the_model_warns(caplog):
    model = _mlp()
    opt = torch.optim.SGD(model[2].parameters(), lr=0.1)
    with caplog.at_level(logging.WARNING, logger="epochpilot"):
        fit(model, (X, Y), max_epochs=1, optimizer=opt, stopper=False)
    assert (
        "optimizer updates 2 of the model's 4 trainable parameter tensors; '0.weight', '0.bias'"
        in caplog.text
    )


def test_optimizer_with_extra_parameters_is_fine():
    model, extra = _mlp(), torch.nn.Parameter(torch.ones(()))
    opt = torch.optim.SGD([*model.parameters(), extra], lr=0.1)
    result = fit(model, (X, Y), max_epochs=1, optimizer=opt, stopper=False)
    assert len(result.history) == 1


class _Rows(torch.utils.data.Dataset):
    def __init__(self, X, y) -> None:
        self.X, self.y = torch.as_tensor(X), torch.as_tensor(y)

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i):
        return self.X[i], self.y[i]


def test_width_mismatch_through_a_dataset_is_caught_on_the_first_batch():
    with pytest.raises(
        DataError, match=r"model expects 32 input features.*the data has 4 columns"
    ) as err:
        fit(_mlp(32), _Rows(X, Y), max_epochs=1, batch_size=16)
    assert "\n" not in str(err.value)
    loader = torch.utils.data.DataLoader(_Rows(X, Y), batch_size=16)  # 4 columns; train has 5
    with pytest.raises(DataError, match=r"first batch of val_data.*model expects 5 input features"):
        fit(_mlp(5), (np.tile(X[:, :1], (1, 5)), Y), loader, max_epochs=1, stopper=False)


def test_later_errors_in_the_forward_are_not_rewrapped():
    class Breaks(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = torch.nn.Linear(4, 3)
            self.calls = 0

        def forward(self, x):
            if self.training:
                self.calls += 1
                if self.calls == 5:
                    raise RuntimeError("a genuine bug in the model")
            return self.lin(x)

    with pytest.raises(RuntimeError, match="a genuine bug") as err:
        fit(Breaks(), (X, Y), max_epochs=3, batch_size=16, stopper=False)
    assert not isinstance(err.value, EpochpilotError)


def test_dry_forward_leaves_rng_mode_and_state_alone():
    class Noisy(torch.nn.Module):
        """Draws from the RNG in every forward and keeps BatchNorm statistics."""

        def __init__(self) -> None:
            super().__init__()
            self.bn = torch.nn.BatchNorm1d(4)
            self.lin = torch.nn.Linear(4, 3)

        def forward(self, x):
            return self.lin(self.bn(x)) + 0 * torch.rand(())

    model = Noisy()
    batches = TensorBatches(
        (torch.as_tensor(X), torch.as_tensor(Y)), 16, shuffle=True, drop_last=False, seed=0
    )
    state = {k: v.clone() for k, v in model.state_dict().items()}
    rng = get_rng()
    dry_forward(model, [("train_data", batches), ("val_data", None)], torch.device("cpu"))
    after = get_rng()
    assert torch.equal(rng["torch"], after["torch"]) and rng["numpy"][2] == after["numpy"][2]
    assert model.training
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())


def test_dry_forward_keeps_seeded_runs_reproducible():
    a = fit(_mlp(), (X, Y), (X, Y), max_epochs=2, seed=3, stopper=False)
    b = fit(_mlp(), (X, Y), (X, Y), max_epochs=2, seed=3, stopper=False)
    assert [r["train_loss"] for r in a.history] == [r["train_loss"] for r in b.history]


def test_trainer_config_must_be_a_trainconfig():
    with pytest.raises(ConfigTypeError, match="config must be a TrainConfig, got str"):
        Trainer("adam")
    assert Trainer(TrainConfig(max_epochs=2), lr=0.1).config.lr == 0.1
    with pytest.raises(ConfigTypeError, match="unknown setting 'learning_rate': did you mean 'lr'"):
        Trainer(TrainConfig(), learning_rate=0.1)


# -- a loss that turns NaN at epoch 2 never leaves a non-finite epoch as the best --------------------------
class NanFrom:
    """Cross-entropy, NaN from epoch 2 on the training batches, the validation batches or both (3 batches each)."""

    def __init__(self, where: str) -> None:
        self.where, self.calls = where, {"train": 0, "val": 0}

    def __call__(self, out, target):
        loss = torch.nn.functional.cross_entropy(out, target)
        part = "train" if torch.is_grad_enabled() else "val"
        self.calls[part] += 1
        epoch = (self.calls[part] - 1) // 3 + 1
        return loss * math.nan if self.where in (part, "both") and epoch >= 2 else loss


STOPPERS = {
    "None": lambda m: None,
    "auto": lambda m: "auto",
    "early": lambda m: "early",
    "False": lambda m: False,
    "EarlyStopping": lambda m: S.EarlyStopping(m, "min", patience=2),
    "Forecast": lambda m: S.Forecast(m, "min", budget=6),
    "GeneralizationLoss": lambda m: S.GeneralizationLoss(5.0, m),
    "ProgressQuotient": lambda m: S.ProgressQuotient(0.5, 2, monitor=m, train_monitor="train_loss"),
    "UpStrips": lambda m: S.UpStrips(2, 2, monitor=m),
    "Retention": lambda m: S.Retention(m, 5.0, 10.0, mode="min"),
    "AnyOf": lambda m: S.AnyOf(S.EarlyStopping(m, "min", patience=2), S.UpStrips(2, 2, monitor=m)),
    "auto_stopper": lambda m: S.auto_stopper(m, "min", budget=6),
}


@pytest.mark.parametrize("where", ["train", "val", "both"])
@pytest.mark.parametrize("stopper", list(STOPPERS))
def test_nan_from_epoch_two_is_never_the_best(stopper, where):
    X3, y3 = _data(96)
    model = _mlp()
    result = fit(
        model,
        (X3, y3),
        (X3, y3),
        loss_fn=NanFrom(where),
        max_epochs=4,
        seed=0,
        stopper=STOPPERS[stopper]("val_loss"),
    )
    assert result.best_epoch == 1 and math.isfinite(result.best_value)
    assert result.best_value == result.history[0]["val_loss"]
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_nan_with_rollback_and_a_run_dir_restores_finite_best(tmp_path):
    X3, y3 = _data(96)
    model = _mlp()
    result = fit(
        model,
        (X3, y3),
        (X3, y3),
        loss_fn=NanFrom("both"),
        max_epochs=4,
        seed=0,
        on_nan="rollback",
        run_dir=tmp_path / "run",
    )
    assert result.best_epoch == 1
    assert all(torch.isfinite(p).all() for p in model.parameters())
    best = torch.load(tmp_path / "run" / "checkpoints" / "best" / "model.pt", weights_only=True)
    assert all(torch.isfinite(v).all() for v in best.values())


class Credulous(S.Policy):
    """A policy that calls every epoch an improvement, NaN included (a careless user policy)."""

    monitor, mode = "val_loss", "min"

    def update(self, epoch, metrics):
        value = float(metrics["val_loss"])
        return S.Decision(False, S.Reason.CONTINUE, True, epoch, value, "better")

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass


def test_a_policy_that_calls_nan_an_improvement_is_not_believed(caplog):
    X3, y3 = _data(96)
    model = _mlp()
    with caplog.at_level(logging.WARNING, logger="epochpilot"):
        result = fit(
            model,
            (X3, y3),
            (X3, y3),
            loss_fn=NanFrom("val"),
            max_epochs=3,
            seed=0,
            stopper=Credulous(),
        )
    assert result.best_epoch == 1 and math.isfinite(result.best_value)
    assert "epoch 2: not kept as the best, its val_loss is not finite" in caplog.text
    assert all(torch.isfinite(p).all() for p in model.parameters())
