"""``cooldown="on_stop"``: the stop policy's request starts a WSD cooldown; the run ends after its last update.

Data: the 96-point ``blobs`` (64 train rows, batch 8: 8 updates per epoch). The scripted policy fires at the
epoch its script says, so the cooldown's start and length are known exactly.
"""

from __future__ import annotations

import math
import warnings

import pytest
import torch

from epochpilot.core.schedules import WSD, parse
from epochpilot.core.stopping.base import Reason
from epochpilot.errors import ConfigError
from epochpilot.jobs.pipeline import JobSchedule
from epochpilot.jobs.spec import JobSpec, TrainSpec, override
from epochpilot.train import fit
from epochpilot.train.events import Callback

from .conftest import Improves, LrTrace

TIMING = ("epoch_time_s", "samples_per_s")
SPE = 8  # updates per epoch
STOP = {"stop": True, "reason": Reason.PATIENCE, "message": "val_loss stopped improving"}


def _fit(blobs, make_mlp, **kw):
    X, y = blobs
    args = dict(
        max_epochs=30,
        seed=0,
        batch_size=8,
        optimizer="sgd",
        lr=0.1,
        schedule=WSD(0.1, warmup_steps=4, shape="linear"),
        cooldown="on_stop",
        cooldown_fraction=0.5,
    )
    args.update(kw)
    return fit(make_mlp(), (X[:64], y[:64]), (X[64:], y[64:]), **args)


def _history(result) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in TIMING} for row in result.history]


def test_lr_trace_is_constant_then_the_cooldown_shape_to_zero(blobs, make_mlp, scripted):
    trace = LrTrace()
    # fires at epoch 5 (update 40) and again at 6: the second request is ignored while cooling
    r = _fit(blobs, make_mlp, stopper=scripted({5: STOP, 6: STOP}), callbacks=[trace])
    start, steps = 5 * SPE, 20  # 0.5 of the 40 updates so far: ends mid-epoch 8 (update 60)
    expected = WSD(0.1, warmup_steps=4, shape="linear").cooldown(start, steps)
    assert r.total_steps == start + steps
    assert trace.lrs == pytest.approx([expected(t) for t in range(1, start + steps + 1)], abs=1e-12)
    assert trace.lrs[start - 5 : start] == [0.1] * 5  # constant until the stopper fired
    assert trace.lrs[-1] == 0.0 and trace.lrs[-2] > 0.0  # the last update ends the cooldown at 0
    assert r.stop_reason is Reason.PATIENCE
    assert r.stop_message.startswith(
        "Stopped at epoch 8: the stopper fired at epoch 5 (val_loss stopped improving), then the "
        "learning rate was cooled down over 2.5 epochs (20 updates, linear). Kept epoch "
    )
    assert (
        "the learning rate was cooled down over 2.5 epochs (20 updates, linear)" in r.stop_message
    )
    assert r.epochs_trained == 7.5 and r.summary["epochs_trained"] == 7.5
    assert [row["epoch"] for row in r.history] == list(
        range(1, 9)
    )  # the partial epoch 8 is validated


def test_the_default_shape_is_1_sqrt_and_wsd_by_name(blobs, make_mlp, scripted):
    trace = LrTrace()
    r = _fit(blobs, make_mlp, schedule="wsd", stopper=scripted({4: STOP}), callbacks=[trace])
    total = 30 * SPE
    expected = WSD(0.1, warmup_steps=round(0.05 * total), shape="1-sqrt").cooldown(32, 16)
    assert trace.lrs == pytest.approx([expected(t) for t in range(1, 49)], abs=1e-12)
    assert "1-sqrt" in r.stop_message and r.total_steps == 48


def test_without_cooldown_the_stop_is_immediate(blobs, make_mlp, scripted):
    r = _fit(blobs, make_mlp, stopper=scripted({5: STOP}), cooldown=None)
    assert r.total_steps == 40 and r.epochs_trained == 5.0
    assert r.stop_message == "val_loss stopped improving" and r.kept_from == "trunk"


