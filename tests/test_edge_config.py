"""Building a TandemClient: policies by name from any folder, and every construction error in
the SDK's one tree (`except TandemError` catches them; the older types still match)."""

from __future__ import annotations

import pytest

from edge import (
    ConfigurationError,
    InvalidCloudAddressError,
    InvalidPolicyError,
    ModelLoadError,
    TandemClient,
    TandemError,
)
from edge.client import DEFAULT_POLICY, POLICIES, open_policy, policy_path
from engine.errors import EngineError, ModelNotFoundError
from router import PolicyError, load_policy


def test_packaged_policy_names_resolve_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert policy_path("default") == DEFAULT_POLICY
    assert open_policy("strict-privacy").content_hash == load_policy(POLICIES / "strict-privacy.yaml").content_hash
    # Anything with a suffix or a slash is the user's own file, relative to the working directory.
    (tmp_path / "mine.yaml").write_text((POLICIES / "default.yaml").read_text())
    assert policy_path("mine.yaml").resolve() == tmp_path / "mine.yaml"
    assert open_policy("mine.yaml").content_hash == load_policy(DEFAULT_POLICY).content_hash
    assert policy_path("./default") != DEFAULT_POLICY


def test_a_missing_policy_path_says_where_it_looked_and_lists_the_packaged_names(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InvalidPolicyError) as info:
        open_policy("policies/default.yaml")
    message = str(info.value)
    assert f"relative to {tmp_path}" in message and "default, demo, health-app, strict-privacy" in message
    assert isinstance(info.value, PolicyError) and isinstance(info.value, TandemError)


def test_an_invalid_policy_keeps_its_problems_in_the_sdk_error(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text('version: "1.0"\nedge:\n  max_context_tokens: -4\n')
    with pytest.raises(ConfigurationError) as info:
        TandemClient("smollm2-135m", policy=bad)
    assert isinstance(info.value, InvalidPolicyError) and info.value.problems
    assert info.value.problems[0].line is not None and "bad.yaml" in str(info.value)


def test_a_bad_cloud_address_fails_when_the_client_is_built():
    for address in ("127.0.0.1", "http://127.0.0.1:50051"):
        with pytest.raises(InvalidCloudAddressError, match="HOST:PORT") as info:
            TandemClient("smollm2-135m", cloud=address)
        assert isinstance(info.value, ValueError) and isinstance(info.value, TandemError)


def test_a_missing_model_is_an_sdk_error_and_still_an_engine_error():
    with pytest.raises(ModelLoadError, match="no model at '/no/such/model.gguf'") as info:
        TandemClient("/no/such/model.gguf")
    assert isinstance(info.value, EngineError) and isinstance(info.value.__cause__, ModelNotFoundError)
