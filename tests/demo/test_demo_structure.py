"""Issue 21, item 5: a flat demo — no import circle in ``lco.demo`` (function-level imports included), no
stage that imports another stage (they share :mod:`lco.demo.runtime`), no private name borrowed across
modules, and pool jobs that carry the function itself."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import lco.demo
from lco.demo.pool import Job

ROOT = Path(lco.demo.__file__).parent
PACKAGE = "lco.demo"
STAGES = {"lco.demo.warmup", "lco.demo.reward_model", "lco.demo.rl", "lco.demo.evaluate"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join([PACKAGE, *parts])


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in ROOT.rglob("*.py")}


def _imports(name: str, path: Path, known: set[str]) -> list[tuple[str, list[str]]]:
    """(imported module inside lco.demo, names taken from it) for every import statement, at any depth."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(a.name, []) for a in node.names if a.name in known]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names = [a.name for a in node.names]
            if target in known:
                found.append((target, names))
            # `from . import x` imports the module x
            found += [(f"{target}.{n}", []) for n in names if f"{target}.{n}" in known]
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {name: {t for t, _ in _imports(name, path, known) if t != name} for name, path in modules.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_cycle_finder_finds_a_planted_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_circle_in_the_demo_function_level_imports_included():
    graph = _graph()
    assert "lco.demo.plan" in graph and "lco.demo.runtime" in graph
    assert _cycle(graph) is None, " → ".join(_cycle(graph))


def test_no_stage_imports_another_stage_and_the_report_imports_none():
    graph = _graph()
    for name, targets in graph.items():
        if name in STAGES:
            assert not (targets & STAGES), (name, targets & STAGES)
        if name.startswith("lco.demo.report"):
            assert not (targets & STAGES), (name, targets & STAGES)


def test_no_private_name_is_borrowed_from_another_module():
    modules = _modules()
    known = set(modules)
    borrowed = [
        (name, target, n)
        for name, path in modules.items()
        for target, names in _imports(name, path, known)
        for n in names
        if n.startswith("_") and target != name
    ]
    assert borrowed == []


def test_the_plan_and_the_report_do_not_import_the_recipe():
    graph = _graph()
    assert "lco.demo.recipe" not in graph["lco.demo.plan"]
    assert "lco.demo.recipe" not in graph["lco.demo.report.study"]


def test_a_job_names_its_function_itself():
    with pytest.raises(ValueError, match="function itself"):
        Job("lco.demo.rl:train_policy")
    assert Job(len).function is len
