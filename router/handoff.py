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
class KVOffer:
    """One way a cache could cross: its codec, the bytes that codec sends, and the positions it
    leaves for the receiver to prefill from the token IDs (q4 leaves the last few hundred)."""

    codec: str
    kv_bytes: int
    n_recompute: int = 0


@dataclass(frozen=True)
class HandoffChoice:
    """`kind`: token_ids | kv (continuation), local_prefill | kv_prefill (offload); `codec` the
    cache's, when it goes by KV. `costs_ms` holds every option weighed ("kv:<codec>" for caches)."""

    kind: str
    reason: str
    costs_ms: dict[str, float] = field(default_factory=dict)
    codec: str | None = None

    @property
    def by_kv(self) -> bool:
        return self.kind in ("kv", "kv_prefill")


def transfer_ms(nbytes: int, rules: KVHandoffRules) -> float:
    return nbytes * 8 / (rules.link_mbps * 1e6) * 1000 + nbytes / DECODE_BYTES_PER_S * 1000


def _cheapest(plain: str, plain_ms: float, kind: str, offers: dict[str, float]) -> HandoffChoice:
    """The cheapest of the plain hand-off and each offer (a tie keeps the earlier one)."""
    costs = {plain: round(plain_ms, 1), **{f"kv:{codec}": round(ms, 1) for codec, ms in offers.items()}}
    best = min(costs, key=costs.__getitem__)
    if best == plain:
        return HandoffChoice(plain, "cheaper", costs)
    return HandoffChoice(kind, "cheaper", costs, codec=best.removeprefix("kv:"))


def choose_continuation(
    *, n_cached: int, offers: list[KVOffer], rules: KVHandoffRules, speeds: PrefillSpeeds,
    ineligible: str | None = None,
) -> HandoffChoice:
    """Continue in the cloud from `n_cached` positions the edge holds: by token IDs or by one of
    the `offers` (its bytes, plus the cloud's prefill of the positions it leaves out)."""
    if not rules.enabled:
        return HandoffChoice("token_ids", "kv_disabled")
    if ineligible:
        return HandoffChoice("token_ids", ineligible)
    offers = [o for o in offers if o.n_recompute < n_cached]
    if not offers:
        return HandoffChoice("token_ids", "kv_nothing_to_send")
    return _cheapest("token_ids", rules.rtt_ms + n_cached / speeds.cloud * 1000, "kv", {
        o.codec: 2 * rules.rtt_ms + transfer_ms(o.kv_bytes, rules) + o.n_recompute / speeds.cloud * 1000
        for o in offers
    })


def choose_prefill(
    *, n_prompt: int, offers: list[KVOffer], rules: KVHandoffRules, speeds: PrefillSpeeds,
    ineligible: str | None = None,
) -> HandoffChoice:
    """Prefill a prompt on the device, or in the cloud with its cache shipped down by one of the
    `offers`."""
    if not (rules.enabled and rules.prefill_offload):
        return HandoffChoice("local_prefill", "offload_disabled")
    if n_prompt < rules.min_offload_tokens:
        return HandoffChoice("local_prefill", "short_prompt")
    if ineligible:
        return HandoffChoice("local_prefill", ineligible)
    return _cheapest("local_prefill", n_prompt / speeds.edge * 1000, "kv_prefill", {
        o.codec: rules.rtt_ms + n_prompt / speeds.cloud * 1000 + transfer_ms(o.kv_bytes, rules) for o in offers
    })
