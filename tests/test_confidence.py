from __future__ import annotations

import math

import pytest

from skyra_stream.model.confidence import fake_probability


def lp(p: float) -> float:
    return math.log(p)


def test_separate_word_token() -> None:
    tokens = ["<think>", "x", "</think>", "\n", "<answer>", "Fake", "</answer>"]
    top = [{t: 0.0} for t in tokens]
    top[5] = {"Fake": lp(0.6), "Real": lp(0.3), "Maybe": lp(0.1)}
    assert fake_probability(tokens, top) == pytest.approx(0.6 / 0.9, abs=1e-6)


def test_word_split_into_pieces_and_marker_split() -> None:
    tokens = ["<", "answer", ">", "F", "ake", "</", "answer", ">"]
    top = [{t: 0.0} for t in tokens]
    top[3] = {"F": lp(0.2), "Re": lp(0.7), " ": lp(0.1)}
    assert fake_probability(tokens, top) == pytest.approx(0.2 / 0.9, abs=1e-6)


def test_word_glued_to_the_marker() -> None:
    tokens = ["<", "answer", ">Real", "</answer>"]
    top = [{t: 0.0} for t in tokens]
    top[2] = {">Real": lp(0.9), ">Fake": lp(0.05), ">": lp(0.05)}
    assert fake_probability(tokens, top) == pytest.approx(0.05 / 0.95, abs=1e-6)


def test_whitespace_before_word_is_skipped() -> None:
    tokens = ["<answer>", " ", " Fake", "</answer>"]
    top = [{t: 0.0} for t in tokens]
    top[2] = {" Fake": lp(0.5), " Real": lp(0.5)}
    assert fake_probability(tokens, top) == pytest.approx(0.5, abs=1e-6)


@pytest.mark.parametrize("tokens", [[], ["no", "answer"], ["<answer>"], ["<answer>", " ", "\n"]])
def test_no_answer_is_none(tokens: list[str]) -> None:
    assert fake_probability(tokens, [{t: 0.0} for t in tokens]) is None


def test_neither_word_among_candidates_is_none() -> None:
    tokens = ["<answer>", "Maybe"]
    assert fake_probability(tokens, [{}, {"Maybe": 0.0, "Perhaps": lp(0.1)}]) is None


def test_missing_logprobs_is_none() -> None:
    assert fake_probability(["<answer>", "Fake"], [{}]) is None
