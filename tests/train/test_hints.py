"""Every hint in an error message works: each test triggers a refusal, reads the ways out it names, and runs
each one as written (a hint that suggests a call the docs say refuses, like ``resume='auto'`` for a changed
config, fails here)."""

from __future__ import annotations

import ast
import logging
import re
import shutil
from pathlib import Path

import pytest
import torch

from epochpilot.errors import CheckpointError, ConfigError, EpochpilotError
from epochpilot.train import fit

#: "pass name=value", "use name=value", "give name=value", and "name=value or VALUE" in a hint
_KWARG = re.compile(
    r"\b(?:pass|use|give) (\w+)=('[^']*'|True|False|\d+)(?: or ('[^']*'|True|False))?"
)


@pytest.fixture
def data():
    torch.manual_seed(0)
    X, y = torch.randn(64, 4), torch.randint(0, 2, (64,))
    return (X[:48], y[:48]), (X[48:], y[48:])


def model() -> torch.nn.Module:
    torch.manual_seed(1)
    return torch.nn.Linear(4, 2)


BASE = dict(seed=0, progress=False, report=False, max_epochs=2)


def suggested(message: str, run_dir: Path | None = None) -> list[dict]:
    """The settings each way out in ``message`` asks for, one dict per way."""
    ways = []
    for m in _KWARG.finditer(message):
        name = m.group(1)
        for value in filter(None, (m.group(2), m.group(3))):
            ways.append({name: ast.literal_eval(value)})
    if run_dir is not None and "use another run_dir" in message:
        ways.append({"run_dir": run_dir.parent / f"{run_dir.name}-other"})
    return ways


def refusal(call, error=ConfigError) -> str:
    with pytest.raises(error) as err:
        call()
    text = str(err.value)
    assert "\n" not in text
    return text


def fresh_copy(run_dir: Path, tmp_path: Path, i: int) -> Path:
    target = tmp_path / f"copy{i}" / run_dir.name
    shutil.copytree(run_dir, target)
    return target


def try_each(ways, tmp_path, run_dir, call) -> None:
    """Run ``call(**way)`` for every way, each on its own copy of the run directory."""
    assert ways
    for i, way in enumerate(ways):
        copy = fresh_copy(run_dir, tmp_path, i)
        way = {k: (copy.parent / v.name if k == "run_dir" else v) for k, v in way.items()}
        result = call(**{"run_dir": copy, **way})
        assert result.history, way


# -- the run directory ----------------------------------------------------------------------------------------
@pytest.fixture
def run(tmp_path, data) -> Path:
    train, val = data
    fit(model(), train, val, run_dir=tmp_path / "run", lr=0.01, **BASE)
    return tmp_path / "run"


def refit(data, lr=0.01, **settings):
    train, val = data
    return fit(model(), train, val, **{**BASE, "lr": lr, **settings})


def test_a_changed_config_suggests_what_continues_it(run, data, tmp_path):
    """The issue's bug: the changed-config refusal suggested resume='auto', which refuses a changed config."""
    for resume in (False, "auto"):
        text = refusal(lambda r=resume: refit(data, lr=0.02, run_dir=run, resume=r, max_epochs=3))
        assert "differs in lr" in text and "resume='auto'" not in text
        ways = suggested(text, run)
        assert {"resume": True} in ways and {"overwrite": True} in ways and len(ways) == 3
        try_each(
            ways, tmp_path / str(resume), run, lambda **kw: refit(data, lr=0.02, max_epochs=3, **kw)
        )


def test_the_same_config_suggests_resume_auto(run, data, tmp_path):
    text = refusal(lambda: refit(data, run_dir=run, max_epochs=3))
    ways = suggested(text, run)
    assert {"resume": "auto"} in ways and len(ways) == 3
    try_each(ways, tmp_path, run, lambda **kw: refit(data, max_epochs=3, **kw))


def test_a_damaged_config_suggests_what_works(run, data, tmp_path):
    (run / "config.toml").write_text("[train]\nlr = 0.01\n")  # cut short: no [run] config_hash
    for resume in (False, "auto"):
        text = refusal(lambda r=resume: refit(data, run_dir=run, resume=r, max_epochs=3))
        assert "restore the file" in text and "resume='auto'" not in text
        ways = suggested(text, run)
        assert {"resume": True} in ways
        try_each(ways, tmp_path / str(resume), run, lambda **kw: refit(data, max_epochs=3, **kw))


