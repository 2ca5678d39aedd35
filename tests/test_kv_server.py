"""The KV hand-off over real gRPC on loopback with the real SmolLM2: UploadKV, ResumeFromKV and
PrefillKV; exact continuation with fp16; every refusal's status code; nothing left behind."""

from __future__ import annotations

import threading
import time

import grpc
import pytest

from cloud.client import generate_request
from cloud.config import ServerConfig
from cloud.contract import fingerprint_message
from cloud.kv_store import KVStore, StoreFullError
from engine.fingerprint import ModelFingerprint
from engine.generate import generate_tokens
from engine.kv import CodecOptions, KVLayout, decode_frames, encode_cache
from tests.cloud_fixtures import RPC_TIMEOUT_S, client_for, running_server, status_of

PROMPT = "Write one sentence about the sea."
N_NEW = 10


@pytest.fixture(scope="module")
def server(smollm2):
    with running_server(smollm2) as (srv, port):
        yield srv, port


@pytest.fixture(scope="module")
def prompt_ids(smollm2):
    return smollm2.encode_prompt(PROMPT)


@pytest.fixture(scope="module")
def local_answer(smollm2, prompt_ids):
    """The full-precision model's own greedy answer: the reference every hand-off must reproduce."""
    return [e.token.id for e in smollm2.stream(prompt_ids, max_new_tokens=N_NEW)]


def edge_state(model, prompt_ids, n_generated):
    """What an edge holds after generating `n_generated` tokens: the cache (prompt plus all but
    the last generated token, which is not fed yet) and those tokens."""
    cache = model.new_cache(len(prompt_ids) + N_NEW)
    tokens = []
    for token in generate_tokens(model.model, cache, prompt_ids, max_new_tokens=n_generated):
        tokens.append(token.id)
    return cache, tokens


def upload(client, model, cache, tokens_in_cache, codec="fp16", fingerprint=None, **kwargs):
    frames = encode_cache(cache, fingerprint or model.fingerprint, CodecOptions(codec))
    return client.upload_kv(tokens_in_cache, frames, codec=codec, timeout=RPC_TIMEOUT_S, **kwargs)


def test_info_advertises_codecs_and_kv_limits(server):
    _, port = server
    with client_for(port) as client:
        info = client.info(timeout=RPC_TIMEOUT_S)
    assert list(info.kv_codecs) == ["fp16", "int8", "q4"]
    assert info.kv_limits.max_frame_bytes == 1024 * 1024
    assert info.kv_limits.max_tokens == info.max_context and info.kv_limits.max_upload_bytes > 0


def test_fp16_handoff_continues_exactly_like_the_local_greedy_decode(server, smollm2, prompt_ids, local_answer):
    _, port = server
    cache, generated = edge_state(smollm2, prompt_ids, 4)
    assert generated == local_answer[:4]
    in_cache = prompt_ids + generated[:-1]
    with client_for(port) as client:
        result = upload(client, smollm2, cache, in_cache, reserve_tokens=N_NEW)
        assert result.n_tokens == len(in_cache) and result.kv_handle
        out = client.resume(result.kv_handle, prompt_ids + generated, max_new_tokens=N_NEW - 4,
                            timeout=RPC_TIMEOUT_S)
    assert out.token_ids == local_answer[4:]
    assert out.result.usage.cached_prompt_tokens == len(in_cache)


def test_quantized_edge_cache_seeds_the_full_precision_cloud(server, smollm2_device, prompt_ids):
    _, port = server
    cache, generated = edge_state(smollm2_device, prompt_ids, 2)
    in_cache = prompt_ids + generated[:-1]
    with client_for(port) as client:
        result = upload(client, smollm2_device, cache, in_cache, codec="q4")
        out = client.resume(result.kv_handle, prompt_ids + generated, max_new_tokens=4, timeout=RPC_TIMEOUT_S)
    assert len(out.token_ids) == 4 and out.result.usage.cached_prompt_tokens == len(in_cache)


