"""The `tandem` command as a user runs it: a real subprocess, the real model."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import REPO


def tandem(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tandem", *args], cwd=REPO, capture_output=True, text=True, timeout=timeout
    )


def test_generate_answers_paris():
    result = tandem("generate", "What is the capital of France?", "--max-new-tokens", "24")
    assert result.returncode == 0, result.stderr
    assert "Paris" in result.stdout


def test_generate_json_prints_signals_per_token():
    result = tandem("generate", "Hi", "--json", "--max-new-tokens", "4")
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert 1 <= len(rows) <= 4
    assert set(rows[0]) == {"id", "text", "logprob", "entropy", "margin", "finish_reason"}
    assert rows[-1]["finish_reason"] in {"stop", "length"}


def test_models_lists_packaged_assets():
    result = tandem("models")
    assert result.returncode == 0
    assert "smollm2-135m" in result.stdout and "llama3-tokenizer" in result.stdout
    assert "installed" in result.stdout


def test_missing_model_is_a_clear_error():
    result = tandem("generate", "x", "--model", "/no/such/model.gguf")
    assert result.returncode == 1
    assert "no model at '/no/such/model.gguf'" in result.stderr
    assert "Traceback" not in result.stderr


def test_prompt_longer_than_context_is_a_clear_error():
    result = tandem("generate", "word " * 600, "--max-context", "256", "--max-new-tokens", "8")
    assert result.returncode == 1
    assert "longer than the model's context of 256 tokens" in result.stderr