def test_a_run_without_config_suggests_what_works(run, data, tmp_path):
    (run / "config.toml").unlink()
    for resume in (False, "auto"):
        text = refusal(lambda r=resume: refit(data, run_dir=run, resume=r, max_epochs=3))
        assert "different config" not in text and "resume='auto'" not in text
        try_each(suggested(text, run), tmp_path / str(resume), run,
                 lambda **kw: refit(data, max_epochs=3, **kw))  # fmt: skip


def test_resume_true_without_a_run(tmp_path, data):
    empty = tmp_path / "empty"
    text = refusal(lambda: refit(data, run_dir=empty, resume=True))
    ways = suggested(text)
    assert ways == [{"resume": "auto"}, {"resume": False}]
    for i, way in enumerate(ways):
        assert refit(data, run_dir=tmp_path / f"e{i}", **way).history


def test_resume_true_without_run_dir(tmp_path, data, run, monkeypatch):
    monkeypatch.chdir(tmp_path)
    text = refusal(lambda: refit(data, resume=True))
    assert suggested(text) == [{"run_dir": "runs/NAME"}] and "or a checkpoint path" in text
    assert refit(
        data, run_dir="runs/NAME", resume="auto"
    ).history  # run_dir given: resume has a place
    checkpoint = run / "checkpoints" / "epoch-0002"
    assert len(refit(data, resume=checkpoint, max_epochs=3).history) == 3  # or a checkpoint path


def test_resume_true_without_a_checkpoint(tmp_path, data):
    train, val = data
    run = tmp_path / "nock"
    refit(data, run_dir=run, checkpoint_every=0)
    text = refusal(lambda: refit(data, run_dir=run, checkpoint_every=0, resume=True))
    assert suggested(text) == [{"resume": "auto"}]
    assert refit(data, run_dir=run, checkpoint_every=0, resume="auto").history
    text = refusal(lambda: refit(data, lr=0.5, run_dir=run, checkpoint_every=0, resume=True))
    ways = suggested(text, run)
    assert {"resume": "auto"} not in ways and {"overwrite": True} in ways
    try_each(ways, tmp_path, run, lambda **kw: refit(data, lr=0.5, checkpoint_every=0, **kw))


def test_a_weights_only_checkpoint_names_the_ones_to_use(run, data):
    text = refusal(
        lambda: refit(data, resume=run / "checkpoints" / "best", max_epochs=3), CheckpointError
    )
    assert "resume from an epoch- or step- checkpoint" in text
    epoch = sorted((run / "checkpoints").glob("epoch-*"))[-1]
    assert len(refit(data, resume=epoch, max_epochs=3).history) == 3


def test_no_usable_checkpoint_suggests_starting_again(run, data, tmp_path):
    for model_file in (run / "checkpoints").glob("*/model.pt"):
        model_file.write_bytes(b"damaged")
    text = refusal(lambda: refit(data, run_dir=run, resume="auto", max_epochs=3), CheckpointError)
    ways = suggested(text, run)
    assert ways == [{"overwrite": True}]
    try_each(ways, tmp_path, run, lambda **kw: refit(data, max_epochs=3, **kw))


# -- settings ---------------------------------------------------------------------------------------------
def test_an_unknown_setting_names_the_field(data):
    text = refusal(lambda: refit(data, epochs=2))
    name = re.search(r"did you mean '(\w+)'", text).group(1)
    assert name == "max_epochs" and refit(data, **{name: 2}).history


def test_the_optimizer_factory_example_works(data):
    text = refusal(lambda: refit(data, optimizer=lambda: torch.optim.SGD))
    example = re.search(r"e\.g\. (lambda p: torch\.optim\.SGD\(p, lr=0\.1\))", text).group(1)
    assert refit(data, optimizer=eval(example)).history


@pytest.mark.skipif(torch.cuda.is_available(), reason="the refusals are for machines without CUDA")
def test_cuda_settings_on_a_cpu_machine(data):
    text = refusal(lambda: refit(data, precision="16-mixed"))
    for value in re.search(r"use '([\w-]+)' or '(\w+)'", text).groups():
        assert refit(data, precision=value).history
    text = refusal(lambda: refit(data, device="cuda"))
    ways = suggested(text)
    assert ways == [{"device": "cpu"}, {"device": "auto"}]
    for way in ways:
        assert refit(data, **way).history


def test_val_every_steps_without_validation_data(data):
    train, val = data
    text = refusal(lambda: fit(model(), train, val_every_steps=1, **BASE))
    assert "pass validation data or drop val_every_steps" in text
    assert fit(model(), train, val, val_every_steps=1, **BASE).history
    assert fit(model(), train, **BASE).history