def test_a_handle_resumes_once_and_only_a_prompt_that_extends_its_tokens(server, smollm2, prompt_ids):
    srv, port = server
    cache, generated = edge_state(smollm2, prompt_ids, 1)
    with client_for(port) as client:
        handle = upload(client, smollm2, cache, prompt_ids, codec="int8").kv_handle
        client.resume(handle, prompt_ids + generated, max_new_tokens=1, timeout=RPC_TIMEOUT_S)
        code, message = status_of(lambda: client.resume(handle, prompt_ids, max_new_tokens=1,
                                                        timeout=RPC_TIMEOUT_S))
        assert code is grpc.StatusCode.NOT_FOUND and "kv_handle" in message
        handle = upload(client, smollm2, cache, prompt_ids, codec="int8").kv_handle
        other = [prompt_ids[0] + 1] + prompt_ids[1:]
        code, message = status_of(lambda: client.resume(handle, other, max_new_tokens=1, timeout=RPC_TIMEOUT_S))
        assert code is grpc.StatusCode.FAILED_PRECONDITION and "prefix" in message
    assert len(srv.servicer.backend.kv.store) == 0


def assert_refused(srv, port, frames, tokens, code, match):
    with client_for(port) as client:
        got, message = status_of(lambda: client.upload_kv(tokens, frames, codec="q4", timeout=RPC_TIMEOUT_S))
    assert got is code, message
    assert match in message
    assert len(srv.servicer.backend.kv.store) == 0 and srv.servicer.backend.kv.store.nbytes == 0  # nothing left behind


@pytest.fixture(scope="module")
def edge_frames(smollm2, prompt_ids):
    cache, _ = edge_state(smollm2, prompt_ids, 1)
    frames = list(encode_cache(cache, smollm2.fingerprint, CodecOptions("q4", frame_bytes=128 * 1024)))
    assert len(frames) > 2
    return frames, prompt_ids


