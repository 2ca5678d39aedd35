"""Per-model q4 profiles: the (layer, KV head) pairs whose keys stay at 8 bit.

A few attention heads read their keys far more sharply than the rest: on
SmolLM2-135M, 4-bit keys in one head of layer 18 alone cost as much fidelity
as 4-bit keys in 25 other layers together. Which heads they are is a property
of the weights, not of the text, so it is measured once per weights family
(`benchmarks/kv_sensitivity.py` on data/texts/tune: the KL divergence of the
next-token distribution when only that head's keys are 4 bit) and keyed by the
fingerprint's weights family, which the 4-bit device model and its
full-precision twin share. A model with no profile gets plain q4.
"""

from __future__ import annotations

from engine.fingerprint import ModelFingerprint

# SmolLM2-135M(-Instruct), 30 layers x 3 KV heads: the heads whose 4-bit keys moved the
# next-token KL by >= 4e-5 on the tuning texts, most sensitive first.
SMOLLM2_135M_KEY8 = frozenset({(18, 2)})

Q4_KEY8: dict[str, frozenset[tuple[int, int]]] = {
    "fam-0188ffb102ff8468": SMOLLM2_135M_KEY8,
}


def q4_key8(fingerprint: ModelFingerprint) -> frozenset[tuple[int, int]]:
    """The (layer, KV head) pairs this model's q4 keeps at 8 bit (none without a profile)."""
    return Q4_KEY8.get(fingerprint.weights_family, frozenset())
