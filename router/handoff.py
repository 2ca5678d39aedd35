"""Hand off by KV cache or by token IDs? A pure estimate from counts, bytes and the policy.

Two choices, both in milliseconds of wall time until the receiving tier can
produce its next token:

- Continuation (edge -> cloud): token IDs cost one round trip plus the cloud's
  re-prefill of the context; a KV cache costs two round trips (upload, then
  resume), its bytes over the link and its decoding, and the cloud's prefill of
  the positions the upload leaves out (q4 leaves the last few hundred).
- Prefill offload (cloud -> edge): prefilling on the device costs the device's
  prefill; offloading costs a round trip, the cloud's prefill, the cache's bytes
  down the link and its decoding on the device.

Prefill speeds start from the policy and are refined by the SDK's measurements
(`PrefillSpeeds.observe`). Eligibility (compatible fingerprints, the policy's
cross-precision rule, no redaction) is decided before; a reason says why not.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from router.policy import KVHandoffRules

DECODE_BYTES_PER_S = 300e6  # decoding compressed frames (benchmarks/kv_handoff.py measures 300-700 MB/s)
_EWMA = 0.5


@dataclass
class PrefillSpeeds:
    """Tokens per second of each tier's prefill, as last measured (or the policy's estimate)."""

    edge: float
    cloud: float

    @classmethod
    def from_rules(cls, rules: KVHandoffRules) -> PrefillSpeeds:
        return cls(rules.edge_prefill_tokens_per_s, rules.cloud_prefill_tokens_per_s)

    def observe(self, tier: str, n_tokens: int, seconds: float) -> None:
        """Fold one measured prefill into the estimate (short ones say little and are skipped)."""
        if n_tokens < 32 or seconds <= 0:
            return
        rate = n_tokens / seconds
        setattr(self, tier, (1 - _EWMA) * getattr(self, tier) + _EWMA * rate)


@dataclass(frozen=True)
class HandoffChoice:
    """`kind`: token_ids | kv (continuation), local_prefill | kv_prefill (offload)."""

    kind: str
    reason: str
    costs_ms: dict[str, float] = field(default_factory=dict)

    @property
    def by_kv(self) -> bool:
        return self.kind in ("kv", "kv_prefill")


def transfer_ms(nbytes: int, rules: KVHandoffRules) -> float:
    return nbytes * 8 / (rules.link_mbps * 1e6) * 1000 + nbytes / DECODE_BYTES_PER_S * 1000


def choose_continuation(
    *, n_cached: int, kv_bytes: int, rules: KVHandoffRules, speeds: PrefillSpeeds, ineligible: str | None = None,
    n_recompute: int = 0,
) -> HandoffChoice:
    """Continue in the cloud from `n_cached` positions the edge holds: by KV (`kv_bytes` for all
    but the last `n_recompute`, which the cloud prefills) or by token IDs."""
    if not rules.enabled:
        return HandoffChoice("token_ids", "kv_disabled")
    if ineligible:
        return HandoffChoice("token_ids", ineligible)
    if n_recompute >= n_cached:
        return HandoffChoice("token_ids", "kv_nothing_to_send")
    costs = {
        "token_ids": rules.rtt_ms + n_cached / speeds.cloud * 1000,
        "kv": 2 * rules.rtt_ms + transfer_ms(kv_bytes, rules) + n_recompute / speeds.cloud * 1000,
    }
    costs = {k: round(v, 1) for k, v in costs.items()}
    kind = "kv" if costs["kv"] < costs["token_ids"] else "token_ids"
    return HandoffChoice(kind, "cheaper", costs)


def choose_prefill(
    *, n_prompt: int, kv_bytes: int, rules: KVHandoffRules, speeds: PrefillSpeeds, ineligible: str | None = None
) -> HandoffChoice:
    """Prefill a prompt on the device, or in the cloud with its cache shipped down."""
    if not (rules.enabled and rules.prefill_offload):
        return HandoffChoice("local_prefill", "offload_disabled")
    if n_prompt < rules.min_offload_tokens:
        return HandoffChoice("local_prefill", "short_prompt")
    if ineligible:
        return HandoffChoice("local_prefill", ineligible)
    costs = {
        "local_prefill": n_prompt / speeds.edge * 1000,
        "kv_prefill": rules.rtt_ms + n_prompt / speeds.cloud * 1000 + transfer_ms(kv_bytes, rules),
    }
    costs = {k: round(v, 1) for k, v in costs.items()}
    kind = "kv_prefill" if costs["kv_prefill"] < costs["local_prefill"] else "local_prefill"
    return HandoffChoice(kind, "cheaper", costs)
