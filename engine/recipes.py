"""Names of the quantization recipes and tier precisions, without importing torch.

The command line lists them in its --help; `engine.quantize` implements them.

    int8   linear layers, embeddings and output q8_0 (8-bit groups of 32, fp16 scale)
    q4     linear layers q4_1 (4-bit groups of 32 with a zero point); embeddings and output q8_0
"""

from __future__ import annotations

RECIPES: dict[str, dict[str, str]] = {
    "int8": {"linear": "q8_0", "embedding": "q8_0", "output": "q8_0"},
    "q4": {"linear": "q4_1", "embedding": "q8_0", "output": "q8_0"},
}
# stored: as the file holds it; full: dequantized to float (the cloud tier); device: quantized
# weights as stored, float weights quantized with DEVICE_RECIPE (the edge tier); or a recipe.
DEVICE_RECIPE = "q4"
PRECISIONS = ("stored", "full", "device", *RECIPES)
# The KV cache's element type: "auto" is int8 where the native decode step runs the model (the
# device tier: int8 rows with an fp16 scale per (layer, KV head, position) vector, the KV codec's
# int8 format, a little over a quarter of the bytes attention reads per token in fp32; quality
# measured in benchmarks/quality.py), else the model's own dtype. "int4" is int8 rows whose finished
# groups of 64 positions are also kept in 4 bits for the native decode step to read (engine/packed_kv.py,
# AVX-512 VNNI builds; elsewhere the rows alone); "auto" picks it for 4-bit weights (the int8 recipe,
# held to 1 % perplexity, keeps its rows alone).
KV_CACHES = ("auto", "fp16", "fp32", "int8", "int4")
