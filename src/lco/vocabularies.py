"""Saying how two tokenizers' vocabularies differ, for the errors that refuse to mix them.

A count alone misleads: two vocabularies of the same size can still map ids to different tokens
("260 vs 260 tokens" reads as equal). The description names the first id whose token differs.
"""

from __future__ import annotations


def vocabulary_difference(vocab: dict[str, int], other: dict[str, int]) -> str:
    """``"<sizes>; first difference at id N: 'a' vs 'b'"`` for two ``token -> id`` maps that differ."""
    by_id = {i: t for t, i in vocab.items()}
    other_by_id = {i: t for t, i in other.items()}
    differing = sorted(i for i in by_id.keys() | other_by_id.keys() if by_id.get(i) != other_by_id.get(i))
    sizes = f"{len(vocab)} vs {len(other)} tokens"
    if not differing:
        # same id -> token pairs but different maps: a token listed under two ids in one of them
        return f"{sizes}, the same ids but a token mapped twice"
    first = differing[0]

    def show(token):
        return "no token" if token is None else repr(token)

    return (
        f"{sizes}, {len(differing)} id(s) differ; first at id {first}: "
        f"{show(by_id.get(first))} vs {show(other_by_id.get(first))}"
    )
