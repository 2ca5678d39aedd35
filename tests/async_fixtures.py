"""The sync client's path tests, run again on AsyncTandemClient: a blocking face over the async
client that those tests can use in place of TandemClient, and a wrapper that swaps it in."""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Iterator
from types import ModuleType

import pytest

from edge import AsyncTandemClient


class OnLoop:
    """A blocking face over AsyncTandemClient, so the sync client's tests drive the async client
    unchanged: it owns an event loop in a thread, and every call and every event goes through it."""

    def __init__(self, *args, **kwargs) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self.client = AsyncTandemClient(*args, **kwargs)

    def _run(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=300)

    def __getattr__(self, name: str):
        return getattr(self.client.sync, name)  # speeds, transport, local, policy, audit: the shared core

    def connect(self):
        return self._run(self.client.connect())

    def complete(self, prompt_or_messages, **options):
        return self._run(self.client.complete(prompt_or_messages, **options))

    def chat(self, messages, **options) -> Iterator:
        return self._events(lambda: self.client.chat(messages, **options))

    def generate(self, prompt, **options) -> Iterator:
        return self._events(lambda: self.client.generate(prompt, **options))

    def _events(self, make) -> Iterator:
        async def build():
            return make()

        stream = self._run(build())
        try:
            while True:
                try:
                    yield self._run(stream.__anext__())
                except StopAsyncIteration:
                    return
        finally:
            self._run(stream.aclose())

    def close(self) -> None:
        if self.loop.is_running():
            self._run(self.client.aclose())
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=30)

    def __enter__(self) -> OnLoop:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def _on_the_async_client(module: ModuleType, test):
    """`test` from the sync client's suite, with that module's TandemClient replaced by OnLoop."""

    @functools.wraps(test)
    def run(*args, **kwargs):
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(module, "TandemClient", OnLoop)
            return test(*args, **kwargs)

    return run


def shared_cases(module: ModuleType) -> dict:
    """Every test of `module`, renamed `<name>_on_async`, to be placed in a test module's globals."""
    return {f"{name}_on_async": _on_the_async_client(module, test)
            for name, test in vars(module).items() if name.startswith("test_") and callable(test)}
