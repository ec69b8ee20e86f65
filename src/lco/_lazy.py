"""Public names imported on first use (PEP 562): the one mechanism of the packages' ``__init__``.

``lco --help`` imports :mod:`lco` and :mod:`lco.cli` and must not pay for torch, transformers or
TRL, so a package's ``__init__`` only lists which submodule defines each public name; the
submodule is imported when a name of it is first read::

    __all__, __getattr__, __dir__ = lazy_exports(__name__, {"config": ("LCOConfig",), ...})
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping


def lazy_exports(
    package: str, exports: Mapping[str, tuple[str, ...]], submodules: tuple[str, ...] = ()
) -> tuple[list[str], Callable[[str], object], Callable[[], list[str]]]:
    """``(__all__, __getattr__, __dir__)`` for ``package``.

    ``exports`` maps a submodule (relative to ``package``) to the public names it defines;
    ``submodules`` are public submodules themselves. A name read for the first time is imported
    from its submodule and stored on the package, so that later reads skip ``__getattr__``.
    """
    where: dict[str, str] = {}
    for module, names in exports.items():
        for name in names:
            if name in where:
                raise ValueError(f"{package}: {name!r} is exported by both .{where[name]} and .{module}")
            where[name] = module
    public = sorted([*where, *submodules])

    def __getattr__(name: str):
        if name in where:
            value = getattr(importlib.import_module(f".{where[name]}", package), name)
        elif name in submodules:
            value = importlib.import_module(f".{name}", package)
        else:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(public))

    return public, __getattr__, __dir__
