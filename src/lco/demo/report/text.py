"""Formatting shared by the demo's reports (:mod:`.markdown` for ``lco demo``, :mod:`.study` for
``lco demo --study``): numbers as the tables print them, Markdown tidying, the settings list, and the
JSON clean-up. Public within the package, so that no report borrows another's private helpers."""

from __future__ import annotations

import math
import re


def pct(x) -> str:
    """A fraction as a percentage with two decimals; "—" for a quantity that does not exist."""
    return "—" if x is None else f"{100 * x:.2f}"


def fmt(x, digits=3) -> str:
    """A number with ``digits`` significant digits (floats), as is (others); "—" for None."""
    if x is None:
        return "—"
    if isinstance(x, float):
        return f"{x:.{digits}g}"
    return str(x)


def tidy_markdown(text: str) -> str:
    """Blank lines around headings and before tables, as every Markdown renderer wants them."""
    out: list[str] = []
    for line in text.split("\n"):
        is_heading, is_table = line.startswith("#"), line.startswith("|")
        prev = out[-1] if out else ""
        if (
            out
            and prev.strip()
            and (is_heading or (is_table and not prev.startswith("|")) or prev.startswith("#"))
        ):
            out.append("")
        out.append(line)
    return re.sub(r"\n{3,}", "\n\n", "\n".join(out))


def settings_markdown(settings) -> str:
    """Every hyper-parameter of a :class:`~lco.demo.settings.DemoSettings`, one bullet per group."""
    lines = []
    for group, values in settings.as_dict().items():
        if isinstance(values, dict):
            flat = []
            for k, v in values.items():
                if isinstance(v, dict):
                    flat += [f"{k}.{kk}={vv}" for kk, vv in v.items()]
                else:
                    flat.append(f"{k}={v}")
            lines.append(f"- **{group}**: " + ", ".join(flat))
        else:
            lines.append(f"- **{group}**: {values}")
    return "\n".join(lines) + "\n"


def sanitize(obj):
    """Non-finite floats → None, recursively (JSON numbers must be finite)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: sanitize(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [sanitize(v) for v in obj]
    return obj


__all__ = ["fmt", "pct", "sanitize", "settings_markdown", "tidy_markdown"]
