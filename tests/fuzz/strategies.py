"""Hypothesis strategies for what a user (or an attacker) hands epochpilot: CSVs, TOML jobs, flag values.

Every strategy draws a ``(description, payload)`` pair: the description goes into the failure message, so a
finding can be reproduced from the report alone.
"""

from __future__ import annotations

import json
import math
from typing import Any

from hypothesis import strategies as st

FEATURES = ("a", "b", "c")
TARGET = "label"


# ----------------------------------------------------------------------------------------------- CSV


def good_rows(n: int = 40, *, classes: int = 2, width: int = 3, seed: int = 0) -> list[list[str]]:
    """``n`` clean rows: ``width`` numeric features and an integer class label (deterministic)."""
    rows = []
    for i in range(n):
        feats = [f"{math.sin(seed + i * (j + 1.3)):.4f}" for j in range(width)]
        rows.append([*feats, str(i % classes)])
    return rows


def to_csv(header: list[str], rows: list[list[str]], sep: str = ",") -> str:
    """Plain CSV text (no quoting: the fuzzer decides what is in the cells)."""
    return "\n".join(sep.join(r) for r in [header, *rows]) + "\n"


def good_csv_text(n: int = 40, **kwargs: Any) -> str:
    """A CSV every command accepts: columns a, b, c and label."""
    return to_csv([*FEATURES, TARGET], good_rows(n, **kwargs))


_cell = st.one_of(
    st.sampled_from(
        [
            "",
            " ",
            "nan",
            "NaN",
            "inf",
            "-inf",
            "Infinity",
            "1e999",
            "-1e999",
            "1e308",
            "abc",
            "TRUE",
            "0x1F",
            "1,5",
            "null",
            "None",
            "\u00e9t\u00e9",
            "\ufffd",
            "'",
            '"',
        ]
    ),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(-(10**30), 10**30).map(str),
    st.text(max_size=8),
)


@st.composite
def _ragged(draw: st.DrawFn) -> tuple[str, bytes]:
    rows = good_rows(draw(st.integers(3, 30)))
    for i in draw(st.lists(st.integers(0, len(rows) - 1), min_size=1, max_size=4, unique=True)):
        cut = draw(st.integers(0, 6))
        rows[i] = (rows[i] + ["9"] * 6)[:cut]
    return "ragged rows", to_csv([*FEATURES, TARGET], rows).encode()


@st.composite
def _cells(draw: st.DrawFn) -> tuple[str, bytes]:
    """Junk in some cells (inf, NaN, text, huge numbers), in features or in the label."""
    rows = good_rows(draw(st.integers(4, 30)))
    hits = draw(
        st.lists(
            st.tuples(st.integers(0, len(rows) - 1), st.integers(0, 3)), min_size=1, max_size=6
        )
    )
    junk = []
    for r, c in hits:
        value = draw(_cell).replace("\n", " ").replace("\r", " ").replace(",", ";")
        rows[r][c] = value
        junk.append((r, c, value))
    return f"junk cells {junk}", to_csv([*FEATURES, TARGET], rows).encode()


@st.composite
def _inf_nan(draw: st.DrawFn) -> tuple[str, bytes]:
    rows = good_rows(draw(st.integers(6, 30)))
    value = draw(st.sampled_from(["inf", "-inf", "nan", "1e999", "-1e999"]))
    column = draw(st.integers(0, 2))
    count = draw(st.integers(1, len(rows)))
    for row in rows[:count]:
        row[column] = value
    return f"{value} in {count} rows of column {FEATURES[column]}", to_csv(
        [*FEATURES, TARGET], rows
    ).encode()


@st.composite
def _duplicate_columns(draw: st.DrawFn) -> tuple[str, bytes]:
    header = [*FEATURES, TARGET]
    dup = draw(st.sampled_from(header))
    position = draw(st.integers(0, len(header)))
    header.insert(position, dup)
    rows = [r[:position] + ["1.0"] + r[position:] for r in good_rows(draw(st.integers(5, 30)))]
    return f"duplicate column {dup!r}", to_csv(header, rows).encode()


@st.composite
def _many_columns(draw: st.DrawFn) -> tuple[str, bytes]:
    n = draw(st.sampled_from([300, 2_000, 20_000]))
    header = [f"feature_{i:05d}" for i in range(n)]
    with_target = draw(st.booleans())
    if with_target:
        header.append(TARGET)
    rows = [["0.5"] * n + (["1" if i % 2 else "0"] if with_target else []) for i in range(6)]
    return f"{n} columns, target {'present' if with_target else 'absent'}", to_csv(
        header, rows
    ).encode()


