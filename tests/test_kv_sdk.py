"""The SDK's KV hand-off end to end against a real loopback server with the real SmolLM2:
edge -> cloud continuation carrying the device's cache, cloud -> edge prefill offload, and
the choice between KV and token IDs (fingerprints, policy, estimate) in the decision record."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from edge import TandemClient
from engine.kv.codec import DEFAULT_RECOMPUTE_TOKENS
from router import KVOffer, PrefillSpeeds, choose_continuation, choose_prefill
from tests.cloud_fixtures import running_server
from tests.edge_fixtures import ALWAYS_UNSURE, policy_with

REPO = Path(__file__).resolve().parents[1]
QUESTION = "Name three rivers in Europe."
N_NEW = 12
# Figures that make the cache the faster hand-off whatever the context length (a slow cloud
# prefill, a fast link), and the opposite: a fast cloud prefill over a slow link.
KV_WINS = {"enabled": True, "link_mbps": 10000, "rtt_ms": 0, "cloud_prefill_tokens_per_s": 1,
           "edge_prefill_tokens_per_s": 1, "prefill_offload": True, "min_offload_tokens": 8}
TOKENS_WIN = {"enabled": True, "link_mbps": 0.01, "rtt_ms": 40, "cloud_prefill_tokens_per_s": 100000}
OFFLOAD_WINS = {**KV_WINS, "cloud_prefill_tokens_per_s": 100000}


@pytest.fixture(scope="module")
def cloud(smollm2):
    with running_server(smollm2) as (server, port):
        yield server, f"127.0.0.1:{port}"


def answer(model, address, tmp_path, *, kv, confidence=ALWAYS_UNSURE, prompt=QUESTION, tags=()):
    policy = policy_with(kv_handoff=kv, confidence=confidence)
    log = tmp_path / "audit.jsonl"
    with TandemClient(model, cloud=address, policy=policy, audit_log=log) as client:
        result = client.complete(prompt, max_new_tokens=N_NEW, tags=list(tags))
    assert json.loads(log.read_text().splitlines()[-1])["handoff"] == result.record.handoff
    return result


def test_continuation_by_kv_answers_exactly_as_by_token_ids(smollm2, cloud, tmp_path):
    """Same model on both tiers, fp16 cache: the cloud's continuation must not change at all."""
    server, address = cloud
    by_ids = answer(smollm2, address, tmp_path, kv={**TOKENS_WIN, "codec": "fp16"})
    by_kv = answer(smollm2, address, tmp_path, kv={**KV_WINS, "codec": "fp16", "prefill_offload": False})
    assert by_ids.record.handoff == "token_ids" and by_kv.record.handoff == "kv:fp16"
    assert by_kv.tier == by_ids.tier == "cloud"
    assert by_kv.text == by_ids.text
    assert by_kv.record.bytes_sent > 20 * by_ids.record.bytes_sent  # the cache went up
    assert set(by_kv.record.handoff_costs_ms) == {"kv:fp16", "token_ids"}
    assert by_kv.record.latencies_ms["kv_upload_ms"] > 0
    assert len(server.servicer.backend.kv.store) == 0  # the uploaded cache was used and dropped


def test_quantized_edge_cache_continues_in_the_full_precision_cloud(smollm2_device, cloud, tmp_path):
    """q4 sends all but the last DEFAULT_RECOMPUTE_TOKENS positions and the cloud prefills those: a
    prompt shorter than that window has nothing worth sending; a longer one goes up as a cache."""
    _, address = cloud
    q4 = {**KV_WINS, "codec": "q4", "cross_precision": True, "prefill_offload": False}
    short = answer(smollm2_device, address, tmp_path, kv=q4)
    assert short.record.handoff == "token_ids" and short.record.handoff_reason == "kv_nothing_to_send"
    text = (REPO / "data" / "texts" / "eval" / "sotu-1863-lincoln.txt").read_text(encoding="utf-8")
    prompt = "Summarise this address.\n\n" + " ".join(text.split()[:400])
    n_prompt = len(smollm2_device.tokenizer.encode(prompt))
    assert n_prompt > DEFAULT_RECOMPUTE_TOKENS + 64
    result = answer(smollm2_device, address, tmp_path, kv=q4, prompt=prompt)
    assert result.record.handoff == "kv:q4" and result.tier == "cloud" and result.text
    fp16_per_position = 2 * 2 * 30 * 3 * 64  # keys and values, 30 layers x 3 KV heads x 64, 2 bytes each
    sent = result.record.bytes_sent / fp16_per_position  # positions' worth of fp16 bytes that went up
    # q4 of the positions before the window (~3.5x smaller, plus block ranges and the token IDs),
    # well under q4 of the whole prompt
    assert sent < (n_prompt - DEFAULT_RECOMPUTE_TOKENS + 64) / 2 < n_prompt / 3.5
    refused = answer(smollm2_device, address, tmp_path, kv={**KV_WINS, "cross_precision": False,
                                                           "prefill_offload": False})
    assert refused.record.handoff == "token_ids"
    assert refused.record.handoff_reason == "kv_cross_precision_not_allowed"


