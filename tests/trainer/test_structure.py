"""The trainer only wires: it never chooses behaviour by comparing with a name, and objectives/ never imports it."""

from __future__ import annotations

import ast
from pathlib import Path

import lco

SRC = Path(lco.__file__).parent


def _is_str(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and isinstance(node.value, str)


def test_trainer_compares_with_no_string_literal():
    tree = ast.parse((SRC / "trainer" / "trainer.py").read_text())
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare) and any(_is_str(n) for n in (node.left, *node.comparators)):
            found.append(f"line {node.lineno}: {ast.unparse(node)}")
        # dispatch by a dict of strings: {"name": value, ...}[key], or {"name": self.method, ...}
        if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Dict):
            if any(key is not None and _is_str(key) for key in node.value.keys):
                found.append(f"line {node.lineno}: {ast.unparse(node)[:60]}")
        if isinstance(node, ast.Dict) and node.values:
            methods = all(
                isinstance(v, ast.Attribute) and ast.unparse(v.value) == "self" for v in node.values
            )
            if methods and all(key is not None and _is_str(key) for key in node.keys):
                found.append(f"line {node.lineno}: {ast.unparse(node)[:60]}")
    assert not found, "trainer.py chooses behaviour by a name; put it on a registry row:\n" + "\n".join(found)


def test_objectives_import_nothing_from_the_trainer_not_even_inside_functions():
    found = []
    for path in (SRC / "objectives").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                module = node.module or ""
                upward = node.level >= 2 and module.split(".")[0] == "trainer"
                if upward or module.startswith("lco.trainer"):
                    found.append(f"{path.name}:{node.lineno}")
            elif isinstance(node, ast.Import):
                found += [
                    f"{path.name}:{node.lineno}" for a in node.names if a.name.startswith("lco.trainer")
                ]
    assert not found, f"objectives/ imports lco.trainer at {found}"