@st.composite
def _encoding(draw: st.DrawFn) -> tuple[str, bytes]:
    header = [*FEATURES, TARGET]
    if draw(st.booleans()):
        header[0] = "\u00e4\u00df\u00e7"  # non-ASCII column name
    text = to_csv(header, good_rows(draw(st.integers(4, 20))))
    encoding = draw(
        st.sampled_from(["utf-16", "utf-16-le", "utf-32", "latin-1", "cp1252", "utf-8-sig"])
    )
    return f"{encoding}-encoded CSV", text.encode(encoding)


@st.composite
def _binary(draw: st.DrawFn) -> tuple[str, bytes]:
    blob = draw(st.binary(min_size=1, max_size=300))
    prefix = draw(
        st.sampled_from([b"", b"a,b,c,label\n", b"\x89PNG\r\n\x1a\n", b"PK\x03\x04", b"\x00\x00"])
    )
    return f"binary bytes {prefix + blob[:40]!r}...", prefix + blob


@st.composite
def _quoted(draw: st.DrawFn) -> tuple[str, bytes]:
    rows = good_rows(draw(st.integers(3, 20)))
    junk = draw(
        st.sampled_from(
            ['"unclosed', '"a""b', '"multi\nline"', "\x00", '"1,2,3"', "'q'", '""', '"\r"']
        )
    )
    rows[draw(st.integers(0, len(rows) - 1))][draw(st.integers(0, 3))] = junk
    return f"quoted junk {junk!r}", to_csv([*FEATURES, TARGET], rows).encode()


@st.composite
def _shape(draw: st.DrawFn) -> tuple[str, bytes]:
    kind = draw(
        st.sampled_from(
            [
                "empty",
                "header only",
                "one row",
                "blank lines",
                "no target",
                "one class",
                "target only",
                "semicolons",
                "no header",
                "whitespace",
                "feature all text",
                "single column",
            ]
        )
    )
    header = [*FEATURES, TARGET]
    text = {
        "empty": "",
        "header only": to_csv(header, []),
        "one row": to_csv(header, good_rows(1)),
        "blank lines": "\n\n\n",
        "no target": to_csv(list(FEATURES), [r[:3] for r in good_rows(10)]),
        "one class": to_csv(header, good_rows(10, classes=1)),
        "target only": to_csv([TARGET], [[str(i % 2)] for i in range(10)]),
        "semicolons": to_csv(header, good_rows(10), sep=";"),
        "no header": to_csv(good_rows(1)[0], good_rows(10)),
        "whitespace": "   \n \t \n",
        "feature all text": to_csv(header, [["x", "y", "z", str(i % 2)] for i in range(10)]),
        "single column": to_csv(["a"], [["1"]] * 10),
    }[kind]
    return kind, text.encode()


#: Broken (and a few merely odd) CSV files: ``(description, bytes)``.
broken_csv = st.one_of(
    _shape(),
    _ragged(),
    _cells(),
    _inf_nan(),
    _duplicate_columns(),
    _many_columns(),
    _encoding(),
    _binary(),
    _quoted(),
)


# ----------------------------------------------------------------------------------------------- TOML


