"""What a 4-bit device KV cache would cost in quality, measured before one is built.

The native decode step at 1,000 positions on SmolLM2 spends most of its time
above the short prompt's reading the int8 cache (README, the kernels'
section); half the bytes would need 4-bit rows. This decodes held-out text token
by token on the full-precision model with an fp32 cache that holds each
candidate's rounding (the KV codec's own formats, engine/kv/quant.py): int8
rows; keys per token at 4 bit; keys per channel over groups of positions at 4
bit (KIVI's layout: the unfinished group stays in int8 rows, a finished one is
rounded from them); values per token over groups of 32 channels at 4 bit, as
they are or in a Hadamard basis. It prints each one's perplexity against the
exact cache's.

    python benchmarks/kv_cache_bits.py --tokens 512
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)  # this folder would shadow the packages it measures

import torch  # noqa: E402

from engine.int8_rows import quantize  # noqa: E402
from engine.kv import quant  # noqa: E402
from engine.model import KVCache  # noqa: E402
from engine.quality import decode_logits, perplexity  # noqa: E402
from engine.runtime import LocalModel  # noqa: E402

DATA = Path(__file__).resolve().parent / "data"
CHANNELS = 32  # a value group: 32 channels of one position


def int8_rows(x: torch.Tensor) -> torch.Tensor:
    return quantize(x).dequantize()


def q4(x: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """x through the codec's 4-bit format viewed as `shape` ([A, B, G, g, D]: groups of g along dim 3)."""
    data = torch.cat(quant.q4c_encode(x.reshape(shape).float()))
    return quant.q4c_decode(quant.Reader(data), shape).view(x.shape)


def keys_per_token(k: torch.Tensor) -> torch.Tensor:
    """[B, H, T, D]: each position's D values one group, as the codec's values are grouped."""
    b, h, t, d = k.shape
    return q4(k, (1, b * h, t, d, 1))


def values_per_token(v: torch.Tensor) -> torch.Tensor:
    b, h, t, d = v.shape
    return q4(v, (1, b * h, t * d // CHANNELS, CHANNELS, 1))


def hadamard(n: int) -> torch.Tensor:
    """The orthonormal n x n Walsh-Hadamard matrix (n a power of two; symmetric, its own inverse)."""
    h = torch.ones(1, 1)
    while h.shape[0] < n:
        h = torch.cat([torch.cat([h, h], 1), torch.cat([h, -h], 1)])
    return h / h.shape[0] ** 0.5


def values_rotated(v: torch.Tensor) -> torch.Tensor:
    """values_per_token in a Hadamard basis (QuaRot's trick): an outlier channel's weight spread
    over every channel before rounding, the rotation undone after (a decode step would undo it
    once per head, on the attention's output)."""
    h = hadamard(v.shape[-1])
    return values_per_token(v.float() @ h) @ h


class RoundedCache(KVCache):
    """An fp32 cache holding what a candidate format would hold: rows rounded as they are stored;
    with `group`, keys in int8 rows until their group of positions is complete, then that group
    rounded per channel from them."""

    def __init__(self, config, n: int, keys, values, group: int = 0) -> None:
        super().__init__(config, n)
        self.round_keys, self.round_values, self.group = keys, values, group

    def store(self, index: tuple, k: torch.Tensor, v: torch.Tensor) -> None:
        layer, batch, heads, span = index
        super().store(index, int8_rows(k) if self.group else self.round_keys(k), self.round_values(v))
        if not self.group:
            return
        for start in range(span.start // self.group * self.group, span.stop - self.group + 1, self.group):
            rows = (layer, batch, heads, slice(start, start + self.group))  # a group this store completed
            b, h, g, d = self.k[rows].shape
            self.k[rows] = q4(self.k[rows], (1, b * h, 1, g, d))


CANDIDATES = {
    "exact (fp32)": (lambda k: k, lambda v: v, 0),
    "int8 rows": (int8_rows, int8_rows, 0),
    "int8 keys, 4-bit values": (int8_rows, values_per_token, 0),
    "int8 keys, 4-bit values rotated": (int8_rows, values_rotated, 0),
    "4-bit keys per token, int8 values": (keys_per_token, int8_rows, 0),
    "4-bit keys per channel (64), int8 values": (None, int8_rows, 64),
    "4-bit keys per channel (64), 4-bit values": (None, values_per_token, 64),
    "4-bit keys per channel (32), 4-bit values": (None, values_per_token, 32),
    "4-bit keys per channel (64), 4-bit rotated": (None, values_rotated, 64),
}


def decode_perplexity(model: LocalModel, ids: list[int], candidate: tuple) -> float:
    return perplexity(decode_logits(model.model, ids, cache=RoundedCache(model.config, len(ids), *candidate)), ids)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--tokens", type=int, default=512)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = LocalModel.load(args.model, precision="full", max_context=args.tokens + 8)
    texts = {p.stem: model.tokenizer.encode(p.read_text())[: args.tokens + 1] for p in sorted(DATA.glob("*.txt"))}
    print(f"{args.model}, full precision, {args.tokens} tokens decoded one at a time; perplexity against the "
          "exact cache's")
    print(f"{'cache':<44}" + "".join(f"{name:>22}" for name in texts))
    exact = {}
    for label, candidate in CANDIDATES.items():
        cells = []
        for name, ids in texts.items():
            ppl = decode_perplexity(model, ids, candidate)
            exact.setdefault(name, ppl)
            cells.append(f"{ppl:>10.3f} ({ppl / exact[name] - 1:>+7.2%})")
        print(f"{label:<44}" + "".join(f"{c:>22}" for c in cells), flush=True)


if __name__ == "__main__":
    main()
