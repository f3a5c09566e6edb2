"""What makes training harder than validation in a run, read from its job.toml and config.toml.

Dropout, augmentation, label smoothing or label noise act in training only, so a train loss measured with them
on can sit above the validation loss (a negative generalization gap). The curve analysis names what it finds
here when it explains such a gap (:func:`epochpilot.core.curves.analysis.analyze`'s ``regularisers``).
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

__all__ = ["TRAIN_ONLY", "regularisers"]

#: parts of a setting's name that make training harder than validation when the setting is on
TRAIN_ONLY = (
    "dropout",
    "drop_path",
    "label_smoothing",
    "label_noise",
    "augment",
    "mixup",
    "cutmix",
)
_OFF = {"", "none", "off", "false", "no", "0"}
_IN_TEXT = re.compile(r"(label_smoothing|dropout)=([0-9.eE+-]+)")


def _on(value: Any) -> bool:
    """A setting that is on: a finite number > 0, true, or a text other than none/off/false."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return math.isfinite(value) and value > 0
    return isinstance(value, str) and value.strip().lower() not in _OFF


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return math.nan


def regularisers(run_dir: Path, config: dict[str, Any] | None = None) -> list[str]:
    """What acts in training only in the run at ``run_dir``, each as ``"dropout 0.1 (job.toml [model]
    dropout)"``: keys of job.toml (the CLI's job, read here) and of ``config`` (config.toml, already parsed)
    naming one of :data:`TRAIN_ONLY` that are on, and ``label_smoothing=x`` / ``dropout=x`` inside a
    setting's text (a loss written out as its repr). A setting found in both files is named once."""
    docs: list[tuple[str, Any]] = []
    job = Path(run_dir) / "job.toml"
    if job.is_file():
        try:
            docs.append(("job.toml", tomllib.loads(job.read_text(encoding="utf-8"))))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
            pass  # only a hint for the advice: the commands that run the job report a damaged job.toml
    docs.append(("config.toml", config))
    found: dict[str, str] = {}  # "dropout 0.1" -> with where it was found

    def add(what: str, value: Any, where: str) -> None:
        head = f"{what.replace('_', ' ')} {'on' if value is True else value}"
        found.setdefault(head, f"{head} ({where})")

    def walk(name: str, table: dict[str, Any], path: list[str]) -> None:
        for key, value in table.items():
            if isinstance(value, dict):
                walk(name, value, [*path, str(key)])
                continue
            where = f"{name} [{'.'.join(path)}] {key}" if path else f"{name} {key}"
            low = str(key).lower()
            if any(part in low for part in TRAIN_ONLY):
                if _on(value):
                    add(low, value, where)
            elif isinstance(value, str):
                for what, number in _IN_TEXT.findall(value):
                    if _number(number) > 0:
                        add(what, number, where)

    for name, doc in docs:
        if isinstance(doc, dict):
            walk(name, doc, [])
    return list(found.values())
