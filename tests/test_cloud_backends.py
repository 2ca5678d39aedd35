"""Engine-independent parts of the gateway's backends: the top-k entropy estimate and the tokenizer check
(the real engine tests are in test_cloud_llama_server.py)."""

from __future__ import annotations

import math

import pytest

from cloud.backends.llama_server import top_k_entropy
from cloud.backends.tokenizer_check import TokenizerMismatchError, check_tokenizer, load_served_tokenizer


def test_top_k_entropy_is_exact_when_the_top_k_hold_all_the_mass_and_a_lower_bound_otherwise():
    assert top_k_entropy([0.5, 0.5]) == pytest.approx(math.log(2))
    full = [0.4, 0.3, 0.1, 0.1, 0.05, 0.05]
    exact = -sum(p * math.log(p) for p in full)
    estimate = top_k_entropy(full[:3])  # the last 0.2 as one bucket
    assert estimate < exact and estimate == pytest.approx(-sum(p * math.log(p) for p in (0.4, 0.3, 0.1, 0.2)))
    assert top_k_entropy([1.0]) == 0.0


def test_the_tokenizer_check_passes_the_same_tokenizer_and_names_the_first_difference(smollm2_path,
                                                                                      llama3_tokenizer_path):
    ours = load_served_tokenizer(smollm2_path)
    check_tokenizer(ours, lambda text: ours.encode(text, allow_special=True), engine="itself")
    other = load_served_tokenizer(smollm2_path, llama3_tokenizer_path)
    with pytest.raises(TokenizerMismatchError, match=r"for the text 'Hello, world!' they differ at token 0"):
        check_tokenizer(ours, lambda text: other.encode(text, allow_special=True), engine="Llama 3")


def test_one_changed_id_in_a_probe_is_caught(smollm2_path):
    """An engine that agrees on plain text but maps one special token elsewhere is refused too."""
    ours = load_served_tokenizer(smollm2_path)
    stop = ours.stop_ids[-1]

    def engine(text: str) -> list[int]:
        return [t + 1 if t == stop else t for t in ours.encode(text, allow_special=True)]

    with pytest.raises(TokenizerMismatchError, match=r"differ at token 2 \(gateway \[2, "):
        check_tokenizer(ours, engine, engine="off by one")
