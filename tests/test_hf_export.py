"""`tandem export-hf`: the embedded GGUF written as a Hugging Face folder that transformers (and so vLLM and
SGLang) load as the same model with the same tokenizer."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from cloud.backends.tokenizer_check import PROBES
from engine.checkpoint import read_checkpoint
from engine.generate import prefill
from engine.quantize import dequantize_weights

PROMPT = "The capital of France is"


@pytest.fixture(scope="module")
def exported(tmp_path_factory, smollm2_path):
    folder = tmp_path_factory.mktemp("smollm2_hf")
    done = subprocess.run([sys.executable, "-m", "tandem.cli", "export-hf", str(smollm2_path), str(folder),
                           "--force"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "wrote" in done.stdout
    return folder


def test_the_folder_reads_back_as_the_same_weights_and_tokenizer(exported, smollm2_path):
    src, back = read_checkpoint(smollm2_path, keep_quantized=False), read_checkpoint(exported)
    assert back.config == src.config and back.quantization == "none"
    assert back.tokenizer.fingerprint == src.tokenizer.fingerprint
    want = dequantize_weights(src.weights)
    assert set(back.weights) == set(want)
    for name, value in want.items():
        assert torch.equal(back.weights[name], value), name


def test_transformers_loads_the_same_model_and_tokenizer(exported, smollm2):
    from transformers import AutoTokenizer, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(exported)
    for text in (*PROBES, "<|im_start|>user\nHi<|im_end|>\n"):
        assert tok.encode(text, add_special_tokens=False) == smollm2.tokenizer.encode(text, allow_special=True), text
    assert tok.eos_token_id in smollm2.tokenizer.stop_ids
    ids = smollm2.tokenizer.encode(PROMPT)
    hf = LlamaForCausalLM.from_pretrained(exported, torch_dtype=torch.float32).eval()
    with torch.inference_mode():
        theirs = hf(torch.tensor([ids])).logits[0, -1]
    cache = smollm2.new_cache(len(ids) + 1)
    with torch.inference_mode():
        mine = prefill(smollm2.model, cache, ids).float()
    assert int(theirs.argmax()) == int(mine.argmax())
    assert torch.allclose(torch.log_softmax(theirs, -1), torch.log_softmax(mine, -1), atol=1e-3)


def test_a_non_empty_destination_is_refused_without_force(tmp_path, smollm2_path):
    (tmp_path / "keep.txt").write_text("mine")
    done = subprocess.run([sys.executable, "-m", "tandem.cli", "export-hf", str(smollm2_path), str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "--force" in done.stderr
    assert (tmp_path / "keep.txt").read_text() == "mine" and not (tmp_path / "config.json").exists()
