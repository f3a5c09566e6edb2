"""``fit(run_dir=...)`` writes report.html like the adapters do (``report=False`` turns it off), on rank 0 only,
and a report that cannot be written is one warning line, never a failed fit."""

from __future__ import annotations

import logging

import pytest
import torch

import epochpilot.report
from epochpilot.train import distributed as D
from epochpilot.train import fit
from epochpilot.train import trainer as trainer_module


@pytest.fixture
def data():
    torch.manual_seed(0)
    X, y = torch.randn(64, 4), torch.randint(0, 2, (64,))
    return (X[:48], y[:48]), (X[48:], y[48:])


def model() -> torch.nn.Module:
    torch.manual_seed(1)
    return torch.nn.Linear(4, 2)


def test_fit_writes_the_report_with_what_ran(tmp_path, data):
    train, val = data
    result = fit(
        model(), train, val, max_epochs=3, seed=0, progress=False, run_dir=tmp_path / "r",
        optimizer=lambda p: torch.optim.Adadelta(p, lr=1.0),
    )  # fmt: skip
    assert result.report == tmp_path / "r" / "report.html" and result.report.is_file()
    html = result.report.read_text()
    assert "<html" in html and (tmp_path / "r" / "plots").is_dir()
    # the config card reads config.toml: it shows what ran, not the settings' defaults
    assert "torch.optim.Adadelta" in html and "EarlyStopping(monitor=" in html
    assert "[optimizer]" in html and "[stopper]" in html


def test_report_false_writes_none(tmp_path, data):
    train, val = data
    result = fit(
        model(), train, val, max_epochs=1, progress=False, run_dir=tmp_path / "r", report=False
    )
    assert result.report is None and not (tmp_path / "r" / "report.html").exists()
    assert result.summary["settings"]["report"] is False


def test_no_run_dir_no_report(data, monkeypatch):
    calls = []
    monkeypatch.setattr(epochpilot.report, "write_report", lambda *a, **k: calls.append(a))
    train, val = data
    assert fit(model(), train, val, max_epochs=1, progress=False).report is None and calls == []


def test_report_setting_is_checked_and_not_hashed(tmp_path, data):
    from epochpilot.errors import ConfigError

    train, val = data
    with pytest.raises(ConfigError, match="report must be True or False"):
        fit(model(), train, val, report="no")
    kw = dict(max_epochs=1, seed=0, progress=False, run_dir=tmp_path / "r")
    fit(model(), train, val, report=False, **kw)
    again = fit(model(), train, val, report=True, resume="auto", **dict(kw, max_epochs=2))
    assert len(again.history) == 2 and again.report is not None  # same run: report is not hashed


def test_a_failed_report_is_a_warning_and_its_hint_works(tmp_path, data, monkeypatch, caplog):
    real = epochpilot.report.write_report

    def broken(run_dir, **kwargs):
        raise RuntimeError("matplotlib is\nbroken")

    monkeypatch.setattr(epochpilot.report, "write_report", broken)
    train, val = data
    with caplog.at_level(logging.WARNING, logger="epochpilot"):
        result = fit(model(), train, val, max_epochs=2, progress=False, run_dir=tmp_path / "r")
    assert len(result.history) == 2 and result.report is None  # the fit went through
    (line,) = [r.getMessage() for r in caplog.records if "report.html" in r.getMessage()]
    assert "matplotlib is broken" in line and "report=False" in line and "\n" not in line
    monkeypatch.setattr(epochpilot.report, "write_report", real)
    call = line.split("write it with ", 1)[1].split(", or", 1)[0]
    assert call.startswith("epochpilot.write_report(")
    import epochpilot as ep

    written = eval(call, {"epochpilot": ep})  # the hint, as written
    assert written.is_file() and written.name == "report.html"


def test_only_rank_0_writes_the_report(tmp_path, data, monkeypatch):
    calls = []
    monkeypatch.setattr(epochpilot.report, "write_report", lambda *a, **k: calls.append(a))
    monkeypatch.setattr(
        trainer_module.D, "setup", lambda device: (D.DistInfo(rank=1), torch.device("cpu"))
    )
    train, val = data
    result = fit(model(), train, val, max_epochs=1, progress=False, run_dir=tmp_path / "r")
    assert result.report is None and calls == []