def test_corrupt_truncated_and_incomplete_uploads_are_invalid_argument(server, edge_frames):
    srv, port = server
    frames, tokens = edge_frames
    corrupt = bytearray(frames[0])
    corrupt[len(corrupt) // 2] ^= 0xFF
    assert_refused(srv, port, [bytes(corrupt)] + frames[1:], tokens, grpc.StatusCode.INVALID_ARGUMENT, "checksum")
    assert_refused(srv, port, [frames[0][:-100]] + frames[1:], tokens, grpc.StatusCode.INVALID_ARGUMENT,
                   "truncated")
    assert_refused(srv, port, frames[:-1], tokens, grpc.StatusCode.INVALID_ARGUMENT, "incomplete")
    assert_refused(srv, port, frames, tokens[:-1], grpc.StatusCode.INVALID_ARGUMENT, "names")


def test_a_cache_from_another_model_is_failed_precondition(server, smollm2, prompt_ids):
    srv, port = server
    cache, _ = edge_state(smollm2, prompt_ids, 1)
    other = ModelFingerprint(smollm2.fingerprint.architecture, "fam-0123456789abcdef", "none")
    frames = list(encode_cache(cache, other, CodecOptions("q4")))
    assert_refused(srv, port, frames, prompt_ids, grpc.StatusCode.FAILED_PRECONDITION, "weights family")


def test_cross_precision_is_refused_where_the_server_does_not_accept_it(smollm2, smollm2_device, prompt_ids):
    cache, _ = edge_state(smollm2_device, prompt_ids, 1)
    frames = list(encode_cache(cache, smollm2_device.fingerprint, CodecOptions("q4")))
    with running_server(smollm2, config=ServerConfig(kv_cross_precision=False)) as (srv, port):
        assert_refused(srv, port, frames, prompt_ids, grpc.StatusCode.FAILED_PRECONDITION, "cross-precision")


def test_uploads_past_the_size_limit_are_resource_exhausted(smollm2, edge_frames):
    frames, tokens = edge_frames
    with running_server(smollm2, config=ServerConfig(kv_max_upload_bytes=len(frames[0]) // 2)) as (srv, port):
        assert_refused(srv, port, frames, tokens, grpc.StatusCode.RESOURCE_EXHAUSTED, "limit")


def test_prefill_offload_streams_a_cache_the_edge_continues_from_exactly(server, smollm2, prompt_ids,
                                                                          local_answer):
    _, port = server
    with client_for(port) as client:
        call = client.prefill_kv(prompt_ids[:-1], codec="fp16", receiver=fingerprint_message(smollm2.fingerprint),
                                 timeout=RPC_TIMEOUT_S)
        chunks = list(call)
    start = chunks[0].start
    assert list(start.token_ids) == prompt_ids[:-1] and start.codec == "fp16" and start.prefill_ms > 0
    received = decode_frames([c.frame for c in chunks[1:]], KVLayout.of(smollm2.config), smollm2.fingerprint,
                             lambda n: smollm2.new_cache(n + N_NEW), max_tokens=smollm2.max_context)
    assert received.n_tokens == len(prompt_ids) - 1
    tokens = [e.token.id for e in smollm2.stream(prompt_ids[-1:], max_new_tokens=N_NEW, cache=received.cache)]
    assert tokens == local_answer


def test_prefill_offload_refuses_an_incompatible_receiver_and_unknown_codecs(server, smollm2, smollm2_device,
                                                                             prompt_ids):
    _, port = server
    with client_for(port) as client:
        def prefill(codec, receiver, allow=False):
            return list(client.prefill_kv(prompt_ids, codec=codec, receiver=fingerprint_message(receiver),
                                          allow_cross_precision=allow, timeout=RPC_TIMEOUT_S))

        code, message = status_of(lambda: prefill("q4", smollm2_device.fingerprint))
        assert code is grpc.StatusCode.FAILED_PRECONDITION and "cross-precision" in message
        assert len(prefill("q4", smollm2_device.fingerprint, allow=True)) > 1
        other = ModelFingerprint("arch-0123456789abcdef", smollm2.fingerprint.weights_family, "none")
        code, message = status_of(lambda: prefill("q4", other))
        assert code is grpc.StatusCode.FAILED_PRECONDITION and "architecture" in message
        code, message = status_of(lambda: prefill("q3", smollm2.fingerprint))
        assert code is grpc.StatusCode.INVALID_ARGUMENT and "codec" in message


def test_store_expires_entries_and_stays_within_its_bytes(smollm2):
    now = [0.0]
    cache = smollm2.new_cache(16)
    store = KVStore(max_bytes=2 * cache.nbytes, ttl_s=10.0, clock=lambda: now[0])
    first = store.put([1], cache, "p")
    second = store.put([2], smollm2.new_cache(16), "p")
    third = store.put([3], smollm2.new_cache(16), "p")  # evicts the oldest
    assert store.take(first, "p") is None and len(store) == 2 and store.nbytes == 2 * cache.nbytes
    assert store.take(second, "someone else") is None and len(store) == 2  # not theirs: not found, not taken
    now[0] = 11.0
    assert store.take(second, "p") is None and store.take(third, "p") is None
    assert len(store) == 0 and store.nbytes == 0


def test_one_callers_uploads_evict_its_own_caches_never_a_smaller_holders(smollm2):
    """The store is full: the caller holding the most bytes loses its oldest entry, so a caller
    uploading big caches over and over pushes out its own, and a victim's upload survives; a newcomer
    that would itself be the one to go is refused instead."""
    cache = smollm2.new_cache(16)
    store = KVStore(max_bytes=3 * cache.nbytes, ttl_s=100.0)
    victim = store.put([1], smollm2.new_cache(16), "victim")
    flood = [store.put([2 + i], smollm2.new_cache(16), "mallory") for i in range(5)]
    assert store.take(victim, "victim") is not None  # survived five uploads that filled the store
    assert [store.take(h, "mallory") is not None for h in flood] == [False, False, False, True, True]
    small = KVStore(max_bytes=2 * cache.nbytes, ttl_s=100.0)
    small.put([1], smollm2.new_cache(16), "a")
    small.put([2], smollm2.new_cache(16), "b")
    with pytest.raises(StoreFullError, match="other callers"):  # a tie: the newcomer's own entry would go
        small.put([3], smollm2.new_cache(16), "c")
    assert len(small) == 2


# --- hostile uploaders (issue 15) ----------------------------------------------------------------

def _rss_bytes() -> int:
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


def test_a_forged_upload_never_seeds_another_callers_session(smollm2):
    """Mallory uploads the cache of a Germany prompt labelled with Alice's France prompt and resumes it
    under Alice's session id; Alice's handle-less requests never see it, and her handle-less session
    answers as if nothing happened."""
    france = smollm2.encode_prompt("What is the capital of France?")
    germany = smollm2.encode_prompt("What is the capital of Germany?")
    assert len(france) == len(germany)
    forged = smollm2.new_cache(len(germany) + 8)
    list(generate_tokens(smollm2.model, forged, germany, max_new_tokens=1))
    forged.truncate(len(france) - 1)
    with running_server(smollm2, auth_tokens=["alice-token", "mallory-token"]) as (srv, port):
        alice, mallory = client_for(port, token="alice-token"), client_for(port, token="mallory-token")
        with alice, mallory:
            honest = alice.generate(france, max_new_tokens=4, timeout=RPC_TIMEOUT_S)
            handle = upload(mallory, smollm2, forged, france[:-1]).kv_handle
            code, _ = status_of(lambda: alice.resume(handle, france, max_new_tokens=4, timeout=RPC_TIMEOUT_S))
            assert code is grpc.StatusCode.NOT_FOUND  # not hers: as if it did not exist
            poisoned = mallory.resume(handle, france, session_id="alice-chat", max_new_tokens=4,
                                      timeout=RPC_TIMEOUT_S)
            assert poisoned.token_ids != honest.token_ids  # the forgery does change what its owner gets
            answer = alice.generate(france, session_id="alice-chat", max_new_tokens=4, timeout=RPC_TIMEOUT_S)
    assert answer.result.usage.cached_prompt_tokens == 0
    assert answer.token_ids == honest.token_ids


def test_a_header_claiming_a_whole_context_commits_memory_only_as_frames_arrive_and_idle_uploads_end(smollm2):
    """One small frame of a cache that claims the whole context, then silence: the server must not
    commit a whole cache for the claim, must drop the upload after kv_idle_s, and free its slot."""
    claimed = smollm2.max_context - 1
    big = smollm2.new_cache(smollm2.max_context)
    big.pos = claimed
    first = next(iter(encode_cache(big, smollm2.fingerprint, CodecOptions("q4", frame_bytes=128 * 1024))))
    full_cache_bytes = smollm2.new_cache(smollm2.max_context).nbytes
    config = ServerConfig(kv_idle_s=1.5, kv_max_uploads=1)
    with running_server(smollm2, config=config) as (srv, port), client_for(port) as client:
        release = threading.Event()

        def frames():
            yield first
            release.wait(30)  # the client keeps the stream open and sends nothing more

        outcome = {}

        def run():
            try:
                client.upload_kv(list(range(claimed)), frames(), codec="q4", timeout=RPC_TIMEOUT_S)
            except grpc.RpcError as exc:
                outcome["status"] = (exc.code(), exc.details())

        before = _rss_bytes()
        started = time.monotonic()
        thread = threading.Thread(target=run)
        thread.start()
        time.sleep(0.8)
        grown = _rss_bytes() - before
        thread.join(10)
        release.set()
        ended_after = time.monotonic() - started
        assert grown < full_cache_bytes / 4, f"RSS grew {grown >> 20} MiB for a {len(first)}-byte frame"
        assert outcome["status"][0] is grpc.StatusCode.DEADLINE_EXCEEDED and "dropped" in outcome["status"][1]
        assert ended_after < 1.5 + 3
        cache, generated = edge_state(smollm2, smollm2.encode_prompt(PROMPT), 1)
        assert upload(client, smollm2, cache, smollm2.encode_prompt(PROMPT)).kv_handle  # the slot is free again


def test_nan_or_infinite_values_in_an_uploaded_cache_are_invalid_argument(server, smollm2, prompt_ids, monkeypatch):
    """A hostile client's encoder skips the range check ours makes (patched out here to play
    that client); the server must still refuse what it sends."""
    import engine.kv.quant

    monkeypatch.setattr(engine.kv.quant, "_check_fp16_range", lambda *args: None)
    srv, port = server
    cache, _ = edge_state(smollm2, prompt_ids, 1)
    for bad in (float("nan"), float("inf")):
        poisoned = smollm2.new_cache(cache.max_seq_len)
        cache.copy_into(poisoned)
        poisoned.v[3, 0, 1, 5, 7] = bad
        with client_for(port) as client:
            code, message = status_of(lambda: upload(client, smollm2, poisoned, prompt_ids))
        assert code is grpc.StatusCode.INVALID_ARGUMENT and "NaN or infinite" in message and "layer 3" in message
    assert len(srv.servicer.backend.kv.store) == 0


def test_a_resume_refused_for_overload_keeps_its_handle_for_the_retry(smollm2, prompt_ids):
    cache, generated = edge_state(smollm2, prompt_ids, 1)
    with running_server(smollm2, config=ServerConfig(max_concurrency=1, max_queue=0)) as (srv, port):
        with client_for(port) as client:
            handle = upload(client, smollm2, cache, prompt_ids).kv_handle
            holder = client.stream(generate_request(prompt_ids, max_new_tokens=1500), timeout=RPC_TIMEOUT_S)
            next(holder)
            try:
                code, message = status_of(lambda: client.resume(handle, prompt_ids + generated, max_new_tokens=2,
                                                                timeout=RPC_TIMEOUT_S))
                assert code is grpc.StatusCode.UNAVAILABLE and "retry" in message
            finally:
                holder.cancel()
            deadline = time.monotonic() + 10
            while srv.servicer.admission.active and time.monotonic() < deadline:
                time.sleep(0.05)
            out = client.resume(handle, prompt_ids + generated, max_new_tokens=2, timeout=RPC_TIMEOUT_S)
    assert len(out.token_ids) == 2 and out.result.usage.cached_prompt_tokens == len(prompt_ids)


def test_an_int8_device_cache_seeds_the_cloud_as_it_is(server, smollm2_device, prompt_ids):
    """The device tier with `--kv-cache int8` uploads its rows through the int8 codec without
    rounding again (the frames say int8), and the fp32 cloud continues from them."""
    import dataclasses

    import torch

    from engine.kv import parse_frame

    srv, port = server
    device = dataclasses.replace(smollm2_device, kv_cache="int8")
    cache, generated = edge_state(device, prompt_ids, 2)
    assert cache.k.dtype == torch.int8
    in_cache = prompt_ids + generated[:-1]
    frames = list(encode_cache(cache, device.fingerprint, CodecOptions("int8")))
    assert {parse_frame(f)[0].dtype for f in frames} == {torch.int8}
    with client_for(port) as client:
        result = upload(client, device, cache, in_cache, codec="int8")
        out = client.resume(result.kv_handle, prompt_ids + generated, max_new_tokens=4, timeout=RPC_TIMEOUT_S)
    assert len(out.token_ids) == 4 and out.result.usage.cached_prompt_tokens == len(in_cache)
    assert len(srv.servicer.backend.kv.store) == 0


def test_an_int8_cloud_cache_refuses_nan_or_infinite_scales(smollm2, prompt_ids):
    """A cloud keeping int8 caches receives int8 frames as they are; a NaN or infinite row scale
    (which a hostile sender can put in a frame) is refused like a NaN value in a float cache."""
    import dataclasses

    import torch

    int8 = dataclasses.replace(smollm2, kv_cache="int8")
    cache, _ = edge_state(int8, prompt_ids, 1)
    with running_server(int8) as (srv, port):
        for bad in (float("nan"), float("inf")):
            poisoned = cache.copy_into(int8.new_cache(cache.max_seq_len))
            poisoned.k_scale[2, 0, 1, 3] = bad
            assert poisoned.k.dtype == torch.int8
            with client_for(port) as client:
                code, message = status_of(lambda: upload(client, int8, poisoned, prompt_ids, codec="int8"))
            assert code is grpc.StatusCode.INVALID_ARGUMENT and "NaN or infinite keys" in message
            assert "layer 2" in message
        with client_for(port) as client:
            assert upload(client, int8, cache, prompt_ids, codec="int8").kv_handle


def test_a_dripped_upload_ends_at_the_time_limit_and_holds_only_its_callers_share(smollm2, prompt_ids):
    """Mallory drips valid frames just inside the idle limit: her upload is dropped at kv_max_upload_s,
    a second upload of hers meanwhile is RESOURCE_EXHAUSTED (one at a time per caller), and Alice
    uploads as usual. A PrefillKV cache Mallory does not read likewise blocks only her next one."""
    cache, _ = edge_state(smollm2, prompt_ids, 1)
    frames = list(encode_cache(cache, smollm2.fingerprint, CodecOptions("fp16", frame_bytes=128 * 1024)))
    assert len(frames) >= 3
    config = ServerConfig(kv_idle_s=1.0, kv_max_upload_s=2.5, kv_max_uploads=2)
    with running_server(smollm2, config=config, auth_tokens=["alice", "mallory"]) as (srv, port):
        alice, mallory = client_for(port, token="alice"), client_for(port, token="mallory")
        with alice, mallory:
            def dripped():
                for frame in frames * 10:
                    yield frame
                    time.sleep(0.7)

            outcome = {}

            def run():
                try:
                    mallory.upload_kv(prompt_ids, dripped(), codec="fp16", timeout=RPC_TIMEOUT_S)
                except grpc.RpcError as exc:
                    outcome["status"] = (exc.code(), exc.details(), time.monotonic() - started)

            started = time.monotonic()
            thread = threading.Thread(target=run)
            thread.start()
            time.sleep(0.5)
            second, message = status_of(lambda: upload(mallory, smollm2, cache, prompt_ids))
            assert upload(alice, smollm2, cache, prompt_ids).kv_handle
            thread.join(30)
            held = mallory.prefill_kv(prompt_ids, codec="fp16", receiver=fingerprint_message(smollm2.fingerprint),
                                      timeout=RPC_TIMEOUT_S)
            next(held)  # prefilled; the rest of the cache waits for her to read it
            again, again_message = status_of(lambda: list(mallory.prefill_kv(
                prompt_ids, codec="fp16", receiver=fingerprint_message(smollm2.fingerprint), timeout=RPC_TIMEOUT_S)))
            alices = list(alice.prefill_kv(prompt_ids, codec="fp16", receiver=fingerprint_message(smollm2.fingerprint),
                                           timeout=RPC_TIMEOUT_S))
            held.cancel()
    assert second is grpc.StatusCode.RESOURCE_EXHAUSTED and "KV uploads being received" in message
    code, detail, took = outcome["status"]
    assert code is grpc.StatusCode.DEADLINE_EXCEEDED and "still sending after 2.5 s" in detail and took < 2.5 + 2
    assert again is grpc.StatusCode.RESOURCE_EXHAUSTED and "not yet read" in again_message
    assert alices[0].start.token_ids == prompt_ids and len(alices) > 1
