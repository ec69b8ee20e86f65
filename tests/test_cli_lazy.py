"""Issue 13: ``lco --help`` loads no heavy library (it took 6–7 s importing TRL), and lists every command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from lco.cli import COMMANDS, build_parser

HEAVY = ("torch", "transformers", "trl", "datasets")


def _modules_after(argv: list[str]) -> tuple[list[str], float]:
    """The heavy modules loaded by ``lco ARGV`` in a fresh interpreter, and its wall time."""
    code = (
        "import json, sys\n"
        "from lco.cli import main\n"
        f"try:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]), file=sys.stderr)\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": "1"}
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stderr.strip().splitlines()[-1]), time.perf_counter() - start


def test_lco_help_loads_nothing_heavy():
    loaded, seconds = _modules_after(["--help"])
    assert loaded == []
    assert seconds < 5.0  # ≈ 0.1 s idle; the bound only catches a heavy import on a shared machine


@pytest.mark.parametrize("command", ["train"])
def test_a_sub_command_help_does_not_load_trl(command):
    loaded, _ = _modules_after([command, "--help"])
    assert "trl" not in loaded and "torch" not in loaded


def test_every_command_is_listed_with_its_modules_help():
    parser = build_parser("all")
    subparsers = next(a for a in parser._actions if isinstance(a, type(parser._subparsers._group_actions[0])))
    helps = {action.dest: action.help for action in subparsers._choices_actions}
    assert helps == {name: help_text for name, (_, help_text) in COMMANDS.items()}