@pytest.mark.parametrize(
    ("improve", "kept", "where", "said"),
    [
        ((1, 7), 7, "cooldown from epoch 5", "from the cooldown started after epoch 5."),
        ((1, 3), 3, "trunk", "from before the cooldown."),
    ],
)
def test_best_weights_cover_the_cooldown(blobs, make_mlp, improve, kept, where, said):
    seen = {}

    class Grab(Callback):
        def on_epoch_end(self, state):
            params = state.optimizer.param_groups[0]["params"]
            seen[state.epoch] = [p.detach().clone() for p in params]

    r = _fit(blobs, make_mlp, stopper=Improves(improve, stop_at=5), callbacks=[Grab()])
    assert r.best_epoch == kept and r.kept_from == where and r.summary["kept_from"] == where
    assert f"Kept epoch {kept} (val_loss " in r.stop_message and r.stop_message.endswith(said)
    for got, want in zip(r.model.parameters(), seen[kept], strict=True):
        assert torch.equal(got, want)


def test_max_epochs_caps_the_cooldown_and_says_so(blobs, make_mlp, scripted):
    trace = LrTrace()
    r = _fit(blobs, make_mlp, max_epochs=6, stopper=scripted({5: STOP}), callbacks=[trace])
    assert r.total_steps == 48 and len(r.history) == 6
    assert (
        "the cooldown of 20 updates was shortened to the 8 left before max_epochs=6"
        in r.stop_message
    )
    assert trace.lrs[-1] == 0.0  # the shortened cooldown still reaches 0 on the last update
    r = _fit(blobs, make_mlp, max_epochs=5, stopper=scripted({5: STOP}))
    assert r.total_steps == 40
    assert r.stop_message.startswith(
        "Stopped at epoch 5: val_loss stopped improving; no updates were left before max_epochs=5 "
        "to cool the learning rate down. Kept epoch 5"
    )


def test_hard_stops_are_not_postponed(blobs, make_mlp, scripted):
    stop = {"stop": True, "reason": Reason.DIVERGENCE, "message": "diverged"}
    r = _fit(blobs, make_mlp, stopper=scripted({3: stop}))
    assert (
        r.total_steps == 24 and r.stop_reason is Reason.DIVERGENCE and r.stop_message == "diverged"
    )


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        (dict(cooldown="sometimes"), r"^cooldown='sometimes' is unknown: use 'sweep'"),
        (dict(cooldown_fraction=0), r"^cooldown_fraction must be in \(0, 1\]"),
        (dict(cooldown_fraction=1.5), r"^cooldown_fraction must be in \(0, 1\]"),
        (dict(cooldown_fraction=math.nan), r"^cooldown_fraction must be in \(0, 1\]"),
        (dict(cooldown_fraction=True), r"^cooldown_fraction must be in \(0, 1\]"),
        (
            dict(schedule="warmup(cosine)"),
            r"^cooldown='on_stop' needs a WSD schedule.*use schedule='wsd'$",
        ),
        (
            dict(schedule=None),
            r"^cooldown='on_stop' needs a WSD schedule to cool down, got no schedule",
        ),
        (dict(schedule=WSD(0.1).cooldown(5, 5)), r"^cooldown='on_stop' decides when"),
        (dict(stopper=False), r"^cooldown='on_stop' starts the cooldown when the stopper fires"),
    ],
)
def test_bad_config_is_one_line(blobs, make_mlp, kw, match):
    with pytest.raises(ConfigError, match=match) as info:
        _fit(blobs, make_mlp, max_epochs=2, **kw)
    assert "\n" not in str(info.value)


class Kill(Callback):
    def __init__(self, at: int) -> None:
        self.at = at

    def on_epoch_start(self, state):
        if state.epoch == self.at:
            raise KeyboardInterrupt  # a killed process, after the previous epoch's checkpoint


@pytest.mark.parametrize("every", [1, "4 steps"])
def test_resume_inside_the_cooldown_is_bitwise(blobs, make_mlp, scripted, tmp_path, every):
    kw = dict(stopper=scripted({5: STOP}), checkpoint_every=every, keep_last=50)
    whole = _fit(blobs, make_mlp, run_dir=tmp_path / "whole", **kw)
    with pytest.raises(KeyboardInterrupt):  # killed at the start of epoch 7: inside the cooldown
        _fit(blobs, make_mlp, run_dir=tmp_path / "cut", callbacks=[Kill(7)], **kw)
    kw["stopper"] = scripted({5: STOP})
    resumed = _fit(blobs, make_mlp, run_dir=tmp_path / "cut", resume="auto", **kw)
    assert resumed.total_steps == whole.total_steps == 60
    assert _history(resumed) == _history(whole)
    assert resumed.stop_message == whole.stop_message and resumed.kept_from == whole.kept_from
    for a, b in zip(
        resumed.model.state_dict().values(), whole.model.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b)


