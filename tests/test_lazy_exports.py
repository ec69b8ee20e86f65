"""The packages' public names (lco/_lazy.py): one list per package, imported on first use."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import types

import pytest

from lco._lazy import lazy_exports

HEAVY = ("torch", "transformers", "trl")


def test_importing_the_packages_loads_nothing_heavy():
    code = (
        "import json, sys\n"
        "import lco, lco.objectives, lco.trainer, lco.eval, lco.demo\n"
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []


@pytest.mark.parametrize("package", ["lco", "lco.objectives"])
def test_every_public_name_is_the_object_its_module_defines(package):
    module = importlib.import_module(package)
    for name in module.__all__:
        value = getattr(module, name)
        assert name in dir(module)
        if isinstance(value, types.ModuleType):
            assert value.__name__ == f"{package}.{name}"
        elif hasattr(value, "__module__") and callable(value):
            # functions and classes: the one its defining module holds under that name
            assert getattr(importlib.import_module(value.__module__), name) is value


def test_lco_exports_every_name_of_lco_objectives():
    import lco
    import lco.objectives

    assert set(lco.objectives.__all__) <= set(lco.__all__)
    assert lco.lco_kld is lco.objectives.lco_kld


def test_a_name_exported_twice_is_refused_and_an_unknown_one_is_an_attribute_error():
    with pytest.raises(ValueError, match="'pass_at_k' is exported by both .a and .b"):
        lazy_exports("lco.eval", {"a": ("pass_at_k",), "b": ("pass_at_k",)})
    _, getattr_, _ = lazy_exports("lco.eval", {"pass_at_k": ("pass_at_k",)})
    with pytest.raises(AttributeError, match="module 'lco.eval' has no attribute 'nope'"):
        getattr_("nope")
