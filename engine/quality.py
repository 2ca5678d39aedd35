"""How much a quantized tier changes the model: perplexity and top-1 agreement.

The quantized model is scored through either path it runs: token by token as
decoding does (int8 activation blocks), or in one forward as a prompt's prefill
does (mixed int8 blocks, a second level for outlier blocks), so the activation rounding each
path uses counts, not only the weights, and with the KV cache type the tier
runs (int8 rows on the device tier, with their 4-bit groups where the decode step
reads them). The reference scores the same tokens with one full-precision forward
and an fp32 cache.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from engine.model import KVCache, Transformer


@dataclass(frozen=True)
class Quality:
    perplexity: float
    reference_perplexity: float
    top1_agreement: float  # share of positions whose argmax equals the reference's
    tokens: int

    @property
    def perplexity_increase(self) -> float:
        return self.perplexity / self.reference_perplexity - 1


@torch.inference_mode()
def prefill_logits(model: Transformer, ids: list[int], cache: KVCache | None = None) -> torch.Tensor:
    """Next-token logits [T-1, V] for every prefix of `ids`, in one forward (into `cache`, or an fp32 one)."""
    return model(torch.tensor([ids[:-1]]), cache if cache is not None else KVCache(model.config, len(ids)))[0].float()


@torch.inference_mode()
def decode_logits(model: Transformer, ids: list[int], cache: KVCache | None = None) -> torch.Tensor:
    """Next-token logits [T-1, V], feeding one token at a time as generation does (into `cache`, or an
    fp32 one)."""
    cache = cache if cache is not None else KVCache(model.config, len(ids))
    return torch.stack([model(torch.tensor([[t]]), cache)[0, -1].float() for t in ids[:-1]])


def perplexity(logits: torch.Tensor, ids: list[int]) -> float:
    targets = torch.tensor(ids[1:])
    nll = -torch.log_softmax(logits, dim=-1).gather(1, targets[:, None]).mean()
    return math.exp(float(nll))


PATHS = {"decode": decode_logits, "prefill": prefill_logits}


def compare(
    model: Transformer, reference: Transformer, ids: list[int], *, path: str = "decode",
    cache_dtype: torch.dtype = torch.float32, packed: bool = False,
) -> Quality:
    """`model` through its `path` ("decode" or "prefill") with a `cache_dtype` KV cache (`packed`: with
    4-bit groups, engine/packed_kv.py) against `reference` in one forward, on the same IDs."""
    ref = prefill_logits(reference, ids)
    got = PATHS[path](model, ids, cache=KVCache(model.config, len(ids), dtype=cache_dtype, packed=packed))
    return Quality(
        perplexity=perplexity(got, ids),
        reference_perplexity=perplexity(ref, ids),
        top1_agreement=float((got.argmax(-1) == ref.argmax(-1)).float().mean()),
        tokens=len(ids) - 1,
    )