def toml_value(value: Any) -> str:
    """``value`` as a TOML literal (inline tables and arrays included)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(value)


def toml_text(tables: dict[str, dict[str, Any]]) -> str:
    """A TOML document of ``[section]`` tables."""
    parts = []
    for section, values in tables.items():
        parts.append(f"[{section}]")
        parts.extend(f"{key} = {toml_value(v)}" for key, v in values.items())
        parts.append("")
    return "\n".join(parts)


#: Values of every TOML type, with the edges of each: the wrong type for most keys.
any_value = st.one_of(
    st.sampled_from(
        [
            0,
            -1,
            1,
            2,
            -(2**63),
            2**63 - 1,
            10**9,
            0.0,
            -0.5,
            0.5,
            1.5,
            1e-300,
            1e300,
            math.nan,
            math.inf,
            -math.inf,
            True,
            False,
            "",
            "abc",
            "10min",
            "-1",
            "1e3",
            "auto",
            "cuda",
            "cuda:7",
            "mps",
            "cpu",
            "16",
            "bf16",
            "none",
            "../../etc/passwd",
            "\u00e9",
            [],
            [1, 2],
            ["a"],
            [[1]],
            {},
            {"x": 1},
        ]
    ),
    st.integers(),
    st.floats(),
    st.text(max_size=12),
)


def job_keys() -> dict[str, list[str]]:
    """Every key the job file knows, by section (read from the spec dataclasses)."""
    import dataclasses

    from epochpilot.jobs.spec import SECTIONS

    keys = {s: [f.name for f in dataclasses.fields(cls)] for s, cls in SECTIONS.items()}
    keys["model"] = ["factory", "hidden", "dropout"]
    return keys


@st.composite
def job_toml(draw: st.DrawFn, csv: str, run_dir: str) -> tuple[str, str, list[str]]:
    """A job file on a good CSV with one to three fuzzed entries: wrong types, unknown keys and sections,
    out-of-range values. Returns (description, text, the names an error must mention)."""
    keys = job_keys()
    tables: dict[str, dict[str, Any]] = {
        "data": {"csv": csv, "target": TARGET},
        "train": {"max_epochs": 2, "batch_size": 8, "tensorboard": False, "progress": False},
        "run": {"dir": run_dir},
    }
    names: list[str] = []
    edits = []
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["value", "value", "value", "unknown key", "unknown section"]))
        if kind == "value":
            section = draw(st.sampled_from(sorted(keys)))
            key = draw(st.sampled_from(keys[section]))
        elif kind == "unknown key":
            section = draw(st.sampled_from(sorted(keys)))
            key = draw(
                st.sampled_from(
                    ["max_epoch", "lr_rate", "epochs", "batchsize", "x", "Dir", "seeds"]
                )
            )
        else:
            section = draw(st.sampled_from(["trian", "model.extra", "Data", "optimizer", "x"]))
            key = "value"
        value = draw(any_value)
        if (
            section == "train"
            and key in ("max_epochs", "patience")
            and isinstance(value, int)
            and value > 50
        ):
            value = 50  # a long but valid budget would only cost time
        if section == "train" and key == "max_steps" and isinstance(value, int) and value > 200:
            value = 200
        if section == "data" and key == "n_samples" and isinstance(value, int) and value > 10**6:
            value = 10**6
        tables.setdefault(section, {})[key] = value
        edits.append(f"[{section}] {key} = {toml_value(value)}")
        names.extend([key, section])
    return "; ".join(edits), toml_text(tables), names


@st.composite
def broken_toml(draw: st.DrawFn, csv: str) -> tuple[str, str]:
    """Syntax errors: truncation, bad quoting, duplicate keys or tables, binary, another format."""
    good = toml_text({"data": {"csv": csv, "target": TARGET}, "train": {"max_epochs": 2}})
    kind = draw(
        st.sampled_from(
            [
                "truncated",
                "duplicate key",
                "duplicate table",
                "unclosed string",
                "no value",
                "binary",
                "json",
                "yaml",
                "random text",
                "bare key junk",
            ]
        )
    )
    text = {
        "truncated": good[: draw(st.integers(1, len(good) - 2))],
        "duplicate key": good + "max_epochs = 3\n",
        "duplicate table": good + "[data]\ncsv = 'x.csv'\n",
        "unclosed string": good.replace(f'"{csv}"', f'"{csv}'),
        "no value": good + "lr =\n",
        "binary": draw(st.binary(min_size=1, max_size=80)).decode("latin-1"),
        "json": json.dumps({"data": {"csv": csv}}),
        "yaml": f"data:\n  csv: {csv}\n",
        "random text": draw(st.text(min_size=1, max_size=80)),
        "bare key junk": good + "[train]]\n",
    }[kind]
    return kind, text


# ----------------------------------------------------------------------------------------------- flags

int_values = st.one_of(
    st.sampled_from([-(2**63), -1000, -5, -1, 0, 1, 2, 3, 2**31, 2**63, 10**30]),
    st.integers(-50, 50),
)
float_values = st.one_of(
    st.sampled_from(
        ["nan", "inf", "-inf", "-1", "0", "-0.0", "1e-300", "1e300", "0.5", "1", "1.5", "2", "100"]
    ),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
)
text_values = st.one_of(
    st.sampled_from(
        [
            "",
            " ",
            "-",
            "--",
            "x",
            "0",
            "-1",
            "nan",
            "none",
            "auto",
            "cosine",
            "warmup(cosine)",
            "warmup(",
            "cosine)",
            "step(0)",
            "1e9s",
            "-5min",
            "0s",
            "10min",
            "\u00e9",
            "a" * 300,
            "label",
            "a",
            "a,b",
            "NAME=float:1:2",
            "lr=float:-1:0",
            "lr=bogus",
            "=",
            "sqlite:///x.db",
            "postgresql://nobody@127.0.0.1:1/x",
        ]
    ),
    st.text(min_size=0, max_size=16).filter(lambda s: not s.startswith("-") or s in ("-", "--")),
)
