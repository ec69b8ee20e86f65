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
    the local cache is refused at once when the hub is switched off (``HF_HUB_OFFLINE``); online,
    the hub is asked once within a bounded wait (:func:`check_hub_reachable`).
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

    cached = isinstance(try_to_load_from_cache(path, "config.json"), str)
    if constants.HF_HUB_OFFLINE and not cached:
        raise ValueError(
            f"{what} {path!r} is not a local folder and not in the hub cache, and HF_HUB_OFFLINE is set"
        )
    if not cached:  # online: one bounded question now, not the hub client's minute of retries at load time
        check_hub_reachable(path, "model", what)


# The files ``save_pretrained`` of a tokenizer writes (one of them is enough to load it).
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "tokenizer.model",
    "vocab.json",
    "vocab.txt",
    "spiece.model",
)


def check_tokenizer(path: str | None, what: str) -> None:
    """A local model folder holds a tokenizer that loads with a vocabulary.

    ``save_model`` writes the weights first and the tokenizer last, so a kill during a final save
    leaves a folder with ``config.json`` and weights but no tokenizer files. ``AutoTokenizer``
    then builds an empty one (a single token) without complaint and generation fails with an
    ``IndexError`` deep inside ``generate``. A hub id is left to the hub client.
    """
    if path is None or not os.path.isdir(os.fspath(path)):
        return
    path = os.fspath(path)
    if not any(os.path.isfile(os.path.join(path, name)) for name in TOKENIZER_FILES):
        raise ValueError(
            f"{what} {path!r} has no tokenizer files ({', '.join(TOKENIZER_FILES[:2])}): an interrupted save "
            "leaves a folder like this; save the tokenizer there (tokenizer.save_pretrained) or use a complete "
            "checkpoint"
        )
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
    except Exception as err:  # a truncated tokenizer.json fails in the tokenizers library, in many types
        raise ValueError(
            f"{what} {path!r}: its tokenizer cannot be loaded ({type(err).__name__}: {err})"
        ) from err
    if len(tokenizer) < 2:
        raise ValueError(
            f"{what} {path!r}: its tokenizer has {len(tokenizer)} token(s); the tokenizer files are incomplete "
            "(an interrupted save?); save the tokenizer there again or use a complete checkpoint"
        )


# How long ``check_hub_dataset`` waits for the hub before saying it cannot be reached (``datasets``
# itself retries for about a minute and then fails with a ``ConnectionError``).
HUB_PROBE_TIMEOUT_S = 20.0


def probe_hub(repo_id: str, repo_type: str, timeout: float) -> None:
    """Ask the hub once, without retries, whether ``repo_id`` (a ``model`` or ``dataset``) exists; raises if not."""
    from huggingface_hub import HfApi

    api = HfApi()
    (api.dataset_info if repo_type == "dataset" else api.model_info)(repo_id, timeout=timeout)


def _cached_hub_dataset(repo_id: str) -> bool:
    """Whether ``repo_id`` was downloaded before (hub cache or ``datasets``' own cache)."""
    from huggingface_hub import constants

    hub = os.path.join(constants.HF_HUB_CACHE, "datasets--" + repo_id.replace("/", "--"))
    datasets_cache = os.environ.get("HF_DATASETS_CACHE") or os.path.join(constants.HF_HOME, "datasets")
    prepared = os.path.join(datasets_cache, repo_id.replace("/", "___"))
    return os.path.isdir(hub) or os.path.isdir(prepared)


_TRUE = ("1", "ON", "YES", "TRUE")


def check_hub_dataset(repo_id: str, what: str, timeout: float | None = None) -> None:
    """A dataset id that is not a local path can be reached, said in one line and in bounded time.

    Offline (``HF_HUB_OFFLINE`` or ``HF_DATASETS_OFFLINE``) a dataset that is not in the cache is
    refused at once. Online the hub is asked once; no answer within ``timeout`` seconds (default
    :data:`HUB_PROBE_TIMEOUT_S`), a connection error, or "no such dataset" is one ``ValueError``.
    """
    from huggingface_hub import constants

    offline = constants.HF_HUB_OFFLINE or os.environ.get("HF_DATASETS_OFFLINE", "").upper() in _TRUE
    if offline:
        if not _cached_hub_dataset(repo_id):
            raise ValueError(
                f"{what} {repo_id!r} is not a local file or folder and not in the cache, and the hub is switched "
                "off (HF_HUB_OFFLINE); give a local .jsonl/.json/.csv/.parquet file or a save_to_disk folder"
            )
        return
    check_hub_reachable(repo_id, "dataset", what, timeout)


def check_hub_reachable(repo_id: str, repo_type: str, what: str, timeout: float | None = None) -> None:
    """Ask the hub once whether ``repo_id`` exists, waiting at most ``timeout`` seconds (default
    :data:`HUB_PROBE_TIMEOUT_S`); no answer, a connection error or "no such repository" is one ``ValueError``."""
    import threading

    timeout = HUB_PROBE_TIMEOUT_S if timeout is None else timeout
    outcome: list[BaseException | None] = []

    def probe() -> None:
        try:
            probe_hub(repo_id, repo_type, timeout)
            outcome.append(None)
        except BaseException as err:  # handed to the caller's thread
            outcome.append(err)

    # a daemon thread: a probe still waiting on its socket must not keep the command alive
    thread = threading.Thread(target=probe, name="lco-hub-probe", daemon=True)
    thread.start()
    thread.join(timeout)
    if not outcome:
        raise ValueError(
            f"{what} {repo_id!r} is not a local path and the hub did not answer within {timeout:g} s; check the "
            "network (or set HF_HUB_OFFLINE=1 to use the cache) or give a local path"
        )
    err = outcome[0]
    if err is None:
        return
    from huggingface_hub.errors import RepositoryNotFoundError

    if isinstance(err, RepositoryNotFoundError):
        reason = f"there is no such {repo_type} on the hub (or it is private: log in with `hf auth login`)"
    else:
        reason = f"the hub cannot be reached ({type(err).__name__}: {' '.join(str(err).split())[:200]})"
    raise ValueError(f"{what} {repo_id!r} is not a local path and {reason}") from err