def test_cooldown_hints(data):
    text = refusal(lambda: refit(data, cooldown="on_stop"))
    (way,) = suggested(text)
    assert way == {"schedule": "wsd"} and refit(data, cooldown="on_stop", **way).history
    text = refusal(lambda: refit(data, schedule="wsd", cooldown="sweep", val_every_steps=1))
    assert "drop val_every_steps" in text and suggested(text) == [{"cooldown": "on_stop"}]
    assert refit(data, schedule="wsd", cooldown="sweep").history
    assert refit(data, schedule="wsd", cooldown="on_stop", val_every_steps=1).history


def test_a_monitor_no_row_has(data):
    from epochpilot.core.stopping import EarlyStopping

    stopper = EarlyStopping("val_accuracy", "max", patience=3)
    text = refusal(lambda: refit(data, stopper=stopper))
    assert "add the metric to metrics= or monitor one of those" in text and "val_loss" in text
    assert refit(data, stopper=stopper, metrics=["accuracy"]).history
    assert refit(data, stopper=EarlyStopping("val_loss", "min", patience=3)).history


def test_every_refusal_here_is_an_epochpilot_error():
    """The hints above come from epochpilot's errors (one line each), never from a bare exception."""
    assert issubclass(ConfigError, EpochpilotError) and issubclass(CheckpointError, EpochpilotError)


# -- the command line -------------------------------------------------------------------------------------
def test_cli_hints_run_as_written(tmp_path, monkeypatch, caplog):
    """`epochpilot train` twice: the refusal says --resume, which continues; with other settings --resume is
    refused naming --overwrite and another --run-dir, both of which work."""
    from epochpilot.cli import main
    from epochpilot.data.table import write_builtin_csv

    monkeypatch.chdir(tmp_path)
    write_builtin_csv("wine", tmp_path / "wine.csv")
    args = ["train", "--data", "wine.csv", "--target", "target", "--max-epochs", "2",
            "--no-tensorboard", "--run-dir", "runs/w"]  # fmt: skip

    def cli(*extra: str) -> tuple[int, str]:
        import contextlib
        import io

        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = main([*args, *extra])
        return code, err.getvalue()

    with caplog.at_level(logging.WARNING):
        assert cli()[0] == 0
        code, text = cli()
        assert code == 2 and "pass --resume to continue it" in text
        assert cli("--resume", "--max-epochs", "3")[0] == 0
        code, text = cli("--resume", "--lr", "0.5")
        assert code == 2 and "different config" in text and "--resume" not in text.split(":", 2)[-1]
        assert "pass --overwrite to replace it" in text and "use another --run-dir" in text
        assert cli("--lr", "0.5", "--overwrite")[0] == 0
        assert cli("--lr", "0.5", "--run-dir", "runs/other")[0] == 0


# -- help(epochpilot.fit) ---------------------------------------------------------------------------------
def test_help_fit_lists_every_setting_with_its_default_and_meaning():
    import dataclasses
    import doctest
    import pydoc

    import epochpilot
    from epochpilot.train.config import TrainConfig
    from epochpilot.train.settings import MEANINGS

    text = pydoc.render_doc(epochpilot.fit, renderer=pydoc.plaintext)
    lines = [line.strip() for line in text.splitlines()]
    fields = dataclasses.fields(TrainConfig)
    assert set(MEANINGS) == {
        f.name for f in fields
    }  # a meaning for each field, none for a gone one
    for f in fields:
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        (line,) = [line for line in lines if line.startswith(f"{f.name}=")]
        meaning = line.removeprefix(f"{f.name}={default!r}")
        assert meaning != line and meaning.strip() == MEANINGS[f.name], f.name
    finder = doctest.DocTestFinder(verbose=False, recurse=False)
    (test,) = finder.find(epochpilot.fit, "fit", globs={})
    result = doctest.DocTestRunner().run(test, out=lambda _: None)
    assert result.attempted == 5 and result.failed == 0  # the example at the end still runs


def test_the_settings_table_in_the_docs_lists_every_setting():
    """docs/training.md's table of fit settings says what ``help(epochpilot.fit)`` says, row for row."""
    import dataclasses
    from pathlib import Path

    from epochpilot.train.config import TrainConfig
    from epochpilot.train.settings import MEANINGS, _default

    page = Path(__file__).resolve().parents[2] / "docs" / "training.md"
    rows = [line for line in page.read_text().splitlines() if line.startswith("| `")]
    want = [
        f"| `{f.name}` | `{_default(f)!r}` | {MEANINGS[f.name]} |"
        for f in dataclasses.fields(TrainConfig)
    ]
    assert [r for r in rows if r in want] == want, "regenerate the table from settings.MEANINGS"