def test_deterministic(blobs, make_mlp, scripted):
    a = _fit(blobs, make_mlp, stopper=scripted({4: STOP}))
    b = _fit(blobs, make_mlp, stopper=scripted({4: STOP}))
    assert _history(a) == _history(b) and a.stop_message == b.stop_message
    for x, y in zip(a.model.state_dict().values(), b.model.state_dict().values(), strict=True):
        assert torch.equal(x, y)


def test_parse_wsd_names():
    assert parse("wsd", lr=0.1, total_steps=100) == WSD(0.1, warmup_steps=5, shape="1-sqrt")
    assert parse("warmup(wsd(cosine))", lr=0.1, total_steps=100, warmup_steps=7) == WSD(
        0.1, warmup_steps=7, shape="cosine"
    )
    assert parse("wsd", lr=0.1, total_steps=100, cooldown_shape="linear").shape == "linear"
    with pytest.raises(ValueError, match="cooldown shape must be one of linear, 1-sqrt, cosine"):
        parse("wsd(sqrt)", lr=0.1, total_steps=100)


def test_job_files_take_wsd_and_cooldown():
    assert JobSchedule("wsd", 0.1, 0.1)(200) == WSD(0.1, warmup_steps=20, shape="1-sqrt")
    spec = override(JobSpec(), "train", schedule="wsd", cooldown="on_stop", cooldown_fraction=0.3)
    assert spec.train.cooldown == "on_stop"
    with pytest.raises(ValueError, match=r"train.cooldown.*use schedule = \"wsd\""):
        TrainSpec(cooldown="on_stop")
    with pytest.raises(ValueError, match=r"train.cooldown_fraction.*must be in \(0, 1\]"):
        TrainSpec(schedule="wsd", cooldown_fraction=0.0)
    assert override(JobSpec(), "train", schedule="wsd", cooldown="sweep").train.cooldown == "sweep"
    assert override(JobSpec(), "train", extend=0.5).train.extend == 0.5
    with pytest.raises(ValueError, match=r"train.extend.*must be a share >= 0"):
        TrainSpec(extend=-1.0)


def test_the_cli_takes_sweep_and_extend(tmp_path):
    import json
    import subprocess
    import sys

    run = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "epochpilot", "train", "--builtin", "wine", "--max-epochs", "8",
         "--schedule", "wsd", "--cooldown", "sweep", "--extend", "0.5", "--no-tensorboard",
         "--run-dir", str(run)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((run / "summary.json").read_text())
    assert summary["cooldown"] == "sweep" and summary["branches"] and summary["max_epochs"] == 8
    assert "[train]" in (run / "config.toml").read_text()
    bad = subprocess.run(
        [sys.executable, "-m", "epochpilot", "train", "--builtin", "wine", "--extend", "-1"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert bad.returncode == 2 and "--extend" in bad.stderr and "\n" not in bad.stderr.strip()


def test_schedule_lr_resumes_the_cooled_schedule():
    from epochpilot.train.lr import to_torch

    def opt():
        return torch.optim.SGD(torch.nn.Linear(2, 1).parameters(), lr=0.1)

    base = WSD(0.1, warmup_steps=2)
    first = to_torch(base, opt())
    first.schedule = base.cooldown(10, 5)  # the cooldown decided at run time
    for _ in range(12):
        first.optimizer.step()
        first.step()
    again = to_torch(base, opt())
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the same schedule, cooled: no "different schedule" warning
        again.load_state_dict(first.state_dict())
    assert again.schedule == base.cooldown(10, 5)
    assert again.optimizer.param_groups[0]["lr"] == first.optimizer.param_groups[0]["lr"] < 0.1
    other = to_torch(WSD(0.2), opt())
    with pytest.warns(UserWarning, match="different schedule"):
        other.load_state_dict(first.state_dict())
    assert other.schedule == WSD(0.2)


def test_a_job_with_the_forecast_stopper_and_extend_may_extend():
    from epochpilot.jobs.pipeline import _stopper

    spec = override(JobSpec(), "train", stopper="forecast", extend=0.5, max_epochs=20)
    assert _stopper(spec).forecast.max_extension == 0.5
    plain = override(JobSpec(), "train", stopper="forecast", max_epochs=20)
    assert _stopper(plain).forecast.max_extension == 0.0
