"""Checkpoints that are either complete or absent, and a resume that finds the last complete one.

``Trainer._save_checkpoint`` writes ``checkpoint-N`` file by file; a kill in the middle leaves a
folder that looks like a checkpoint (weights but no ``trainer_state.json``, or nothing at all)
and ``resume_from_checkpoint=True`` then picks it and fails. Here every checkpoint is written
under a staging folder (``.lco-partial-N/checkpoint-N``, a name ``get_last_checkpoint`` never
matches) and renamed into place once every file is on disk — a rename within one file system is
atomic. Resume checks each candidate's files (a truncated safetensors / torch / JSON file is named)
and falls back to the newest complete one, logging which it skipped and why.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import zipfile

from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

logger = logging.getLogger(__name__)

STAGING_PREFIX = ".lco-partial-"
_CHECKPOINT = re.compile(rf"^{PREFIX_CHECKPOINT_DIR}-(\d+)$")
# the files a checkpoint must hold: the trainer state (written last by Trainer._save_checkpoint)
# and the policy's weights in one of the formats save_pretrained / PEFT write
_STATE_FILE = "trainer_state.json"
_WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
    "adapter_model.safetensors",
    "adapter_model.bin",
)

# DeepSpeed (global_stepN/) and FSDP (pytorch_model_fsdp_0/, …) keep sharded weights of their own
_SHARDED_WEIGHTS = ("global_step", "pytorch_model_fsdp", "model_fsdp")


class IncompleteCheckpointError(ValueError):
    """A checkpoint folder that cannot be resumed from; the message names the file."""


def staging_root(run_dir: str, step: int) -> str:
    return os.path.join(run_dir, f"{STAGING_PREFIX}{step}")


@contextlib.contextmanager
def staged_save(trainer, trial):
    """Redirect ``trainer._get_output_dir`` to a staging folder while the block saves, then rename.

    Inside the block, ``Trainer._save_checkpoint`` (and anything a subclass writes next to it
    through ``_get_output_dir``) writes ``<staging>/checkpoint-N``. Every process writes its part;
    after a barrier the main process renames the folder into ``run_dir`` and applies the
    rotation (``save_total_limit``) that the staged save could only apply to the staging folder.
    """
    run_dir = trainer._get_output_dir(trial=trial)
    step = trainer.state.global_step
    name = f"{PREFIX_CHECKPOINT_DIR}-{step}"
    staging = staging_root(run_dir, step)
    if trainer.args.should_save:
        remove_stale_staging(run_dir)
        os.makedirs(staging, exist_ok=True)
    trainer.accelerator.wait_for_everyone()
    trainer._get_output_dir = lambda trial=None: staging  # instance attribute shadows the method
    try:
        yield os.path.join(staging, name)
    finally:
        del trainer._get_output_dir
    trainer.accelerator.wait_for_everyone()
    if trainer.args.should_save:
        final = os.path.join(run_dir, name)
        _fix_best_checkpoint_path(trainer, staging, run_dir)
        _publish(os.path.join(staging, name), final)
        shutil.rmtree(staging, ignore_errors=True)
        _rotate(trainer, run_dir)
    trainer.accelerator.wait_for_everyone()


def _publish(staged: str, final: str) -> None:
    """Rename ``staged`` to ``final``; an existing ``final`` (the same step saved again) is replaced."""
    if os.path.exists(final):
        replaced = final + ".replaced"
        shutil.rmtree(replaced, ignore_errors=True)
        os.rename(final, replaced)
        os.rename(staged, final)
        shutil.rmtree(replaced, ignore_errors=True)
    else:
        os.rename(staged, final)
    _fsync_dir(os.path.dirname(final))


def _fsync_dir(path: str) -> None:
    # the rename is only durable once the directory entry is flushed (POSIX; a no-op elsewhere)
    with contextlib.suppress(OSError, AttributeError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _fix_best_checkpoint_path(trainer, staging: str, run_dir: str) -> None:
    """The best checkpoint, when it is the one just saved, was recorded under its staging path."""
    best = trainer.state.best_model_checkpoint
    if best and os.path.dirname(os.path.abspath(best)) == os.path.abspath(staging):
        trainer.state.best_model_checkpoint = os.path.join(run_dir, os.path.basename(best))
        state_file = os.path.join(staging, os.path.basename(best), _STATE_FILE)
        if os.path.exists(state_file):
            trainer.state.save_to_json(state_file)


def _rotate(trainer, run_dir: str) -> None:
    from transformers.trainer_utils import rotate_checkpoints

    rotate_checkpoints(
        output_dir=run_dir,
        save_total_limit=trainer.args.save_total_limit,
        best_model_checkpoint=trainer.state.best_model_checkpoint,
        use_mtime=False,
    )


def remove_stale_staging(run_dir: str) -> None:
    """Staging folders left by a run killed mid-save hold no usable checkpoint: remove them."""
    if not os.path.isdir(run_dir):
        return
    for entry in os.listdir(run_dir):
        if entry.startswith(STAGING_PREFIX):
            logger.warning(
                "removing %s, a checkpoint whose save was interrupted", os.path.join(run_dir, entry)
            )
            shutil.rmtree(os.path.join(run_dir, entry), ignore_errors=True)


# ---------------------------------------------------------------------------------------- resume


def checkpoint_problem(folder: str) -> str | None:
    """Why ``folder`` cannot be resumed from (naming the file), or ``None`` if it is complete."""
    if not os.path.isdir(folder):
        return f"{folder} is not a folder"
    files = set(os.listdir(folder))
    if _STATE_FILE not in files:
        return f"{os.path.join(folder, _STATE_FILE)} is missing (the save was interrupted)"
    if not files.intersection(_WEIGHT_FILES) and not any(f.startswith(_SHARDED_WEIGHTS) for f in files):
        return f"{folder} holds no model weights ({' / '.join(_WEIGHT_FILES[:3])} missing)"
    for name in sorted(files):
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            problem = _file_problem(path)
            if problem is not None:
                return f"{path} is truncated or corrupt ({problem})"
    return None


def _file_problem(path: str) -> str | None:
    """Read enough of a checkpoint file to know it is whole; the reason if it is not."""
    if os.path.getsize(path) == 0:
        return "empty file"
    if path.endswith(".json"):
        try:
            with open(path, encoding="utf-8") as f:
                json.load(f)
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            return f"invalid JSON: {err}"
        return None
    if path.endswith(".safetensors"):
        return _safetensors_problem(path)
    if path.endswith((".pt", ".pth", ".bin")):
        # torch.save writes a zip archive; its central directory is at the end, so a truncated
        # file cannot be opened, and testzip() checks every member's CRC
        try:
            with zipfile.ZipFile(path) as archive:
                bad = archive.testzip()
        except (zipfile.BadZipFile, OSError) as err:
            return f"not a complete torch archive: {err}"
        return None if bad is None else f"member {bad} fails its CRC check"
    return None


def _safetensors_problem(path: str) -> str | None:
    """A safetensors file: an 8-byte header length, a JSON header, then every tensor's bytes."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            return "shorter than its header"
        header_len = int.from_bytes(head, "little")
        if 8 + header_len > size:
            return "shorter than its header"
        try:
            header = json.loads(f.read(header_len))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            return f"unreadable header: {err}"
    end = max((t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"), default=0)
    if 8 + header_len + end > size:
        return f"{size} bytes, but its tensors end at byte {8 + header_len + end}"
    return None


def checkpoints_newest_first(run_dir: str) -> list[str]:
    if not os.path.isdir(run_dir):
        return []
    found = [(int(m.group(1)), e) for e in os.listdir(run_dir) if (m := _CHECKPOINT.match(e))]
    return [
        os.path.join(run_dir, e)
        for _, e in sorted(found, reverse=True)
        if os.path.isdir(os.path.join(run_dir, e))
    ]


def resolve_resume_checkpoint(output_dir: str, resume_from_checkpoint):
    """What ``Trainer.train`` should resume from.

    ``True``: the newest *complete* ``checkpoint-N`` in ``output_dir``; each newer incomplete one is
    logged with the reason it was skipped. A path: that checkpoint, which must be complete (else
    one error naming the bad file). Anything else passes through unchanged.
    """
    if isinstance(resume_from_checkpoint, bool):
        if not resume_from_checkpoint:
            return resume_from_checkpoint
        skipped = []
        for folder in checkpoints_newest_first(output_dir):
            problem = checkpoint_problem(folder)
            if problem is None:
                if skipped:
                    logger.warning("resuming from %s", folder)
                return folder
            logger.warning("skipping %s: %s", os.path.basename(folder), problem)
            skipped.append(f"{os.path.basename(folder)}: {problem}")
        detail = f" (skipped: {'; '.join(skipped)})" if skipped else ""
        raise IncompleteCheckpointError(
            f"resume_from_checkpoint=True but output_dir {output_dir} holds no complete checkpoint{detail}"
        )
    if isinstance(resume_from_checkpoint, (str, os.PathLike)):
        problem = checkpoint_problem(os.fspath(resume_from_checkpoint))
        if problem is not None:
            raise IncompleteCheckpointError(
                f"resume_from_checkpoint {os.fspath(resume_from_checkpoint)}: {problem}"
            )
    return resume_from_checkpoint
