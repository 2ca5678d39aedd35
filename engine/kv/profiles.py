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

# SmolLM2-135M(-Instruct), 30 layers x 3 KV heads: the 8 heads whose 4-bit keys alone moved
# the next-token KL by >= 4e-5 on two tuning texts (layer 18 head 2: 4.2e-4, layer 17 head 1:
# 2.1e-4, layer 20 head 2: 1.7e-4, layer 7 head 2: 1.1e-4, then 0.9e-4 .. 0.4e-4; the other
# heads of those layers <= 2e-5, and whole other layers <= 4e-5 each).
SMOLLM2_135M_KEY8 = frozenset({(18, 2), (17, 1), (20, 2), (7, 2), (20, 1), (23, 0), (8, 0), (24, 0)})

Q4_KEY8: dict[str, frozenset[tuple[int, int]]] = {
    "fam-0188ffb102ff8468": SMOLLM2_135M_KEY8,
}


def q4_key8(fingerprint: ModelFingerprint) -> frozenset[tuple[int, int]]:
    """The (layer, KV head) pairs this model's q4 keeps at 8 bit (none without a profile)."""
    return Q4_KEY8.get(fingerprint.weights_family, frozenset())
