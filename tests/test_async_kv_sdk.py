"""The KV hand-off tests of the sync client (test_kv_sdk.py), run again on AsyncTandemClient."""

from __future__ import annotations

from tests import test_kv_sdk
from tests.async_fixtures import shared_cases
from tests.test_kv_sdk import cloud  # noqa: F401 (the fixture the shared cases use)

globals().update(shared_cases(test_kv_sdk))


def test_every_kv_case_is_shared():
    assert sum(name.endswith("_on_async") for name in globals()) == sum(
        name.startswith("test_") for name in vars(test_kv_sdk))
