"""A real labelled text data set available offline: Debian's fortune databases, one category per file.

``apt-get install -y fortunes`` installs them under ``/usr/share/games/fortunes/`` (``%``-separated entries);
the category (file name) is the label, e.g. ``computers`` vs ``politics`` vs ``science``. Nothing is downloaded
at run time and nothing here is invented: every text is an entry of those files.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from epochpilot.errors import short_list

__all__ = ["FORTUNES_DIR", "INSTALL_HINT", "TextSet", "fortune_categories", "load_fortunes"]

FORTUNES_DIR = Path("/usr/share/games/fortunes")
INSTALL_HINT = "install Debian's fortune databases: apt-get install -y fortunes"


@dataclass(frozen=True)
class TextSet:
    """Texts with integer labels; ``classes[label]`` names a label."""

    texts: list[str]
    labels: np.ndarray
    classes: list[str]

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, index: Sequence[int] | np.ndarray) -> TextSet:
        """The rows at ``index`` (same classes)."""
        idx = np.asarray(index, dtype=np.int64)
        return TextSet([self.texts[i] for i in idx], self.labels[idx], self.classes)

    def split(self, *sizes: int, seed: int = 0) -> list[TextSet]:
        """Disjoint stratified parts of the given sizes (each class keeps its share), shuffled by ``seed``."""
        if sum(sizes) > len(self):
            raise ValueError(
                f"split sizes {sizes} need {sum(sizes)} texts, only {len(self)} available"
            )
        rng = np.random.default_rng(seed)
        per_class = [
            rng.permutation(np.flatnonzero(self.labels == c)) for c in range(len(self.classes))
        ]
        # interleave the classes so that every prefix of the order is stratified
        keys = np.concatenate(
            [(np.arange(len(p)) + rng.random()) / max(len(p), 1) for p in per_class]
        )
        order = np.concatenate(per_class)[np.argsort(keys, kind="stable")]
        parts, start = [], 0
        for size in sizes:
            parts.append(self.subset(order[start : start + size]))
            start += size
        return parts


def fortune_categories(root: str | Path = FORTUNES_DIR) -> dict[str, int]:
    """Category name -> number of entries, for every fortune file under ``root``."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"no fortune databases at {root}: {INSTALL_HINT}")
    out = {}
    for file in sorted(root.iterdir()):
        if file.is_file() and not file.suffix and not file.is_symlink():
            out[file.name] = len(_entries(file))
    return out


def _entries(file: Path) -> list[str]:
    text = file.read_bytes().decode("utf-8", errors="replace")
    return [
        entry.strip() for entry in re.split(r"^%\s*$", text, flags=re.MULTILINE) if entry.strip()
    ]


def load_fortunes(
    categories: Sequence[str],
    *,
    root: str | Path = FORTUNES_DIR,
    min_chars: int = 20,
    max_chars: int = 400,
) -> TextSet:
    """Entries of the given fortune ``categories`` as a labelled :class:`TextSet` (label = category index).

    Whitespace is collapsed; entries shorter than ``min_chars`` or longer than ``max_chars`` (ASCII art, long
    stories) are dropped. A missing directory or category raises FileNotFoundError with the install command.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"no fortune databases at {root}: {INSTALL_HINT}")
    texts: list[str] = []
    labels: list[int] = []
    for label, name in enumerate(categories):
        file = root / name
        if not file.is_file():
            known = short_list(sorted(fortune_categories(root)), 8, quote=False)
            raise FileNotFoundError(
                f"fortune category {name!r} not found in {root} (have: {known})"
            )
        for entry in _entries(file):
            flat = " ".join(entry.split())
            if min_chars <= len(flat) <= max_chars:
                texts.append(flat)
                labels.append(label)
    return TextSet(texts, np.asarray(labels, dtype=np.int64), list(categories))