def test_auto_sends_q4_over_a_slow_link_and_int8_over_a_fast_one(smollm2, cloud, tmp_path):
    """codec: auto weighs both codecs on the real cache sizes: over a slow link q4's fewer bytes
    outweigh the cloud's prefill of the positions it leaves out; over a fast one int8 wins."""
    _, address = cloud
    text = (REPO / "data" / "texts" / "eval" / "sotu-1941-roosevelt.txt").read_text(encoding="utf-8")
    prompt = "Summarise this address.\n\n" + " ".join(text.split()[:700])
    base = {"enabled": True, "codec": "auto", "rtt_ms": 0, "prefill_offload": False}
    slow = answer(smollm2, address, tmp_path, prompt=prompt,
                  kv={**base, "link_mbps": 1, "cloud_prefill_tokens_per_s": 12})
    fast = answer(smollm2, address, tmp_path, prompt=prompt,
                  kv={**base, "link_mbps": 10000, "cloud_prefill_tokens_per_s": 12})
    for result, codec in ((slow, "q4"), (fast, "int8")):
        costs = result.record.handoff_costs_ms
        assert set(costs) == {"token_ids", "kv:int8", "kv:q4"}
        assert result.record.handoff == f"kv:{codec}" and min(costs, key=costs.get) == f"kv:{codec}"
        assert result.tier == "cloud" and result.text
    assert slow.record.bytes_sent < fast.record.bytes_sent / 2


def test_q4s_recomputed_window_is_full_precision_and_the_rest_within_q4s_error(smollm2):
    """What a q4 hand-off gives the receiver: positions before the window decoded from 4 bits,
    the window prefilled from token IDs. Layer 0's keys and values depend on the token alone, so
    there the window must match the sender's exact cache to float rounding, the decoded part
    only to q4's step."""
    from engine.generate import prefill
    from engine.kv import CodecOptions, decode_frames, encode_cache, layout_of

    text = (REPO / "data" / "texts" / "eval" / "sotu-1863-lincoln.txt").read_text(encoding="utf-8")
    ids = smollm2.tokenizer.encode(text)[:DEFAULT_RECOMPUTE_TOKENS + 128]
    options = CodecOptions.for_model("q4", smollm2.fingerprint)
    sent = options.sent_tokens(len(ids))
    with torch.inference_mode():
        exact = smollm2.new_cache(len(ids))
        prefill(smollm2.model, exact, ids)
        frames = list(encode_cache(exact, smollm2.fingerprint, options, n_tokens=sent))
        received = decode_frames(frames, layout_of(exact), smollm2.fingerprint,
                                 lambda n: smollm2.new_cache(len(ids)), max_tokens=smollm2.max_context).cache
        assert received.pos == sent == 128
        prefill(smollm2.model, received, ids[sent:])
    keys, ref = received.keys()[0, 0], exact.keys()[0, 0]  # layer 0, batch row 0: [H, T, D]
    values, ref_v = received.values()[0, 0], exact.values()[0, 0]
    scale = ref[:, :len(ids)].abs().max()
    window = (keys[:, sent:len(ids)] - ref[:, sent:len(ids)]).abs().max() / scale
    decoded = (keys[:, :sent] - ref[:, :sent]).abs().max() / scale
    assert window < 1e-5 < 1e-3 < decoded
    assert torch.allclose(values[:, sent:len(ids)], ref_v[:, sent:len(ids)], rtol=1e-4, atol=1e-5)


def test_redacted_requests_never_carry_a_cache(smollm2, cloud, tmp_path):
    _, address = cloud
    result = answer(smollm2, address, tmp_path, kv=KV_WINS, prompt="Write to jane.doe@example.com about rivers.")
    assert result.record.escalated and result.record.handoff == "token_ids"
    assert result.record.handoff_reason == "redacted"
    assert result.record.handoff_costs_ms == {}


def test_token_ids_win_when_the_link_is_slow(smollm2, cloud, tmp_path):
    _, address = cloud
    result = answer(smollm2, address, tmp_path, kv={**TOKENS_WIN, "codec": "int8"})
    assert result.record.handoff == "token_ids" and result.record.handoff_reason == "cheaper"
    assert result.record.handoff_costs_ms["kv:int8"] > result.record.handoff_costs_ms["token_ids"]


def test_prefill_offload_decodes_on_the_device_exactly_as_a_local_prefill(smollm2, cloud, tmp_path):
    _, address = cloud
    local = answer(smollm2, address, tmp_path, kv={**TOKENS_WIN, "prefill_offload": False}, confidence=None)
    offloaded = answer(smollm2, address, tmp_path, kv={**OFFLOAD_WINS, "codec": "fp16"}, confidence=None)
    assert local.record.handoff is None and local.tier == "edge"
    assert offloaded.record.handoff == "kv_prefill:fp16" and offloaded.tier == "edge"
    assert offloaded.text == local.text
    assert offloaded.record.bytes_received > 10_000 and offloaded.record.latencies_ms["kv_prefill_ms"] > 0


