"""The generation record survives TRL's shuffle and split with every row aligned, and z_old reads as z/T."""

from __future__ import annotations

import pytest
import torch
from trl.trainer.utils import shuffle_sequence_dict, split_tensor_dict

from lco.objectives.rollout import Head, HiddenStates, OldLogits, Rollout


def _rollout(B: int = 6, T: int = 3, H: int = 4, V: int = 5) -> Rollout:
    """A record whose every per-row tensor encodes its row index, so misalignment is visible."""
    g = torch.Generator().manual_seed(0)
    row = torch.arange(B, dtype=torch.float32)
    head = Head(torch.randn(V, H, generator=g), torch.randn(V, generator=g))
    hidden = row[:, None, None] + torch.zeros(B, T, H)
    return Rollout(
        token_advantages=row[:, None].expand(B, T).clone(),
        z_old=OldLogits(hidden.clone(), Head(head.weight.clone()), source="anchor", temperature=0.5),
        reward_models=(HiddenStates(hidden + 100, head), HiddenStates(hidden + 200, head)),
        old_logps=-row[:, None].expand(B, T).clone(),
        sequence_rewards=row.clone(),
    )


def test_trl_shuffle_and_split_keep_each_record_with_its_row():
    B = 6
    rollout = _rollout(B)
    batch = {"completion_ids": torch.arange(B)[:, None].expand(B, 3).clone(), "rec": rollout.split()}
    torch.manual_seed(3)
    shuffled = shuffle_sequence_dict(batch)
    order = shuffled["completion_ids"][:, 0].tolist()
    assert order != list(range(B)), "the permutation is the identity; the test cannot see a misalignment"
    for part in split_tensor_dict(shuffled, 3):
        rows = part["completion_ids"][:, 0]
        got = Rollout.collate(part["rec"])
        expected = rows.float()
        torch.testing.assert_close(got.token_advantages[:, 0], expected)
        torch.testing.assert_close(got.old_logps[:, 0], -expected)
        torch.testing.assert_close(got.sequence_rewards, expected)
        torch.testing.assert_close(got.z_old.hidden[:, 0, 0], expected)
        torch.testing.assert_close(got.reward_models[1].hidden[:, 0, 0], expected + 200)
        # heads are shared, never split, and the labels travel unchanged
        assert got.reward_models[0].head is rollout.reward_models[0].head
        assert got.z_old.head is rollout.z_old.head
        assert (got.z_old.source, got.z_old.temperature) == ("anchor", 0.5)
        assert got.teacher is None and got.returns is None


def test_split_rows_are_views_of_the_batch_tensors():
    rollout = _rollout()
    rows = rollout.split()
    assert len(rows) == len(rollout) == 6
    assert (
        rows[2].token_advantages.untyped_storage().data_ptr()
        == rollout.token_advantages.untyped_storage().data_ptr()
    )


def test_old_logits_rows_are_h_w_plus_b_over_the_temperature():
    g = torch.Generator().manual_seed(1)
    hidden, w, b = (
        torch.randn(2, 3, 4, generator=g),
        torch.randn(5, 4, generator=g),
        torch.randn(5, generator=g),
    )
    z = hidden.reshape(-1, 4) @ w.T + b  # independent of head_logit_chunks
    for T in (1.0, 0.25):
        rows = OldLogits(hidden, Head(w, b), temperature=T).logit_rows()
        torch.testing.assert_close(torch.cat([rows(0, 4), rows(4, 6)]), z / T)


def test_collate_refuses_no_rows_and_foreign_rows():
    with pytest.raises(ValueError, match="at least one"):
        Rollout.collate([])
    with pytest.raises(ValueError, match="Rollout"):
        Rollout.collate([{"token_advantages": torch.zeros(1, 2)}])
