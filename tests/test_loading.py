"""Loading real layouts as users have them, and refusing bad input clearly."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
import torch
from safetensors.torch import save_file

from engine.errors import ContextLengthError, ModelFormatError, ModelNotFoundError, UnsupportedModelError
from engine.hf_loader import read_tensors
from engine.runtime import LocalModel

# config.json keys exactly as meta-llama/Llama-3.2-1B-Instruct publishes them, with tiny sizes.
LLAMA32_CONFIG = {
    "architectures": ["LlamaForCausalLM"], "attention_bias": False, "attention_dropout": 0.0,
    "bos_token_id": 128000, "eos_token_id": [128001, 128008, 128009], "head_dim": 16,
    "hidden_act": "silu", "hidden_size": 64, "initializer_range": 0.02, "intermediate_size": 160,
    "max_position_embeddings": 131072, "mlp_bias": False, "model_type": "llama",
    "num_attention_heads": 4, "num_hidden_layers": 2, "num_key_value_heads": 2, "pretraining_tp": 1,
    "rms_norm_eps": 1e-05,
    "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                     "original_max_position_embeddings": 8192, "rope_type": "llama3"},
    "rope_theta": 500000.0, "tie_word_embeddings": True, "torch_dtype": "bfloat16",
    "transformers_version": "4.45.0.dev0", "use_cache": True, "vocab_size": 128256,
}


def test_llama32_instruct_folder_layout_loads_as_is(hf_checkpoint_factory, llama3_tokenizer_path, tmp_path):
    """bf16 model.safetensors, Meta's config.json keys, tokenizer.json, original/tokenizer.model."""
    src = hf_checkpoint_factory("l32_src", hidden_size=64, heads=4, kv_heads=2, rope_scaling={
        "rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
        "original_max_position_embeddings": 8192})
    folder = tmp_path / "Llama-3.2-1B-Instruct"
    (folder / "original").mkdir(parents=True)
    save_file({k: v.to(torch.bfloat16).contiguous() for k, v in read_tensors(src).items()},
              folder / "model.safetensors", metadata={"format": "pt"})
    (folder / "config.json").write_text(json.dumps(LLAMA32_CONFIG, indent=2))
    (folder / "generation_config.json").write_text(json.dumps({"bos_token_id": 128000, "eos_token_id": [128001, 128008, 128009]}))
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(src / name, folder / name)
    shutil.copy(llama3_tokenizer_path, folder / "original" / "tokenizer.model")

    model = LocalModel.load(folder, max_context=512)
    assert model.config.rope_scaling is not None and model.config.tie_embeddings
    assert model.config.max_seq_len == 512
    assert model.tokenizer.fingerprint == LocalModel.load(src).tokenizer.fingerprint
    ids = model.encode_chat([{"role": "user", "content": "Hello"}])
    assert ids[0] == 128000 and ids[-1] == 271  # <|begin_of_text|> ... "\n\n"

    from transformers import LlamaForCausalLM

    ref = LlamaForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    with torch.no_grad():
        expected = ref(torch.tensor([ids])).logits[0]
    with torch.inference_mode():
        ours = model.model(torch.tensor([ids]), model.new_cache(len(ids)))[0]
    assert (ours - expected).abs().max().item() < 1e-4


def test_missing_model_names_what_was_tried():
    with pytest.raises(ModelNotFoundError, match="not a known name"):
        LocalModel.load("/nope/nothing-here")


def test_folder_without_config_is_rejected(tmp_path):
    with pytest.raises(ModelFormatError, match="without config.json"):
        LocalModel.load(tmp_path)


def test_corrupt_safetensors_is_a_clear_error(hf_checkpoint_factory, tmp_path):
    folder = tmp_path / "corrupt"
    shutil.copytree(hf_checkpoint_factory("to_corrupt"), folder)
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(ModelFormatError, match="not a readable safetensors file"):
        LocalModel.load(folder)


def test_missing_tensor_is_named(hf_checkpoint_factory, tmp_path):
    folder = tmp_path / "missing"
    shutil.copytree(hf_checkpoint_factory("to_trim"), folder)
    tensors = {k: v for k, v in read_tensors(folder).items() if "layers.1.mlp.up_proj" not in k}
    save_file(tensors, folder / "model.safetensors")
    with pytest.raises(ModelFormatError, match="model.layers.1.mlp.up_proj.weight"):
        LocalModel.load(folder)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"model_type": "mistral"}, "model_type='mistral'"),
        ({"rope_scaling": {"rope_type": "yarn", "factor": 4.0}}, "rope_scaling type 'yarn'"),
        ({"hidden_act": "gelu"}, "hidden_act='gelu'"),
        ({"num_key_value_heads": 3}, "multiple of n_kv_heads=3"),
    ],
)
def test_config_the_engine_cannot_run_is_refused(change, message, hf_checkpoint_factory, tmp_path):
    folder = tmp_path / "cfg"
    shutil.copytree(hf_checkpoint_factory("cfg_src"), folder)
    cfg = json.loads((folder / "config.json").read_text())
    cfg.pop("rope_parameters", None)
    cfg.update(change)
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(UnsupportedModelError, match=message.replace("(", r"\(").replace("[", r"\[")):
        LocalModel.load(folder)


def test_prompt_longer_than_context_is_refused(smollm2):
    ids = smollm2.tokenizer.encode("word " * 3000)
    with pytest.raises(ContextLengthError, match="longer than the model's context of 2048 tokens"):
        next(smollm2.stream(ids, max_new_tokens=16))


def test_empty_prompt_is_refused(smollm2):
    with pytest.raises(ValueError, match="prompt is empty"):
        next(smollm2.stream([], max_new_tokens=4))


# Loading stages weights in copies (read, concatenated, repacked); freed, glibc keeps their pages
# unless told to hand them back. Every tensor is resident once loaded (the repacking writes each in
# place); above them the packaged device model holds ~42 MiB of heap with the trim (the tokenizer
# alone is ~40) and ~68 without it.
LOAD_RESIDUE = """
import json, sys
from engine import kernels
from engine.runtime import LocalModel
kernels.available()
def anon():
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("RssAnon:")) / 1024
before = anon()
model = LocalModel.load(sys.argv[1], precision="device", max_context=1024)
tensors = sum(t.nbytes for t in [*model.model.buffers(), *model.model.parameters()]) / 2**20
print(json.dumps({"growth": anon() - before, "tensors": tensors}))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status (Linux)")
def test_loading_keeps_no_staging_copies_resident(smollm2_path):
    proc = subprocess.run([sys.executable, "-c", LOAD_RESIDUE, str(smollm2_path)], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["growth"] <= got["tensors"] + 54, got
