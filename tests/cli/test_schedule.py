"""``epochpilot schedule``: prints key points and writes a plot."""

from __future__ import annotations


def test_schedule_prints_and_plots(cli, tmp_path):
    proc = cli("schedule", "warmup(cosine)", "--steps", "200", "--lr", "0.1", "--plot", "lr.png")
    assert proc.returncode == 0, proc.stderr
    assert "peak lr 0.1 at step 10" in proc.stdout
    assert "step     199" in proc.stdout
    png = tmp_path / "lr.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_every_command_has_help_with_examples(cli):
    for command in [
        "demo",
        "train",
        "predict",
        "evaluate",
        "resume",
        "report",
        "compare",
        "schedule",
    ]:
        proc = cli(command, "--help")
        assert proc.returncode == 0, proc.stderr
        assert "examples:" in proc.stdout, command
