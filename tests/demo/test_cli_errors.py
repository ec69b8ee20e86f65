"""Bad input to ``lco demo`` is one clear error (exit 2), found before any model is built."""

from __future__ import annotations

import os

import pytest

from lco.cli import main
from lco.demo.methods import resolve_methods
from lco.demo.recipe import check_output_folder, check_settings
from lco.demo.settings import profile_settings


def _fails(capsys, argv, message):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("lco demo: error:") and message in err, err
    return err


def test_unknown_method_is_named_with_the_choices(capsys, tmp_path):
    err = _fails(capsys, ["demo", "--out", str(tmp_path), "--methods", "lco_kld,ppo2"], "'ppo2'")
    assert "lco_kld" in err and "grpo" in err  # the valid choices are listed
    assert not (tmp_path / "stages").exists(), "work started before the arguments were checked"


@pytest.mark.parametrize("seeds", ["0", "-2"])
def test_seeds_must_be_positive(capsys, tmp_path, seeds):
    _fails(capsys, ["demo", "--out", str(tmp_path), "--seeds", seeds], "--seeds must be a positive integer")
    assert not (tmp_path / "stages").exists()


def test_workers_must_be_positive(capsys, tmp_path):
    _fails(capsys, ["demo", "--out", str(tmp_path), "--workers", "0"], "--workers")


def test_unwritable_output_folder(capsys, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    _fails(capsys, ["demo", "--out", str(blocker / "out")], "is not writable")


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write into a read-only folder")
def test_read_only_output_folder(capsys, tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        _fails(capsys, ["demo", "--out", str(folder)], "is not writable")
    finally:
        folder.chmod(0o700)


def test_quick_and_full_exclude_each_other(capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        main(["demo", "--quick", "--full", "--out", str(tmp_path)])
    assert exit_info.value.code == 2


def test_a_second_demo_in_the_same_folder_is_refused(capsys, tmp_path):
    (tmp_path / ".demo.lock").write_text(str(os.getppid()))  # a live process that is not us
    _fails(capsys, ["demo", "--quick", "--out", str(tmp_path), "--methods", "grpo"], "another demo")


def test_methods_resolve_in_order_with_the_warm_up_first():
    names = [m.name for m in resolve_methods(["grpo", "lco_kld", "grpo"])]
    assert names == ["warmup", "grpo", "lco_kld"]
    with pytest.raises(ValueError, match="empty"):
        resolve_methods([])


def test_profiles_validate_and_differ_in_budget():
    quick, default, full = (profile_settings(p) for p in ("quick", "default", "full"))
    for s in (quick, default, full):
        check_settings(s)
    assert (quick.seeds, default.seeds, full.seeds) == (1, 2, 4)
    assert quick.rl.rollout_budget < default.rl.rollout_budget
    assert {"lco_kld", "lco_lch", "lco_mse", "ppo", "grpo", "reinforce"} <= set(default.methods)
    assert set(default.methods) < set(full.methods)
    assert profile_settings("default", lr_sweep=True).lr_sweep
    with pytest.raises(ValueError, match="profile"):
        profile_settings("huge")


def test_check_output_folder_creates_it(tmp_path):
    out = check_output_folder(tmp_path / "new" / "deeper")
    assert out.is_dir() and not list(out.iterdir())