def test_prefill_offload_is_skipped_for_short_redacted_or_unreachable_requests(smollm2, tmp_path):
    from edge.demo import dead_address

    with running_server(smollm2) as (_, port):
        address = f"127.0.0.1:{port}"
        short = answer(smollm2, address, tmp_path, kv={**OFFLOAD_WINS, "min_offload_tokens": 4096}, confidence=None)
        assert short.record.handoff is None
        redacted = answer(smollm2, address, tmp_path, kv=OFFLOAD_WINS, confidence=None,
                          prompt="Call +1 415 555 0100 about rivers in Europe.")
        assert redacted.record.handoff == "local_prefill"
        assert redacted.record.handoff_reason == "redacted_or_local_only"
    down = answer(smollm2, dead_address(), tmp_path, kv=OFFLOAD_WINS, confidence=None)
    assert down.tier == "edge" and down.record.handoff == "local_prefill"
    assert down.record.handoff_reason.startswith("cloud_unavailable")


def test_estimate_has_a_break_even_context_length():
    """Token IDs win on short contexts (one round trip), the cache on long ones (no prefill)."""
    rules = policy_with(kv_handoff={"enabled": True, "link_mbps": 50, "rtt_ms": 40}).kv_handoff
    speeds = PrefillSpeeds(edge=400, cloud=500)
    q4_bytes_per_token = 6300

    def kind(n):
        return choose_continuation(n_cached=n, offers=[KVOffer("q4", n * q4_bytes_per_token)], rules=rules,
                                   speeds=speeds).kind

    assert kind(16) == "token_ids" and kind(8000) == "kv"
    assert choose_continuation(n_cached=8000, offers=[KVOffer("q4", 1)], rules=rules, speeds=speeds,
                               ineligible="kv_incompatible_models").kind == "token_ids"
    recompute = choose_continuation(n_cached=8000, offers=[KVOffer("q4", 7616 * q4_bytes_per_token, 384)],
                                    rules=rules, speeds=speeds)
    plain = choose_continuation(n_cached=8000, offers=[KVOffer("q4", 7616 * q4_bytes_per_token)], rules=rules,
                                speeds=speeds)
    assert recompute.costs_ms["kv:q4"] == pytest.approx(plain.costs_ms["kv:q4"] + 384 / speeds.cloud * 1000, abs=0.1)
    assert choose_continuation(n_cached=300, offers=[KVOffer("q4", 0, 300)], rules=rules,
                               speeds=speeds).reason == "kv_nothing_to_send"
    disabled = policy_with(kv_handoff=None).kv_handoff
    assert choose_prefill(n_prompt=8000, offers=[KVOffer("int8", 1)], rules=disabled,
                          speeds=speeds).kind == "local_prefill"
    speeds.observe("cloud", 1000, 0.5)
    assert 500 < speeds.cloud < 2000


def test_auto_weighs_int8_against_q4_by_link_and_cloud_prefill_speed():
    """The fewer bytes of q4 against the positions it leaves for the cloud to prefill: q4 on a
    slow link to a fast cloud, int8 on a fast link or to a slow cloud; a context inside q4's
    window goes as int8."""
    rules = policy_with(kv_handoff={"enabled": True, "codec": "auto", "link_mbps": 50, "rtt_ms": 40}).kv_handoff
    assert rules.codecs("up") == ("int8", "q4") and rules.codecs("down") == ("int8",)
    n, window = 2048, DEFAULT_RECOMPUTE_TOKENS
    offers = [KVOffer("int8", n * 10_400), KVOffer("q4", (n - window) * 6_500, window)]

    def pick(link_mbps, cloud_tokens_per_s, offers=offers, n=n):
        r = policy_with(kv_handoff={"enabled": True, "link_mbps": link_mbps, "rtt_ms": 40}).kv_handoff
        choice = choose_continuation(n_cached=n, offers=offers, rules=r, speeds=PrefillSpeeds(400, cloud_tokens_per_s))
        assert set(choice.costs_ms) == {"token_ids", "kv:int8", "kv:q4"} or n <= window
        return choice.codec if choice.by_kv else choice.kind

    assert pick(50, 600) == "q4"
    assert pick(10_000, 600) == "int8"
    assert pick(50, 20_000) == "token_ids"  # a cloud that fast re-prefills sooner than any cache arrives
    assert pick(50, 150) == "int8"
    short = [KVOffer("int8", 300 * 10_400), KVOffer("q4", 0, 300)]
    assert pick(50, 150, short, 300) == "int8"
    explicit = policy_with(kv_handoff={"enabled": True, "codec": "q4"}).kv_handoff
    assert explicit.codecs("up") == explicit.codecs("down") == ("q4",)


