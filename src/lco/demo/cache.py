"""Stages cached on disk under a key of their inputs, so that a killed demo resumes where it was.

A stage lives in ``OUT/stages/NAME/``. Its *key* is the SHA-256 of its inputs — the settings it
reads, the fingerprints (file checksums) of the stages it builds on, the versions of the code and
libraries it runs — so a changed input, or a rebuilt upstream stage, changes the key. The directory is valid only when

1. ``key.json`` holds the stage's current key,
2. ``DONE`` exists — it is written last, after every other file — and
3. every file listed in ``DONE`` still has the size and SHA-256 recorded there.

A stage is built in a temporary directory next to its final place and renamed into place only when
complete, so a kill leaves either the old valid stage or a temporary directory that the next run
deletes. A stage that fails check 3 (a file missing, truncated or altered) is *corrupted*: it is
reported with a :class:`CacheWarning` and rebuilt, never reused.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

KEY_FILE = "key.json"
DONE_FILE = "DONE"
_TMP_MARK = ".tmp-"


class CacheWarning(UserWarning):
    """A cached stage could not be reused (corrupted, or built from other inputs) and is rebuilt."""


def stage_key(inputs: Mapping) -> str:
    """SHA-256 of the inputs as canonical JSON (sorted keys; floats by ``repr``)."""
    blob = json.dumps(inputs, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _manifest(root: Path) -> dict[str, dict]:
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.name not in (KEY_FILE, DONE_FILE))
    return {p.relative_to(root).as_posix(): {"size": p.stat().st_size, "sha256": _sha256(p)} for p in files}


@dataclass(frozen=True)
class Stage:
    """One cached step of the pipeline: ``Stage(out, "warmup-policy", inputs)``. Picklable, so a
    worker process can build it."""

    out: Path
    name: str
    inputs: dict

    @property
    def key(self) -> str:
        return stage_key(self.inputs)

    @property
    def path(self) -> Path:
        return Path(self.out) / "stages" / self.name

    def status(self) -> tuple[str, str]:
        """``("done", "")`` if reusable, else ``(state, why)`` with state ``missing``, ``stale``,
        ``interrupted`` or ``corrupted``."""
        path = self.path
        if not path.exists():
            return "missing", ""
        try:
            recorded = json.loads((path / KEY_FILE).read_text())["key"]
        except (OSError, ValueError, KeyError, TypeError):
            recorded = None
        if not (path / DONE_FILE).exists():
            return "interrupted", "it has no DONE marker"
        if recorded is None:
            return "corrupted", f"{KEY_FILE} is missing or unreadable"
        if recorded != self.key:
            return "stale", "its inputs changed"
        try:
            done = json.loads((path / DONE_FILE).read_text())
            files = done["files"]
            if done["key"] != self.key:
                return "corrupted", f"{DONE_FILE} names another key"
        except (OSError, ValueError, KeyError, TypeError):
            return "corrupted", f"{DONE_FILE} is unreadable"
        for rel, meta in files.items():
            file = path / rel
            if not file.is_file():
                return "corrupted", f"{rel} is missing"
            if file.stat().st_size != meta["size"] or _sha256(file) != meta["sha256"]:
                return "corrupted", f"{rel} differs from what was written"
        return "done", ""

    def is_done(self) -> bool:
        """Whether the stage can be reused; anything else is announced (corruption as a warning)."""
        state, why = self.status()
        if state == "corrupted":
            warnings.warn(
                f"stage {self.name} is corrupted ({why}); rebuilding it", CacheWarning, stacklevel=2
            )
        elif state in ("stale", "interrupted"):
            warnings.warn(f"stage {self.name}: {why}; rebuilding it", CacheWarning, stacklevel=2)
        return state == "done"

    def build(self, fill: Callable[[Path], object]) -> Path:
        """Run ``fill(tmp_dir)``, record the key and the files' checksums, then rename into place.

        If ``fill`` raises, nothing is renamed: the previous directory (if any) stays as it was
        and the next run rebuilds.
        """
        final = self.path
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.parent / f"{final.name}{_TMP_MARK}{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        start = time.time()
        try:
            fill(tmp)
            (tmp / KEY_FILE).write_text(
                json.dumps(
                    {"key": self.key, "stage": self.name, "inputs": self.inputs}, indent=1, default=str
                )
            )
            done = {"key": self.key, "seconds": time.time() - start, "files": _manifest(tmp)}
            (tmp / DONE_FILE).write_text(json.dumps(done, indent=1))
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        if final.exists():
            old = final.parent / f"{final.name}{_TMP_MARK}old-{os.getpid()}"
            shutil.rmtree(old, ignore_errors=True)
            final.rename(old)
            shutil.rmtree(old, ignore_errors=True)
        tmp.rename(final)
        return final

    def fingerprint(self) -> str:
        """SHA-256 of the built stage's files (from ``DONE``): what a stage built on it puts in its key,
        so that rebuilding this stage — a corrupted one, say — also rebuilds everything made from it."""
        return stage_key(json.loads((self.path / DONE_FILE).read_text())["files"])

    def build_seconds(self) -> float:
        """Wall time of the build that produced the cached directory."""
        return float(json.loads((self.path / DONE_FILE).read_text())["seconds"])


def ensure(stage: Stage, fill: Callable[[Path], object]) -> Path:
    """The stage's directory, built with ``fill`` unless a valid cached copy exists."""
    if stage.is_done():
        return stage.path
    return stage.build(fill)


def remove_leftovers(out: Path) -> list[Path]:
    """Delete temporary directories left by a killed run (their stages are rebuilt)."""
    stages = Path(out) / "stages"
    if not stages.is_dir():
        return []
    # stage names may hold one "/" (rl/…, eval/…), so temporary directories sit one or two levels down
    candidates = [*stages.glob("*"), *stages.glob("*/*")]
    leftovers = [p for p in candidates if p.is_dir() and _TMP_MARK in p.name]
    for p in leftovers:
        shutil.rmtree(p, ignore_errors=True)
    return leftovers
