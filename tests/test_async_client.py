"""AsyncTandemClient: the sync client's path tests run again on it (test_async_kv_sdk.py: the KV ones), plus
what only an asyncio client has (concurrency on one loop, cancellation)."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from cloud.config import ServerConfig
from edge import AsyncTandemClient, Done, Text
from edge.demo import DOCUMENT
from tests import test_edge_faults, test_edge_handoff, test_edge_paths, test_edge_privacy
from tests.async_fixtures import OnLoop, shared_cases
from tests.cloud_fixtures import client_for, running_server
from tests.edge_fixtures import policy_with
from tests.test_edge_paths import QUESTION, SMALL_DEVICE, cloud  # noqa: F401 (`cloud` is a fixture)


globals().update(shared_cases(test_edge_paths))
globals().update(shared_cases(test_edge_handoff))
globals().update(shared_cases(test_edge_privacy))
globals().update(shared_cases(test_edge_faults))


def test_the_shared_cases_run_on_the_async_client():
    assert test_edge_paths.TandemClient is not OnLoop  # patched per test only
    shared = [n for n in globals() if n.endswith("_on_async")]
    assert len(shared) >= 19 and "test_confident_answer_stays_on_the_device_on_async" in shared


# --- what only an asyncio client has ----------------------------------------------


def test_the_journey_runs_off_the_event_loop(smollm2, tmp_path):
    """While the device decodes, the loop keeps ticking: no tick waits for a token."""

    async def main():
        async with AsyncTandemClient(smollm2, policy=policy_with(), audit_log=None) as client:
            gaps: list[float] = []
            stop = asyncio.Event()

            async def tick():
                last = time.perf_counter()
                while not stop.is_set():
                    await asyncio.sleep(0.005)
                    now = time.perf_counter()
                    gaps.append(now - last)
                    last = now

            ticker = asyncio.create_task(tick())
            answer = await client.complete(QUESTION, max_new_tokens=24)
            stop.set()
            await ticker
            return answer, gaps

    answer, gaps = asyncio.run(main())
    assert "Paris" in answer.text and answer.record.tier == "edge"
    assert len(gaps) > 5
    assert max(gaps) < 0.5, max(gaps)  # a blocking prefill + 24-token decode would stall one tick for seconds


def test_batches_hand_text_over_at_most_every_interval_and_the_end_at_once(smollm2):
    """next_batch(text_every_s=30): the first text at once, the rest together with Done, which does not
    wait for the interval; without one, every batch is what was waiting (all the text, in order)."""

    async def batches(every: float) -> tuple[list[list], float]:
        async with AsyncTandemClient(smollm2, policy=policy_with(), audit_log=None) as client:
            # long enough to outlast the policy's 16 held tokens, which come out as one Text
            stream = client.generate("Write a short story about a lighthouse keeper.", max_new_tokens=40)
            start = time.perf_counter()
            out = []
            while batch := await stream.next_batch(text_every_s=every):
                out.append(batch)
            return out, time.perf_counter() - start

    held, seconds = asyncio.run(batches(30.0))
    each, _ = asyncio.run(batches(0.0))
    assert seconds < 30 and len(held) <= 2 and isinstance(held[-1][-1], Done)
    for got in (held, each):
        events = [e for batch in got for e in batch]
        assert "".join(e.text for e in events if isinstance(e, Text)) == events[-1].text
    assert len(each) > 2


def test_eight_concurrent_requests_on_one_loop_all_complete(smollm2, cloud, tmp_path):  # noqa: F811
    address, _ = cloud
    policy = policy_with(edge=SMALL_DEVICE)
    long_prompt = DOCUMENT[:400] + "\n\nWhat is this about?"

    async def main():
        async with AsyncTandemClient(smollm2, cloud=address, policy=policy, audit_log=tmp_path / "a.jsonl") as c:
            jobs = [c.complete(QUESTION if i % 2 else long_prompt, max_new_tokens=8, request_id=f"r{i}")
                    for i in range(8)]
            answers = await asyncio.gather(*jobs)
            return answers, c.in_flight

    answers, in_flight = asyncio.run(main())
    assert [a.record.request_id for a in answers] == [f"r{i}" for i in range(8)]
    assert {a.record.tier for a in answers[0::2]} == {"cloud"} and {a.record.tier for a in answers[1::2]} == {"edge"}
    assert len({a.text for a in answers[1::2]}) == 1  # same greedy answer, whatever the interleaving
    assert in_flight == 0 and len((tmp_path / "a.jsonl").read_text().splitlines()) == 8


def test_a_cancelled_task_cancels_its_cloud_stream(smollm2, tmp_path):
    """Cancelling the reading task ends the cloud's stream (its slot is released) while the client,
    and so its channel, stays open; the journey lets go of the device too."""
    prompt = DOCUMENT[:600]
    policy = policy_with(edge=SMALL_DEVICE)

    async def main(server, address: str):
        async with AsyncTandemClient(smollm2, cloud=address, policy=policy, audit_log=tmp_path / "a.jsonl") as c:
            first_cloud_text = asyncio.Event()

            async def read():
                async for event in c.generate(prompt, max_new_tokens=400):
                    if isinstance(event, Text) and event.tier == "cloud":
                        first_cloud_text.set()

            task = asyncio.create_task(read())
            await asyncio.wait_for(first_cloud_text.wait(), timeout=120)
            assert server.servicer.admission.active == 1
            task.cancel()
            cancelled_at = time.monotonic()
            with pytest.raises(asyncio.CancelledError):
                await task
            while (server.servicer.admission.active or c.in_flight) and time.monotonic() - cancelled_at < 10:
                await asyncio.sleep(0.02)
            return server.servicer.admission.active, c.in_flight, time.monotonic() - cancelled_at

    with running_server(smollm2, config=ServerConfig(max_concurrency=1, max_queue=0)) as (server, port):
        active, in_flight, seconds = asyncio.run(main(server, f"127.0.0.1:{port}"))
        with client_for(port) as other:  # the only slot is free: admitted, not UNAVAILABLE
            done = other.generate(smollm2.encode_prompt(QUESTION), max_new_tokens=2, timeout=60)
    assert (active, in_flight) == (0, 0) and seconds < 10
    assert done.result is not None and len(done.token_ids) == 2
    record = json.loads((tmp_path / "a.jsonl").read_text())
    assert record["fallback"] == "abandoned_by_caller" and record["route"] == "cloud"
    assert record["tokens"]["cloud"] < 400


def test_connect_reports_the_cloud_and_refuses_without_one(smollm2, cloud):  # noqa: F811
    from edge import CloudUnavailableError

    address, _ = cloud

    async def main():
        async with AsyncTandemClient(smollm2, cloud=address, audit_log=None) as up:
            info = await up.connect()
        async with AsyncTandemClient(smollm2, audit_log=None) as alone:
            with pytest.raises(CloudUnavailableError, match="no cloud"):
                await alone.connect()
        return info

    assert asyncio.run(main()).tokenizer_fingerprint == smollm2.tokenizer.fingerprint


def test_a_stream_closed_before_it_is_read_never_runs(smollm2):
    async def main():
        async with AsyncTandemClient(smollm2, audit_log=None) as client:
            stream = client.generate(QUESTION, max_new_tokens=4)
            await stream.aclose()
            events = [e async for e in stream]
            opened = client.generate(QUESTION, max_new_tokens=4)
            record = await opened.opened()
            rest = [e async for e in opened]
            return events, record, rest

    events, record, rest = asyncio.run(main())
    assert events == [] and record.route == "local"
    assert isinstance(rest[-1], Done) and rest[-1].record is record


def test_bad_options_raise_on_the_reading_task(smollm2):
    async def main():
        async with AsyncTandemClient(smollm2, audit_log=None) as client:
            with pytest.raises(ValueError, match="max_new_tokens"):
                await client.complete(QUESTION, max_new_tokens=0)
            return client.in_flight

    assert asyncio.run(main()) == 0
