"""The package layout holds its import rules (issue 16), read from the source with ``ast`` (nothing is imported
for the rules; only the old-path test imports).

What counts as an import of module ``a`` by module ``b``: every ``import``/``from ... import`` statement in
``b`` at module level, inside functions and methods, and under ``if TYPE_CHECKING:``, plus every
``importlib.import_module("epochpilot....")`` call with a literal name. All count alike, so a lazy import
inside a function cannot hide a cycle: the graph is the one a reader sees. ``from p import x`` counts as an
import of ``p.x`` when ``p.x`` is a module, else of ``p``. The ``__init__`` of a parent package that Python runs
on the way is not counted (else every package would look cyclic with the submodules its ``__init__``
re-exports). The old-path shims (``SHIMS``) are outside the graph: no module of the package may import one.
"""

from __future__ import annotations

import ast
import importlib
import pathlib
import types
from functools import cache

import pytest

SRC = pathlib.Path(__file__).resolve().parents[1] / "src"
ROOT = SRC / "epochpilot"

#: old module path -> where it lives now; each old path is a thin shim (or the new package itself).
SHIMS = {
    "epochpilot.budget": "epochpilot.core.budget",
    "epochpilot.plan": "epochpilot.core.plan",
    "epochpilot.scores": "epochpilot.core.scores",
    "epochpilot.curves": "epochpilot.core.curves.analysis",
    "epochpilot._curvediag": "epochpilot.core.curves.diagnosis",
    "epochpilot._curvemath": "epochpilot.core.curves.curvemath",
    "epochpilot.plateau": "epochpilot.core.schedules.plateau",
    "epochpilot.schedules": "epochpilot.core.schedules",
    "epochpilot.schedules.core": "epochpilot.core.schedules.core",
    "epochpilot.schedules.factory": "epochpilot.core.schedules.factory",
    "epochpilot.schedules.presets": "epochpilot.core.schedules.presets",
    "epochpilot.schedules.wsd": "epochpilot.core.schedules.wsd",
    "epochpilot.stopping": "epochpilot.core.stopping",
    **{
        f"epochpilot.stopping.{m}": f"epochpilot.core.stopping.{m}"
        for m in (
            "_curvefit",
            "_forecast_words",
            "_prior",
            "_prior_weights",
            "auto",
            "base",
            "combine",
            "cooldown",
            "early",
            "forecast",
            "prechelt",
            "retention",
            "smoothing",
            "wording",
        )
    },
    "epochpilot._csv": "epochpilot.data.csvfile",
    "epochpilot.textdata": "epochpilot.data.text",
    "epochpilot.audit": "epochpilot.data.audit.report",
    "epochpilot.audit_load": "epochpilot.data.audit.load",
    "epochpilot.audit_near": "epochpilot.data.audit.near",
    "epochpilot.audit_render": "epochpilot.data.audit.render",
    "epochpilot.job": "epochpilot.jobs.spec",
    "epochpilot._jobcheck": "epochpilot.jobs.check",
    "epochpilot.models": "epochpilot.jobs.models",
    "epochpilot.pipeline": "epochpilot.jobs.pipeline",
    "epochpilot.predictor": "epochpilot.jobs.predictor",
    "epochpilot.tune": "epochpilot.select.tune.run",
    **{
        f"epochpilot.tune_{m}": f"epochpilot.select.tune.{m}"
        for m in ("cv", "judge", "make", "pruner", "space", "storage", "study", "workers")
    },
    "epochpilot.mixed": "epochpilot.finetune.mixed",
    "epochpilot._stages": "epochpilot.finetune.stages",
    "epochpilot.finetune_probe": "epochpilot.finetune.probe",
}

#: old paths that became a package of the same name: the package re-exports the old module's public names.
BECAME_PACKAGE = {
    "epochpilot.select": "epochpilot.select.kfold",
    "epochpilot.data": "epochpilot.data.table",
    "epochpilot.finetune": "epochpilot.finetune.encoder",
}

#: top-level modules shared by every package: standard library only (they import only ``epochpilot.errors``).
LEAVES = {"epochpilot.errors", "epochpilot._files", "epochpilot._duration"}

#: imports that break a layer rule on purpose, each with why (cycles are never allowed).
ALLOWED = {
    (
        "epochpilot.train.result",
        "epochpilot.report",
    ): "fit(run_dir=...) ends by writing report.html; a lazy "
    "import inside write_run_report, and report imports nothing from train, so no cycle",
    (
        "epochpilot.__main__",
        "epochpilot.cli.main",
    ): "``python -m epochpilot`` is the command line itself",
}

#: files allowed over MAX_LINES, each with why it was not split.
MAX_LINES = 400
LONG = {}

TORCH_SIDE = (
    "torch",
    "lightning",
    "pytorch_lightning",
    "transformers",
    "peft",
    "keras",
    "matplotlib",
)


