"""Stages on disk: reused only when their key matches, DONE exists and no file changed; else rebuilt."""

from __future__ import annotations

import json

import pytest

from lco.demo.cache import DONE_FILE, KEY_FILE, CacheWarning, Stage, ensure, remove_leftovers, stage_key


def _fill(calls: list, text: str = "weights"):
    def fill(folder):
        calls.append(folder)
        (folder / "model").mkdir()
        (folder / "model" / "weights.bin").write_text(text)
        (folder / "log.json").write_text(json.dumps({"loss": 1.0}))

    return fill


def test_key_is_stable_and_depends_on_every_input():
    assert stage_key({"a": 1, "b": [1, 2]}) == stage_key({"b": [1, 2], "a": 1})
    assert stage_key({"a": 1}) != stage_key({"a": 2})
    assert stage_key({"lr": 1e-4}) != stage_key({"lr": 1e-3})


def test_built_stage_is_reused_without_rebuilding(tmp_path):
    calls = []
    stage = Stage(tmp_path, "warmup-policy", {"steps": 10})
    path = ensure(stage, _fill(calls))
    assert path == tmp_path / "stages" / "warmup-policy"
    assert (path / DONE_FILE).exists() and json.loads((path / KEY_FILE).read_text())["key"] == stage.key
    assert ensure(stage, _fill(calls)) == path
    assert len(calls) == 1
    assert stage.status() == ("done", "")


def test_changed_inputs_rebuild_the_stage(tmp_path):
    calls = []
    ensure(Stage(tmp_path, "rl/ppo-s0", {"lr": 1e-4}), _fill(calls, "old"))
    with pytest.warns(CacheWarning, match="inputs changed"):
        path = ensure(Stage(tmp_path, "rl/ppo-s0", {"lr": 1e-3}), _fill(calls, "new"))
    assert len(calls) == 2
    assert (path / "model" / "weights.bin").read_text() == "new"


def test_missing_done_marker_rebuilds(tmp_path):
    calls = []
    stage = Stage(tmp_path, "eval/x", {"seed": 0})
    path = ensure(stage, _fill(calls))
    (path / DONE_FILE).unlink()
    assert stage.status()[0] == "interrupted"
    with pytest.warns(CacheWarning, match="no DONE marker"):
        ensure(stage, _fill(calls))
    assert len(calls) == 2 and stage.status() == ("done", "")


@pytest.mark.parametrize(
    "damage",
    [
        lambda p: (p / "model" / "weights.bin").write_text("truncat"),
        lambda p: (p / "model" / "weights.bin").write_text("weightz"),  # same size, other content
        lambda p: (p / "log.json").unlink(),
        lambda p: (p / DONE_FILE).write_text("{not json"),
        lambda p: (p / KEY_FILE).unlink(),
    ],
    ids=["truncated", "altered", "missing-file", "bad-done", "missing-key"],
)
def test_corrupted_stage_is_rebuilt_with_a_warning(tmp_path, damage):
    calls = []
    stage = Stage(tmp_path, "reward-model", {"beta": 0.1})
    damage(ensure(stage, _fill(calls)))
    assert stage.status()[0] == "corrupted"
    with pytest.warns(CacheWarning, match="corrupted"):
        path = ensure(stage, _fill(calls))
    assert len(calls) == 2
    assert (path / "model" / "weights.bin").read_text() == "weights"
    assert stage.status() == ("done", "")


def test_a_build_killed_midway_leaves_no_stage_and_the_next_run_rebuilds(tmp_path):
    stage = Stage(tmp_path, "rl/grpo-s1", {"seed": 1})

    def dies(folder):
        (folder / "half-written").write_text("…")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        stage.build(dies)
    assert stage.status()[0] == "missing"
    assert not list((tmp_path / "stages" / "rl").iterdir()), "the temporary directory was left behind"
    calls = []
    ensure(stage, _fill(calls))
    assert len(calls) == 1


def test_a_failed_rebuild_keeps_the_previous_directory_untouched(tmp_path):
    calls = []
    ensure(Stage(tmp_path, "s", {"v": 1}), _fill(calls, "v1"))

    def fails(folder):
        raise RuntimeError("boom")

    with pytest.warns(CacheWarning), pytest.raises(RuntimeError):
        ensure(Stage(tmp_path, "s", {"v": 2}), fails)
    assert (tmp_path / "stages" / "s" / "model" / "weights.bin").read_text() == "v1"


def test_finished_runs_survive_a_kill_and_are_not_rerun(tmp_path):
    """A demo killed in its third run resumes there: the first two are reused, not rebuilt."""
    built = []

    def run_all(kill_at=None):
        for i in range(4):
            stage = Stage(tmp_path, f"rl/run-{i}", {"seed": i})

            def fill(folder, i=i):
                if i == kill_at:
                    raise KeyboardInterrupt
                built.append(i)
                (folder / "model.bin").write_text(str(i))

            ensure(stage, fill)

    with pytest.raises(KeyboardInterrupt):
        run_all(kill_at=2)
    assert built == [0, 1]
    run_all()
    assert built == [0, 1, 2, 3]


def test_leftover_temporary_directories_are_removed(tmp_path):
    (tmp_path / "stages" / "rl" / "ppo-s0.tmp-123").mkdir(parents=True)
    (tmp_path / "stages" / "warmup-policy.tmp-9").mkdir()
    (tmp_path / "stages" / "rl" / "ppo-s1").mkdir()
    removed = remove_leftovers(tmp_path)
    assert len(removed) == 2
    assert (tmp_path / "stages" / "rl" / "ppo-s1").exists()
