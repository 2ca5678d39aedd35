"""Per-session prefix cache: the store's rules on small caches, then reuse on the real server."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cloud.config import ServerConfig
from cloud.sessions import ALLOCATION_STEP, KEEP_STEP, PrefixCache, common_prefix, fit_cache
from engine.config import ModelConfig
from engine.model import KVCache
from tandem_rpc.v1 import cloud_pb2
from tests.cloud_fixtures import RPC_TIMEOUT_S, client_for, running_server
from tests.conftest import TEXTS

TINY = ModelConfig(vocab_size=32, dim=8, n_layers=1, n_heads=1, n_kv_heads=1, ffn_dim=8, max_seq_len=64)


def filled_cache(tokens: list[int]) -> KVCache:
    cache = KVCache(TINY, 64)
    cache.k[:, :, :, : len(tokens)] = torch.tensor(tokens, dtype=torch.float32)[:, None]
    cache.pos = len(tokens)
    return cache


def test_a_follow_up_that_extends_the_sequence_reuses_all_of_it_but_the_last_prompt_token():
    store = PrefixCache(max_bytes=10**9, max_sessions=8)
    store.put("p", "s", [1, 2, 3, 4], filled_cache([1, 2, 3, 4]))
    cache, reused = store.take("p", "s", [1, 2, 3, 4, 5, 6])
    assert reused == 4 and cache.pos == 4
    store.put("p", "s", [1, 2, 3, 4], filled_cache([1, 2, 3, 4]))
    cache, reused = store.take("p", "s", [1, 2, 3, 4])  # same prompt again: its last token must be fed anew
    assert reused == 3 and cache.pos == 3


def test_a_diverging_prompt_reuses_only_the_common_prefix_and_an_unrelated_one_nothing():
    store = PrefixCache(max_bytes=10**9, max_sessions=8)
    store.put("p", "s", [1, 2, 3, 4], filled_cache([1, 2, 3, 4]))
    cache, reused = store.take("p", "s", [1, 2, 9, 9, 9])
    assert reused == 2 and cache.pos == 2 and torch.equal(cache.k[0, 0, 0, :2, 0], torch.tensor([1.0, 2.0]))
    store.put("p", "s", [1, 2, 3, 4], filled_cache([1, 2, 3, 4]))
    assert store.take("p", "s", [7, 1, 2, 3]) == (None, 0)


def test_sessions_never_see_each_others_cache_and_a_taken_cache_is_exclusive():
    store = PrefixCache(max_bytes=10**9, max_sessions=8)
    store.put("p", "alice", [1, 2, 3], filled_cache([1, 2, 3]))
    assert store.take("p", "bob", [1, 2, 3, 4]) == (None, 0)
    cache, reused = store.take("p", "alice", [1, 2, 3, 4])
    assert reused == 3
    assert store.take("p", "alice", [1, 2, 3, 4]) == (None, 0)  # in use by the first request


def test_least_recently_used_sessions_are_evicted_past_the_byte_bound():
    one = filled_cache([1]).nbytes
    store = PrefixCache(max_bytes=2 * one, max_sessions=100)
    for name in ("a", "b", "c"):
        store.put("p", name, [1], filled_cache([1]))
    assert len(store) == 2 and store.nbytes == 2 * one
    assert store.take("p", "a", [1, 2]) == (None, 0)
    assert store.take("p", "b", [1, 2])[1] == 1 and store.take("p", "c", [1, 2])[1] == 1


def test_the_session_count_bound_evicts_too_and_an_oversized_cache_is_not_kept():
    store = PrefixCache(max_bytes=10**9, max_sessions=1)
    store.put("p", "a", [1], filled_cache([1]))
    store.put("p", "b", [1], filled_cache([1]))
    assert len(store) == 1 and store.take("p", "a", [1, 2]) == (None, 0)
    small = PrefixCache(max_bytes=filled_cache([1]).nbytes - 1, max_sessions=10)
    small.put("p", "a", [1], filled_cache([1]))
    assert len(small) == 0 and small.nbytes == 0


def test_a_session_id_names_nothing_outside_its_principal():
    store = PrefixCache(max_bytes=10**9, max_sessions=8)
    store.put("alice", "s", [1, 2, 3], filled_cache([1, 2, 3]))
    assert store.take("mallory", "s", [1, 2, 3, 4]) == (None, 0)
    assert store.take("alice", "s", [1, 2, 3, 4])[1] == 3  # mallory's probe neither hit nor removed it


def test_one_principal_flooding_tiny_sessions_evicts_its_own_not_everyone_elses():
    one = filled_cache([1]).nbytes
    store = PrefixCache(max_bytes=10 * one, max_sessions=8)
    store.put("alice", "a1", [1], filled_cache([1]))
    store.put("bob", "b1", [1], filled_cache([1]))
    for i in range(100):
        store.put("mallory", f"m{i}", [1], filled_cache([1]))
    assert len(store) == 8 and store.bytes_of("mallory") == 6 * one
    assert store.take("alice", "a1", [1, 2])[1] == 1 and store.take("bob", "b1", [1, 2])[1] == 1


def test_put_refuses_tokens_that_do_not_match_the_cache():
    with pytest.raises(ValueError, match="holds 2 positions but 3 tokens"):
        PrefixCache(10**9, 8).put("p", "s", [1, 2, 3], filled_cache([1, 2]))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 3), min_size=1, max_size=12), st.lists(st.integers(0, 3), min_size=1, max_size=12))
def test_reuse_is_the_common_prefix_capped_to_leave_one_prompt_token(held, prompt):
    store = PrefixCache(max_bytes=10**9, max_sessions=8)
    store.put("p", "s", held, filled_cache(held))
    cache, reused = store.take("p", "s", prompt)
    expected = min(common_prefix(held, prompt), len(prompt) - 1)
    assert reused == max(expected, 0)
    assert (cache is None) == (expected <= 0)
    if cache is not None:
        assert cache.pos == reused and held[:reused] == prompt[:reused]


def test_fit_cache_grows_in_steps_and_keeps_the_cached_positions(smollm2):
    cache = fit_cache(smollm2, None, 10)
    assert cache.max_seq_len == ALLOCATION_STEP
    cache.k[:, :, :, :10] = 1.5
    cache.pos = 10
    assert fit_cache(smollm2, cache, 200) is cache
    bigger = fit_cache(smollm2, cache, ALLOCATION_STEP + 1)
    assert bigger.max_seq_len == 2 * ALLOCATION_STEP and bigger.pos == 10
    assert torch.equal(bigger.k[:, :, :, :10], cache.k[:, :, :, :10])
    assert fit_cache(smollm2, None, 10**6).max_seq_len == smollm2.max_context


@pytest.fixture(scope="module")
def long_prompt(smollm2) -> list[int]:
    """About 500 tokens of the King James Bible, as one user turn."""
    text = (TEXTS / "kjv-genesis.txt").read_text()[:2200]
    ids = smollm2.encode_prompt(f"Summarise this passage in one sentence:\n{text}")
    assert 400 < len(ids) < 1000
    return ids


def test_a_follow_up_turn_reuses_the_sessions_cache_and_prefills_faster(smollm2, long_prompt):
    tok = smollm2.tokenizer
    with running_server(smollm2, config=ServerConfig(max_concurrency=1, max_queue=4)) as (_, port):
        with client_for(port) as c:
            first = c.generate(long_prompt, session_id="alice", max_new_tokens=4, timeout=RPC_TIMEOUT_S)
            turn = tok.encode("<|im_end|>\n<|im_start|>user\nShorter, please.<|im_end|>\n<|im_start|>assistant\n",
                              allow_special=True)
            follow_up_ids = long_prompt + first.token_ids + turn
            follow_up = c.generate(follow_up_ids, session_id="alice", max_new_tokens=4, timeout=RPC_TIMEOUT_S)
            fresh = c.generate(follow_up_ids, session_id="bob", max_new_tokens=4, timeout=RPC_TIMEOUT_S)
    assert first.result.usage.cached_prompt_tokens == 0
    # The cache holds the prompt and every generated token but the last (never fed to the model).
    assert follow_up.result.usage.cached_prompt_tokens == len(long_prompt) + len(first.token_ids) - 1
    assert fresh.result.usage.cached_prompt_tokens == 0  # another session never hits alice's cache
    assert follow_up.result.timings.prefill_ms < fresh.result.timings.prefill_ms / 2, (
        follow_up.result.timings, fresh.result.timings)
    assert follow_up.token_ids == fresh.token_ids  # reuse does not change the answer


def test_the_same_session_id_with_an_unrelated_prompt_reuses_only_the_shared_prefix(smollm2):
    with running_server(smollm2) as (server, port), client_for(port) as c:
        a = smollm2.encode_prompt("What is the capital of France?")
        b = smollm2.encode_prompt("Name three rivers in Africa.")
        first = c.generate(a, session_id="s", max_new_tokens=2, timeout=RPC_TIMEOUT_S)
        second = c.generate(b, session_id="s", max_new_tokens=2, timeout=RPC_TIMEOUT_S)
        hits = server.metrics.registry.get_sample_value("tandem_cloud_prefix_cache_hits_total")
        misses = server.metrics.registry.get_sample_value("tandem_cloud_prefix_cache_misses_total")
    shared = common_prefix(a + first.token_ids, b)
    assert 0 < shared < len(b)  # the chat template's system prompt, no more
    assert second.result.usage.cached_prompt_tokens == shared
    assert (hits, misses) == (1, 1)


def test_a_kept_session_is_accounted_by_the_positions_it_holds_not_its_allocation(smollm2):
    prompt = smollm2.encode_prompt("Say hi.")
    with running_server(smollm2) as (server, port), client_for(port) as c:
        answer = c.generate(prompt, session_id="tiny", max_new_tokens=1500, timeout=RPC_TIMEOUT_S)
        held = server.servicer.backend.sessions.nbytes
    assert answer.result.finish_reason == cloud_pb2.FINISH_REASON_STOP  # a short answer in a 1,500-token cache
    per_position = smollm2.new_cache(1).nbytes
    positions = len(prompt) + len(answer.token_ids) - 1
    assert 0 < held <= -(-positions // KEEP_STEP) * KEEP_STEP * per_position
    assert held < (len(prompt) + 1500) * per_position / 10  # not what the request's cache was allocated for


def _two_callers(port: int):
    return client_for(port, token="alice-token"), client_for(port, token="mallory-token")


def test_a_session_belongs_to_its_caller_and_reuse_reveals_nothing_across_callers(smollm2):
    """Mallory sends Alice's session id with a guessed prompt: no reuse, no count, Alice's cache intact."""
    secret = smollm2.encode_prompt("My diagnosis is diabetes. What should I eat?")
    with running_server(smollm2, auth_tokens=["alice-token", "mallory-token"]) as (server, port):
        alice, mallory = _two_callers(port)
        with alice, mallory:
            alice.generate(secret, session_id="alice-chat", max_new_tokens=2, timeout=RPC_TIMEOUT_S)
            guess = mallory.generate(secret[:-3] + secret[-3:], session_id="alice-chat", max_new_tokens=2,
                                     timeout=RPC_TIMEOUT_S)
            again = alice.generate(secret, session_id="alice-chat", max_new_tokens=2, timeout=RPC_TIMEOUT_S)
    assert guess.result.usage.cached_prompt_tokens == 0  # no side channel: nothing of alice's was reused
    assert again.result.usage.cached_prompt_tokens == len(secret) - 1  # mallory neither read nor evicted it


def test_without_auth_callers_are_told_apart_by_address(smollm2):
    """No tokens configured: the principal is the peer's address (documented); here both share 127.0.0.1,
    so they share sessions, while the principal string names the host, not the connection."""
    from cloud.auth import principal_of
    assert principal_of((), "ipv4:127.0.0.1:51234", authenticated=False) == "peer:ipv4:127.0.0.1"
    assert principal_of((), "ipv6:[::1]:51234", authenticated=False) == "peer:ipv6:[::1]"
    assert principal_of((("authorization", "Bearer t1"),), "ipv4:10.0.0.1:1", authenticated=True) != \
        principal_of((("authorization", "Bearer t2"),), "ipv4:10.0.0.1:1", authenticated=True)
