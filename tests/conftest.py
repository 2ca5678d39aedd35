"""Shared fixtures: the real packaged models, public-domain prose, and small
random-weight checkpoints written in the real Hugging Face layout."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
TEXTS = REPO / "data" / "texts"
# The slices the tests read by default (data/texts/SOURCES.md); other files there serve other uses.
PROSE_FILES = ("kjv-genesis.txt", "sotu-1790-washington.txt", "sotu-1863-lincoln.txt", "sotu-1941-roosevelt.txt",
               "sotu-1962-kennedy.txt", "sotu-1995-clinton.txt")
# Optional larger sweeps: the whole collection the slices come from (kjv.txt + sotu/*.txt).
SHARED_DATA_ENV = "TANDEM_SHARED_DATA"


@pytest.fixture(scope="session")
def prose() -> list[tuple[str, str]]:
    """(name, text) of real public-domain prose: the slices shipped in data/texts, or,
    with TANDEM_SHARED_DATA set, the whole collection they were cut from."""
    folder = os.environ.get(SHARED_DATA_ENV)
    if not folder:
        return [(name, (TEXTS / name).read_text(encoding="utf-8")) for name in PROSE_FILES]
    path = Path(folder).expanduser()
    paths = [path / "kjv.txt", *sorted((path / "sotu").glob("*.txt"))]
    if not paths[0].is_file() or len(paths) == 1:
        pytest.fail(f"{SHARED_DATA_ENV}={folder}: expected kjv.txt and sotu/*.txt in it")
    return [(p.name, p.read_text(encoding="utf-8")) for p in paths]


@pytest.fixture(scope="session")
def smollm2_path() -> Path:
    from engine.registry import resolve

    return resolve("smollm2-135m")


@pytest.fixture(scope="session")
def llama3_tokenizer_path() -> Path:
    from engine.registry import resolve

    return resolve("llama3-tokenizer")


@pytest.fixture(scope="session")
def smollm2(smollm2_path):
    """SmolLM2 at full precision (its Q4_1 weights dequantized): the cloud tier and the reference."""
    from engine.runtime import LocalModel

    return LocalModel.load(smollm2_path, max_context=2048, precision="full")


@pytest.fixture(scope="session")
def smollm2_device(smollm2_path):
    """SmolLM2 as the device runs it: the GGUF's Q4_1 blocks kept quantized."""
    from engine.runtime import LocalModel

    return LocalModel.load(smollm2_path, max_context=2048, precision="device")


@pytest.fixture(scope="session")
def llama3_tokenizer_json(tmp_path_factory, llama3_tokenizer_path) -> Path:
    """Llama 3's tokenizer converted to tokenizer.json by transformers (an independent converter)."""
    from transformers import PreTrainedTokenizerFast
    from transformers.convert_slow_tokenizer import TikTokenConverter

    from engine.tokenizer import load_tiktoken

    specials = load_tiktoken(llama3_tokenizer_path).specials
    converted = TikTokenConverter(str(llama3_tokenizer_path), extra_special_tokens=list(specials)).converted()
    tok = PreTrainedTokenizerFast(tokenizer_object=converted, bos_token="<|begin_of_text|>", eos_token="<|eot_id|>")
    out = tmp_path_factory.mktemp("llama3_tokenizer")
    tok.save_pretrained(out)
    return out / "tokenizer.json"


def write_hf_checkpoint(
    folder: Path,
    *,
    vocab_size: int = 128256,
    hidden_size: int = 64,
    layers: int = 2,
    heads: int = 4,
    kv_heads: int = 2,
    intermediate: int = 160,
    tie: bool = True,
    rope_scaling: dict | None = None,
    max_positions: int = 512,
    seed: int = 0,
    shard_size: str | None = None,
    tokenizer_json: Path | None = None,
) -> Path:
    """A random-weight LlamaForCausalLM saved by transformers itself (config.json + safetensors)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab_size, hidden_size=hidden_size, num_hidden_layers=layers,
        num_attention_heads=heads, num_key_value_heads=kv_heads, intermediate_size=intermediate,
        tie_word_embeddings=tie, max_position_embeddings=max_positions, rope_theta=500000.0,
        rope_scaling=rope_scaling, bos_token_id=128000, eos_token_id=128009,
    )
    model = LlamaForCausalLM(config).eval()
    with torch.no_grad():  # HF's init is tiny (std 0.02); widen it so logits are not all ~0.
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(0, 0.2)
    kwargs = {"max_shard_size": shard_size} if shard_size else {}
    model.save_pretrained(folder, safe_serialization=True, **kwargs)
    if tokenizer_json is not None:
        shutil.copy(tokenizer_json, folder / "tokenizer.json")
        cfg = tokenizer_json.with_name("tokenizer_config.json")
        if cfg.exists():
            shutil.copy(cfg, folder / "tokenizer_config.json")
    return folder


@pytest.fixture(scope="session")
def hf_checkpoint_factory(tmp_path_factory, llama3_tokenizer_json):
    """Returns a function that writes a random HF checkpoint with the real Llama 3 tokenizer."""

    def make(name: str, **kwargs) -> Path:
        folder = tmp_path_factory.mktemp(name)
        return write_hf_checkpoint(folder, tokenizer_json=llama3_tokenizer_json, **kwargs)

    return make


@pytest.fixture(scope="session")
def llama3_small(hf_checkpoint_factory):
    """A device-sized stand-in for Llama-3.2-1B: random weights, real HF layout, real Llama 3 tokenizer."""
    from engine.runtime import LocalModel

    folder = hf_checkpoint_factory("llama3_small", hidden_size=64, layers=2, heads=4, kv_heads=2, seed=1)
    return LocalModel.load(folder, max_context=512)


@pytest.fixture(scope="session")
def llama3_large(hf_checkpoint_factory):
    """A cloud-sized stand-in for Llama-3.1-8B: more layers, wider, another GQA ratio, the same tokenizer."""
    from engine.runtime import LocalModel

    folder = hf_checkpoint_factory("llama3_large", hidden_size=128, layers=4, heads=8, kv_heads=2,
                                   intermediate=384, seed=2)
    return LocalModel.load(folder, max_context=512)


def relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
    """Largest absolute difference over the largest magnitude of the reference."""
    return float((got - want).abs().max() / want.abs().max())


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter) -> None:
    """Say loudly when the engine integration tests did not run, and how to run them."""
    skipped = terminalreporter.stats.get("skipped", [])
    missing = sum("make engines" in str(getattr(report, "longrepr", "")) for report in skipped)
    if missing:
        terminalreporter.write_line(
            f"NOTE: {missing} tests against a real llama.cpp llama-server were SKIPPED because it is not built; "
            "run `make engines` once (~20 min on 2 cores) and `make test` again to run them.", yellow=True, bold=True)
