"""Issue 13: two vocabularies of the same size are described by what differs, not by equal counts."""

from __future__ import annotations

from lco.vocabularies import vocabulary_difference


def test_same_size_vocabularies_name_the_first_differing_id():
    ours = {"<pad>": 0, "a": 1, "b": 2, "c": 3}
    theirs = {"<pad>": 0, "b": 1, "a": 2, "c": 3}  # "a" and "b" swapped: same size, different tokens
    text = vocabulary_difference(ours, theirs)
    assert "4 vs 4 tokens" in text
    assert "2 id(s) differ" in text and "first at id 1: 'a' vs 'b'" in text


def test_an_extra_token_is_shown_against_no_token():
    text = vocabulary_difference({"a": 0, "b": 1, "x": 2}, {"a": 0, "b": 1})
    assert "3 vs 2 tokens" in text and "first at id 2: 'x' vs no token" in text
