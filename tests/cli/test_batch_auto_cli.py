"""``--batch-size auto``, ``--effective-batch``, ``--on-oom``, ``--lr-scaling`` from the command line and the job
file: parsed, checked in one line naming the flag or key (exit 2, nothing written), planned with the effective
batch, passed to ``fit``; ``epochpilot plan --find-batch`` measures the batch and plans with it."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from epochpilot.jobs.spec import JobSpec, TrainSpec, spec_from_tables

WINE = ["--builtin", "wine", "--no-tensorboard"]


def one_line(proc, code: int = 2) -> str:
    """The single stderr line of a refused command (asserting the exit code, no traceback)."""
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    return lines[0]


def files_in(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


# --- bad input: one line naming the flag and the fix, exit 2, nothing written ---------------------------------


@pytest.mark.parametrize(
    "argv, expected",
    [
        (
            ["train", *WINE, "--batch-size", "auto"],
            "--batch-size is 'auto', which needs effective_batch (the samples per optimizer update): "
            "add effective_batch = 64 (--effective-batch 64)",
        ),
        (
            ["train", *WINE, "--batch-size", "big"],
            "--batch-size must be an integer >= 1 or 'auto', got 'big'",
        ),
        (["train", *WINE, "--batch-size", "0"], "--batch-size must be >= 1, got 0"),
        (
            ["train", *WINE, "--batch-size", "auto", "--effective-batch", "0"],
            "--effective-batch must be >= 1, got 0",
        ),
        (
            ["train", *WINE, "--effective-batch", "many"],
            "--effective-batch must be an integer, got 'many'",
        ),
        (
            ["train", *WINE, "--batch-size", "32", "--effective-batch", "48"],
            "--effective-batch must be a multiple of batch_size 32, got 48: use effective_batch = 64 "
            "or batch_size = 'auto'",
        ),
        (
            ["train", *WINE, "--batch-size", "32", "--effective-batch", "16"],
            "--effective-batch must be a multiple of batch_size 32, got 16",
        ),
        (
            ["train", *WINE, "--lr-scaling", "linear"],
            "--lr-scaling is 'linear', which needs reference_batch (the batch the lr was chosen for)",
        ),
        (
            ["train", *WINE, "--reference-batch", "32"],
            "--reference-batch is set but lr_scaling is not",
        ),
        (["train", *WINE, "--reference-batch", "0"], "--reference-batch must be >= 1, got 0"),
        (
            ["train", *WINE, "--on-oom", "shrnk"],
            "--on-oom: invalid choice 'shrnk': did you mean 'shrink'?",
        ),
        (
            ["cv", *WINE, "--batch-size", "auto", "--folds", "2"],
            "--batch-size is 'auto', which needs effective_batch",
        ),
        (
            ["tune", *WINE, "--effective-batch", "64", "--space", "batch_size=choice:16,32"],
            "batch_size in the search space: the job sets effective_batch = 64",
        ),
        (
            ["plan", "wine", "--find-batch", "--batch-size", "8"],
            "--batch-size and --find-batch are both given: drop --batch-size",
        ),
        (
            ["plan", "1000", "--find-batch"],
            "--find-batch needs the data, not a sample count",
        ),
        (
            ["plan", "wine", "--max-batch", "8"],
            "--max-batch is for the batch search: add --find-batch",
        ),
        (["plan", "wine", "--find-batch", "--max-batch", "0"], "--max-batch must be >= 1, got 0"),
        (
            ["plan", "wine", "--effective-batch", "60", "--batch-size", "16"],
            "--effective-batch 60 must be a multiple of --batch-size 16",
        ),
        (
            ["plan", "wine", "--find-batch", "--mode", "lora"],
            "--find-batch measures a full training step: drop --mode lora",
        ),
    ],
)
def test_bad_batch_flags_are_one_line(cli, tmp_path, argv, expected):
    line = one_line(cli(*argv))
    assert expected in line, line
    assert files_in(tmp_path) == set()


@pytest.mark.parametrize(
    "train, expected",
    [
        (
            'batch_size = "auto"',
            "[train] batch_size in job.toml is 'auto', which needs effective_batch",
        ),
        (
            'batch_size = "big"\neffective_batch = 64',
            "[train] batch_size in job.toml must be an integer >= 1 or 'auto', got 'big'",
        ),
        ("batch_size = 2.5", "[train] batch_size in job.toml must be an integer >= 1 or 'auto'"),
        (
            'batch_size = "auto"\neffective_batch = 0',
            "[train] effective_batch in job.toml must be >= 1, got 0",
        ),
        (
            'batch_size = "auto"\neffective_batch = 64\naccumulation = 2',
            "[train] accumulation in job.toml is 2 but effective_batch 64 sets the accumulation",
        ),
        ('on_oom = "retry"', "[train] on_oom in job.toml must be one of 'shrink', 'raise'"),
        (
            'lr_scaling = "sqrt"',
            "[train] lr_scaling in job.toml is 'sqrt', which needs reference_batch",
        ),
    ],
)
def test_bad_batch_keys_name_the_key_and_the_file(cli, tmp_path, train, expected):
    (tmp_path / "job.toml").write_text(f'[data]\nbuiltin = "wine"\n[train]\n{train}\n')
    line = one_line(cli("train", "job.toml"))
    assert expected in line, line
    assert not (tmp_path / "runs").exists()


def test_an_effective_batch_above_the_training_rows_is_refused(cli, tmp_path):
    line = one_line(cli("train", *WINE, "--batch-size", "auto", "--effective-batch", "1000"))
    assert "effective_batch 1000 > 142 training rows: lower --effective-batch (e.g. 35)" in line
    assert not (tmp_path / "runs").exists()


def test_a_flag_fixes_a_job_file_that_needs_it(cli, tmp_path):
    """``batch_size = "auto"`` in the file, the effective batch from the flag: checked together."""
    (tmp_path / "job.toml").write_text('[data]\nbuiltin = "wine"\n[train]\nbatch_size = "auto"\n')
    from epochpilot.cli.main import build_parser
    from epochpilot.cli.train import spec_from_args

    args = build_parser().parse_args(["train", "job.toml", "--effective-batch", "32"])
    spec = spec_from_args(args)
    assert (spec.train.batch_size, spec.train.effective_batch) == ("auto", 32)


# --- what the job plans and passes to fit ---------------------------------------------------------------------


def test_the_updates_are_counted_with_the_effective_batch():
    auto = TrainSpec(batch_size="auto", effective_batch=64)
    given = TrainSpec(batch_size=16, effective_batch=64)
    plain = TrainSpec(batch_size=16, accumulation=2)
    assert auto.update_batch() == (64, 1)
    assert given.update_batch() == (16, 4)
    assert plain.update_batch() == (16, 2)
    scaled = TrainSpec(
        batch_size="auto", effective_batch=128, lr=1e-3, lr_scaling="sqrt", reference_batch=32
    )
    assert scaled.scaled_lr() == pytest.approx(2e-3)
    linear = TrainSpec(batch_size=16, effective_batch=64, lr_scaling="linear", reference_batch=32)
    assert linear.scaled_lr() == pytest.approx(2e-3)
    assert TrainSpec(lr_scaling="none").batch_settings()["lr_scaling"] is None


def test_plan_and_trainer_settings_use_the_effective_batch():
    from epochpilot.jobs.pipeline import plan_train, trainer_kwargs

    tables = {"data": {"builtin": "wine"}, "train": {"batch_size": "auto", "effective_batch": 32}}
    spec = spec_from_tables(tables)
    _, p = plan_train(spec, 142)
    assert (p.batch_size, p.steps_per_epoch) == (32, math.ceil(142 / 32))
    kw = trainer_kwargs(spec, 142, True)
    assert (kw["batch_size"], kw["accumulation"], kw["effective_batch"]) == ("auto", 1, 32)
    assert (kw["on_oom"], kw["lr_scaling"], kw["reference_batch"]) == ("shrink", None, None)
    given = spec_from_tables({"train": {"batch_size": 8, "effective_batch": 32}})
    kw = trainer_kwargs(given, 142, True)
    assert (kw["batch_size"], kw["accumulation"], kw["effective_batch"]) == (8, 4, 32)
    assert JobSpec().train.batch_settings()["effective_batch"] is None


# --- epochpilot plan --find-batch -----------------------------------------------------------------------------


def test_plan_finds_the_batch_and_plans_with_it(cli):
    proc = cli("plan", "wine", "--find-batch", "--effective-batch", "64", "--max-batch", "16")
    assert proc.returncode == 0, proc.stderr
    assert (
        "batch_size=16 x accumulation=4 = effective batch 64 (goal=memory, device=" in proc.stdout
    )
    assert "samples/s" in proc.stdout
    proc = cli(
        "plan", "wine", "--find-batch", "--effective-batch", "64", "--max-batch", "16", "--json"
    )
    assert proc.returncode == 0, proc.stderr
    record = json.loads(proc.stdout)
    batch = record["batch"]
    assert (batch["batch_size"], batch["accumulation"], batch["effective_batch"]) == (16, 4, 64)
    assert batch["samples_per_s"] > 0 and batch["goal"] == "memory"
    assert {t["batch"] for t in batch["tried"]} >= {1, 2, 4, 8, 16}
    assert record["batch_size"] == 16
    assert record["steps_per_epoch"] == math.ceil(178 / 64)  # counted with the effective batch


def test_plan_finds_a_batch_for_a_small_effective_batch(cli):
    proc = cli("plan", "wine", "--find-batch", "--effective-batch", "12", "--json")
    assert proc.returncode == 0, proc.stderr
    batch = json.loads(proc.stdout)["batch"]
    assert (batch["batch_size"], batch["accumulation"]) == (12, 1)


def test_plan_without_an_effective_batch_keeps_the_planned_one(cli):
    proc = cli("plan", "wine", "--find-batch", "--max-batch", "8", "--json")
    assert proc.returncode == 0, proc.stderr
    record = json.loads(proc.stdout)
    planned = json.loads(cli("plan", "wine", "--json").stdout)
    batch = record["batch"]
    assert batch["effective_batch"] == planned["batch_size"]
    assert batch["batch_size"] * batch["accumulation"] == planned["batch_size"]
    assert record["steps_per_epoch"] == planned["steps_per_epoch"]


def test_plan_effective_batch_without_a_search_counts_updates_with_it(cli):
    record = json.loads(cli("plan", "1000", "--effective-batch", "100", "--json").stdout)
    assert (record["batch_size"], record["steps_per_epoch"]) == (100, 10)
    record = json.loads(
        cli("plan", "1000", "--effective-batch", "100", "--batch-size", "25", "--json").stdout
    )
    assert (record["batch_size"], record["steps_per_epoch"]) == (25, 10)


# --- end to end: the choice in summary.json, the job file kept as written ------------------------------------


def test_train_auto_keeps_the_effective_batch(cli, tmp_path):
    proc = cli(
        "train", *WINE, "--batch-size", "auto", "--effective-batch", "64", "--max-epochs", "2"
    )
    assert proc.returncode == 0, proc.stderr
    run = tmp_path / "runs" / "wine"
    summary = json.loads((run / "summary.json").read_text())
    batch = summary["batch"]
    assert batch["chosen"] == "auto" and batch["effective_batch"] == 64
    assert batch["micro_batch"] * batch["accumulation"] == 64 and batch["shrinks"] == []
    assert batch["samples_per_s"] > 0
    assert (
        f"micro-batch {batch['micro_batch']} x {batch['accumulation']} = effective batch 64 (auto)"
        in (proc.stdout)
    )  # the summary table says what ran
    assert summary["steps_per_epoch"] == math.ceil(
        142 / 64
    )  # updates counted with the effective batch
    assert "142 samples / batch 64" in summary["budget"]
    job = (run / "job.toml").read_text()
    assert 'batch_size = "auto"' in job and "effective_batch = 64" in job  # what `resume` re-runs


def test_train_given_batch_with_accumulation_scaling_and_on_oom(cli, tmp_path):
    (tmp_path / "job.toml").write_text(
        '[data]\nbuiltin = "wine"\n[train]\nbatch_size = 16\nmax_epochs = 2\ntensorboard = false\n'
        'lr_scaling = "sqrt"\nreference_batch = 16\n'
    )
    proc = cli("train", "job.toml", "--effective-batch", "64", "--on-oom", "raise")
    assert proc.returncode == 0, proc.stderr
    run = tmp_path / "runs" / "wine"
    batch = json.loads((run / "summary.json").read_text())["batch"]
    assert (batch["chosen"], batch["micro_batch"], batch["accumulation"]) == ("given", 16, 4)
    assert batch["lr_factor"] == pytest.approx(2.0)  # sqrt(64 / 16)
    assert 'on_oom = "raise"' in (run / "config.toml").read_text()


def test_cv_searches_the_batch_once_for_every_fold(cli, tmp_path):
    proc = cli(
        "cv", *WINE, "--batch-size", "auto", "--effective-batch", "32", "--folds", "2",
        "--max-epochs", "2",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "batch: micro-batch 32 x accumulation 1 = effective batch 32" in proc.stdout
    assert (tmp_path / "runs" / "wine-cv" / "selection.json").is_file()


# --- a device limit, simulated: a model that runs out of memory above a batch -----------------------------------

LIMITED_MODEL = '''
import torch


class Limited(torch.nn.Module):
    """A linear model that raises torch.OutOfMemoryError when it trains on a batch above LIMIT rows, as a
    small GPU would (evaluation, without gradients, needs far less memory)."""

    def __init__(self, n_features, n_outputs, limit):
        super().__init__()
        self.net = torch.nn.Linear(n_features, n_outputs)
        self.limit = limit

    def forward(self, x):
        if self.training and len(x) > self.limit:
            raise torch.OutOfMemoryError(f"out of memory: {len(x)} rows")
        return self.net(x)


def make(n_features, n_outputs, limit=8):
    return Limited(n_features, n_outputs, limit)
'''


@pytest.fixture
def limited(tmp_path):
    """A model factory (``NAME:make``) in the working directory, under a name no other test imported."""
    name = f"limited_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(LIMITED_MODEL)
    return f"{name}:make"


def test_plan_finds_the_device_limit(cli, limited):
    proc = cli("plan", "wine", "--model", limited, "--effective-batch", "64", "--json")
    assert proc.returncode == 0, proc.stderr
    batch = json.loads(proc.stdout)["batch"]
    assert (batch["batch_size"], batch["accumulation"], batch["effective_batch"]) == (8, 8, 64)
    assert {"batch": 16, "outcome": "oom"} in [
        {k: t[k] for k in ("batch", "outcome")} for t in batch["tried"]
    ]


def test_train_auto_finds_the_device_limit(cli, tmp_path, limited):
    (tmp_path / "job.toml").write_text(
        f'model = "{limited}"\n[data]\nbuiltin = "wine"\n[train]\nbatch_size = "auto"\n'
        "effective_batch = 64\nmax_epochs = 2\ntensorboard = false\n"
    )
    proc = cli("train", "job.toml")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((tmp_path / "runs" / "wine" / "summary.json").read_text())
    batch = summary["batch"]
    assert (batch["micro_batch"], batch["accumulation"], batch["effective_batch"]) == (8, 8, 64)
    assert summary["steps_per_epoch"] == math.ceil(142 / 64)  # the same updates as without a limit


def test_a_model_that_does_not_fit_at_one_sample_is_one_line(cli, tmp_path, limited):
    fix = "the model does not fit in memory at min_batch=1 on "  # cpu, or cuda:0 on a GPU machine
    (tmp_path / "job.toml").write_text(
        f'[data]\nbuiltin = "wine"\n[model]\nfactory = "{limited}"\nlimit = 0\n'
        '[train]\nbatch_size = "auto"\neffective_batch = 64\ntensorboard = false\n'
    )
    assert fix in one_line(cli("train", "job.toml", "--run-dir", "runs/zero"))
    zero = f"zero_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{zero}.py").write_text(LIMITED_MODEL.replace("limit=8", "limit=0"))
    assert fix in one_line(cli("plan", "wine", "--model", f"{zero}:make"))