def _name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def _files() -> dict[str, pathlib.Path]:
    return {_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _modules() -> list[str]:
    """Every module of the package except the old-path shims."""
    return [m for m in _files() if m not in SHIMS]


def _resolve(module: str, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".")
    if _files()[module].name != "__init__.py":
        base = base[:-1]
    base = base[: len(base) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


@cache
def _imports(module: str) -> tuple[str, ...]:
    """Every module ``module`` imports (see the module docstring for what counts), third-party ones included."""
    found: list[str] = []
    for node in ast.walk(ast.parse(_files()[module].read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(module, node)
            found += [
                f"{base}.{a.name}" if f"{base}.{a.name}" in _files() else base for a in node.names
            ]
        elif (
            isinstance(node, ast.Call)
            and ast.unparse(node.func).endswith("import_module")
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            found.append(node.args[0].value)
    return tuple(sorted(set(found) - {module}))


def _internal(module: str) -> list[str]:
    return [m for m in _imports(module) if m.split(".")[0] == "epochpilot" and m != "epochpilot"]


def _package(module: str) -> str:
    """``epochpilot.core.stopping.early`` -> ``core``; a top-level module -> its own name."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _cycles() -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), over the non-shim modules."""
    graph = {m: [t for t in _internal(m) if t in _files() and t not in SHIMS] for m in _modules()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles() -> None:
    assert _cycles() == []


def test_core_is_pure() -> None:
    """core imports no torch-side library and no epochpilot module outside core but the shared ``errors``."""
    bad = []
    for m in _modules():
        if _package(m) != "core":
            continue
        for t in _imports(m):
            top = t.split(".")[0]
            if top in TORCH_SIDE or (
                top == "epochpilot" and _package(t) != "core" and t != "epochpilot.errors"
            ):
                bad.append(f"{m} imports {t}")
    assert bad == []


def test_nothing_imports_cli() -> None:
    bad = [
        f"{m} imports {t}"
        for m in _modules()
        if _package(m) != "cli"
        for t in _internal(m)
        if _package(t) == "cli" and (m, t) not in ALLOWED
    ]
    assert bad == []


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        ("train", {"jobs", "select", "finetune", "report", "cli"}),
        ("data", {"jobs", "select", "finetune", "report", "cli", "integrations"}),
        ("jobs", {"select", "finetune", "cli", "integrations"}),
    ],
)
def test_layers(package: str, forbidden: set[str]) -> None:
    bad = [
        f"{m} imports {t}"
        for m in _modules()
        if _package(m) == package
        for t in _internal(m)
        if _package(t) in forbidden and (m, t) not in ALLOWED
    ]
    assert bad == []


def test_leaves_import_only_errors() -> None:
    bad = [f"{m} imports {t}" for m in LEAVES for t in _internal(m) if t != "epochpilot.errors"]
    assert bad == []


def test_no_module_imports_an_old_path() -> None:
    """Inside the package, imports go to where a module lives now; the shims are for users only."""
    bad = [f"{m} imports {t}" for m in _modules() for t in _internal(m) if t in SHIMS]
    assert bad == []


def test_root_holds_only_the_api_and_leaves() -> None:
    top = {m for m in _files() if m.count(".") == 1 and _files()[m].name != "__init__.py"}
    assert top - set(SHIMS) - LEAVES == {"epochpilot.__main__"}


def test_modules_stay_short() -> None:
    long = {
        p.relative_to(SRC).as_posix(): n
        for p in ROOT.rglob("*.py")
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert {p: n for p, n in long.items() if p not in LONG} == {}
    assert set(LONG) <= set(long), "a file in LONG is now short: take it off the list"


def _public(module: types.ModuleType) -> dict[str, object]:
    """``__all__`` plus every other public function, class or constant the module defines itself."""
    names = set(getattr(module, "__all__", ()))
    for name, value in vars(module).items():
        if name.startswith("_") or isinstance(value, types.ModuleType):
            continue
        if getattr(value, "__module__", None) == module.__name__ or (
            name.isupper() and not callable(value)
        ):
            names.add(name)
    return {n: getattr(module, n) for n in sorted(names)}


@pytest.mark.parametrize(("old", "new"), sorted({**SHIMS, **BECAME_PACKAGE}.items()))
def test_old_paths_still_import(old: str, new: str) -> None:
    """Every old module path still imports, and its public names are the very objects of the new module."""
    old_module, new_module = importlib.import_module(old), importlib.import_module(new)
    if (
        old_module is new_module
    ):  # a module shim hands back the module itself: every name, private ones too
        return
    public = _public(new_module)
    assert public, new
    for name, value in public.items():
        assert getattr(old_module, name) is value, f"{old}.{name}"


def test_module_shims_stay_thin() -> None:
    """A module shim only hands back the new module: no code of its own to keep in step."""
    thick = []
    for old in SHIMS:
        path = _files()[old]
        text = path.read_text(encoding="utf-8")
        if path.name != "__init__.py" and (
            len(text.splitlines()) > 10 or "def " in text or "class " in text
        ):
            thick.append(old)
    assert thick == []
