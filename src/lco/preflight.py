"""Path checks shared by the ``lco`` commands, run before any model is loaded.

An output folder that cannot be written is found now, not at the first save (when steps or a
finished evaluation seed would be lost), and a model path that does not exist is refused now,
not after the hub client's retries. Both raise one ``ValueError`` naming the argument.
"""

from __future__ import annotations

import os
import re
import tempfile

# A hub repository id: "name" or "owner/name" (huggingface_hub's rule, without the length limit).
_HUB_ID = re.compile(r"^(?:[A-Za-z0-9][\w.-]*/)?[A-Za-z0-9][\w.-]*$")


def check_writable_dir(path: str | os.PathLike, what: str) -> None:
    """``path`` is (or can be created as) a directory this process can write into.

    Walks up to the nearest existing ancestor: a regular file on the way is named, and a
    directory is probed by creating (and removing) a file in it — ``os.access`` says yes to root
    even on a read-only mount.
    """
    target = os.path.abspath(os.path.expanduser(os.fspath(path)))
    existing = target
    while not os.path.exists(existing):
        parent = os.path.dirname(existing)
        if parent == existing:
            break
        existing = parent
    if not os.path.isdir(existing):
        where = "is a regular file" if existing == target else f"is under {existing}, a regular file"
        raise ValueError(f"{what} {os.fspath(path)!r} {where}, not a directory")
    try:
        fd, probe = tempfile.mkstemp(prefix=".lco-write-test-", dir=existing)
    except OSError as err:
        raise ValueError(
            f"{what} {os.fspath(path)!r} is not writable ({existing}: {err.strerror or err})"
        ) from err
    os.close(fd)
    os.unlink(probe)


def _looks_local(path: str) -> bool:
    return (
        path.startswith(("/", ".", "~"))
        or path.endswith("/")
        or os.sep != "/"
        and os.sep in path
        or not _HUB_ID.match(path)
    )


def check_model_path(path: str | None, what: str) -> None:
    """A model is a local folder with ``config.json``, or a hub id; a local-looking path must exist.

    A path that cannot be a hub id is refused at once instead of reaching the hub client (which
    answers "Repo id must be …" or, online, retries for about a minute). A hub id that is not in
    the local cache is refused only when the hub is switched off (``HF_HUB_OFFLINE``).
    """
    if path is None:
        return
    path = os.fspath(path)
    if os.path.isdir(path):
        if not os.path.isfile(os.path.join(path, "config.json")):
            raise ValueError(f"{what} {path!r} is a folder without config.json, not a saved model")
        return
    if os.path.exists(path):
        raise ValueError(f"{what} {path!r} is a file; expected a model folder or a hub id")
    if _looks_local(path):
        raise ValueError(f"{what} {path!r} does not exist (no such folder, and not a hub id)")
    from huggingface_hub import constants, try_to_load_from_cache

    if constants.HF_HUB_OFFLINE and not isinstance(try_to_load_from_cache(path, "config.json"), str):
        raise ValueError(
            f"{what} {path!r} is not a local folder and not in the hub cache, and HF_HUB_OFFLINE is set"
        )
