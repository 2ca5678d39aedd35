"""Quantized weights and the modules that run them in place of nn.Linear / nn.Embedding.

Formats (all group the input dimension; rows are output channels):

    q4_0  4-bit, groups of 32, one fp16 scale          (GGML Q4_0, 4.5 bits/weight)
    q4_1  4-bit, groups of 32, fp16 scale + fp16 min   (GGML Q4_1, 5.0 bits/weight)
    q8_0  8-bit, groups of 32, one fp16 scale          (GGML Q8_0, 8.5 bits/weight)
    i8    8-bit, one fp32 scale per output channel     (8.0 bits/weight)

Block formats are stored exactly as GGML lays them out, so a GGUF tensor is used
as is. `model.py` never sees any of this: `swap_modules` replaces the layers
named in a weights dict before the state dict is loaded. Once loaded, `repack`
rewrites the block-quantized matrices in place (same bytes) into the layout the
native dot kernels stream (16-row tiles: kernels/quant_blocks.h).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from engine import kernels
from engine.gguf_file import GGMLType, dequantize as dequantize_blocks
from engine.huge_pages import drop_file_pages, file_ranges, huge_page_buffer

GROUP = 32
FORMATS = {"q4_0": 0, "q4_1": 1, "q8_0": 2, "i8": 3}  # codes of qlinear.cpp
BLOCK_BYTES = {"q4_0": 18, "q4_1": 20, "q8_0": 34, "i8": GROUP}
GGML_TYPES = {"q4_0": GGMLType.Q4_0, "q4_1": GGMLType.Q4_1, "q8_0": GGMLType.Q8_0}
REPACKED = ("q4_0", "q4_1", "q8_0")  # the formats `repack` rewrites for the native kernels


@dataclass
class QTensor:
    """A quantized [out_features, in_features] matrix: packed rows plus per-channel scales for i8."""

    data: torch.Tensor  # uint8 [N, K/32 * block bytes]
    fmt: str
    shape: tuple[int, int]  # (N, K) of the matrix it stands for
    scales: torch.Tensor | None = None  # fp32 [N], i8 only

    def __post_init__(self) -> None:
        n, k = self.shape
        if self.fmt not in FORMATS:
            raise ValueError(f"unknown quantized format {self.fmt!r}; known: {', '.join(FORMATS)}")
        if k % GROUP:
            raise ValueError(f"in_features {k} is not a multiple of {GROUP}")
        if tuple(self.data.shape) != (n, k // GROUP * BLOCK_BYTES[self.fmt]) or self.data.dtype != torch.uint8:
            raise ValueError(f"{self.fmt} data of shape {tuple(self.data.shape)} does not hold a {n}x{k} matrix")
        if (self.fmt == "i8") != (self.scales is not None):
            raise ValueError("i8 needs per-channel scales; block formats carry their own")

    @property
    def nbytes(self) -> int:
        return self.data.nbytes + (self.scales.nbytes if self.scales is not None else 0)

    def rows(self, index: torch.Tensor) -> "QTensor":
        """The rows `index` (e.g. to undo a row permutation), still quantized."""
        scales = self.scales[index] if self.scales is not None else None
        return QTensor(self.data[index], self.fmt, (len(index), self.shape[1]), scales)

    def dequantize(self) -> torch.Tensor:
        """fp32 [N, K], computed in torch (the reference the kernels are tested against)."""
        return dequantize(self.data, self.scales, self.fmt, self.shape)


Weights = dict[str, "torch.Tensor | QTensor"]  # engine-named tensors, some quantized


def dequantize(data: torch.Tensor, scales: torch.Tensor | None, fmt: str, shape: tuple[int, int]) -> torch.Tensor:
    if fmt == "i8":
        return data.view(torch.int8).float() * scales[:, None]
    return dequantize_blocks(data.reshape(-1), GGML_TYPES[fmt], shape)


def concat(parts: list[QTensor]) -> QTensor:
    """Stack matrices of one format along the output dimension (fusing q/k/v, gate/up)."""
    fmt, k = parts[0].fmt, parts[0].shape[1]
    if any(p.fmt != fmt or p.shape[1] != k for p in parts):
        raise ValueError("only matrices of one format and input size can be fused")
    scales = torch.cat([p.scales for p in parts]) if fmt == "i8" else None
    return QTensor(torch.cat([p.data for p in parts]), fmt, (sum(p.shape[0] for p in parts), k), scales)


# ---- quantizers (round to nearest, per group) -------------------------------------


def quantize(w: torch.Tensor, fmt: str) -> QTensor:
    """Quantize a float matrix [N, K] (K a multiple of 32) to `fmt`."""
    if w.dim() != 2 or w.shape[1] % GROUP:
        raise ValueError(f"cannot quantize a tensor of shape {tuple(w.shape)}: need a matrix [out, in] "
                         f"whose in_features is a multiple of {GROUP}")
    n, k = w.shape
    w = w.detach().float()
    if fmt == "i8":
        scales = (w.abs().amax(dim=1) / 127).clamp_min(1e-12)
        q = (w / scales[:, None]).round().clamp(-127, 127).to(torch.int8)
        return QTensor(q.view(torch.uint8), fmt, (n, k), scales)
    blocks = w.reshape(n, k // GROUP, GROUP)  # [N, B, 32]
    if fmt == "q8_0":
        d = (blocks.abs().amax(-1, keepdim=True) / 127).half()
        q = (blocks / _nonzero(d)).round().clamp(-127, 127).to(torch.int8).view(torch.uint8)
        packed = torch.cat([d.view(torch.uint8), q], dim=-1)
    elif fmt == "q4_0":
        # Like llama.cpp: the value of largest magnitude maps to -8, so the sign decides the range.
        extreme = blocks.gather(-1, blocks.abs().argmax(-1, keepdim=True))
        d = (extreme / -8).half()
        q = (blocks / _nonzero(d) + 8).round().clamp(0, 15).to(torch.uint8)
        packed = torch.cat([d.view(torch.uint8), _pack_nibbles(q)], dim=-1)
    elif fmt == "q4_1":
        lo, hi = blocks.amin(-1, keepdim=True), blocks.amax(-1, keepdim=True)
        d, m = ((hi - lo) / 15).half(), lo.half()
        q = ((blocks - m.float()) / _nonzero(d)).round().clamp(0, 15).to(torch.uint8)
        packed = torch.cat([d.view(torch.uint8), m.view(torch.uint8), _pack_nibbles(q)], dim=-1)
    else:
        raise ValueError(f"unknown quantized format {fmt!r}; known: {', '.join(FORMATS)}")
    return QTensor(packed.reshape(n, -1).contiguous(), fmt, (n, k))


def _nonzero(d: torch.Tensor) -> torch.Tensor:
    d = d.float()
    return torch.where(d == 0, torch.ones_like(d), d)


def _pack_nibbles(q: torch.Tensor) -> torch.Tensor:
    """[..., 32] values 0..15 -> [..., 16] bytes: element j low, element j + 16 high."""
    return q[..., :16] | (q[..., 16:] << 4)


# ---- modules ----------------------------------------------------------------------


def _register_packed(module: nn.Module, rows: int, cols: int, fmt: str) -> None:
    """The buffers a quantized [rows, cols] matrix loads into: packed rows, and fp32 scales for i8."""
    module.register_buffer("weight", torch.empty(rows, cols // GROUP * BLOCK_BYTES[fmt], dtype=torch.uint8))
    module.register_buffer("scales", torch.empty(rows) if fmt == "i8" else None)


class QuantLinear(nn.Module):
    """y = x W^T with W quantized; native kernels when built, else dequantize + matmul.

    With `quantize_activations` (the default) the native kernel rounds x to int8
    per block of 32 and runs int8 dot products (llama.cpp's scheme); without it
    x stays fp32 and W is dequantized in registers: the output layer runs so,
    since its logits are the router's confidence signals.
    """

    def __init__(self, in_features: int, out_features: int, fmt: str, *, quantize_activations: bool = True) -> None:
        super().__init__()
        self.in_features, self.out_features, self.fmt = in_features, out_features, fmt
        self.quantize_activations = quantize_activations
        self.code = FORMATS[fmt]
        _register_packed(self, out_features, in_features, fmt)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if kernels.available():
            return torch.ops.tandem.qlinear(x, self.weight, self.scales, self.code, self.in_features,
                                            self.quantize_activations)
        return F.linear(x, self.dequantized().to(x.dtype))

    def dequantized(self) -> torch.Tensor:
        return _dequantize_module(self, self.out_features, self.in_features)

    def extra_repr(self) -> str:
        act = "int8" if self.quantize_activations else "fp32"
        return f"in_features={self.in_features}, out_features={self.out_features}, fmt={self.fmt}, activations={act}"


class QuantEmbedding(nn.Module):
    """Token embeddings kept quantized; only the looked-up rows are dequantized."""

    def __init__(self, num_embeddings: int, embedding_dim: int, fmt: str) -> None:
        super().__init__()
        self.num_embeddings, self.embedding_dim, self.fmt = num_embeddings, embedding_dim, fmt
        self.code = FORMATS[fmt]
        _register_packed(self, num_embeddings, embedding_dim, fmt)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        if kernels.available():
            return torch.ops.tandem.embedding(ids, self.weight, self.scales, self.code, self.embedding_dim)
        if self.code != FORMATS[self.fmt]:
            raise RuntimeError("repacked weights need the native kernels")
        flat = ids.reshape(-1)
        scales = self.scales[flat] if self.scales is not None else None
        rows = dequantize(self.weight[flat], scales, self.fmt, (len(flat), self.embedding_dim))
        return rows.reshape(*ids.shape, self.embedding_dim)

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}, fmt={self.fmt}"


def _dequantize_module(module: nn.Module, n: int, k: int) -> torch.Tensor:
    """fp32 [n, k] of a quantized module's weight, repacked (read by the native kernels) or not."""
    if module.code == FORMATS[module.fmt]:
        return dequantize(module.weight, module.scales, module.fmt, (n, k))
    return torch.ops.tandem.embedding(torch.arange(n), module.weight, module.scales, module.code, k)


def repack(model: nn.Module) -> int:
    """Rewrite every Q4_0 / Q4_1 / Q8_0 weight of `model` in place into the native kernels' layout.

    Where the kernels are not built this does nothing (the torch fallback reads GGML
    blocks). A buffer shared by several modules (a tied output and embedding) is
    repacked once and every module sharing it told so. The matrices move into one map
    of huge pages (the decode step streams them: engine/huge_pages.py), one at a time,
    each keeping its bytes and shape; the state dict then holds the repacked bytes.
    Returns the number of matrices repacked."""
    if not kernels.available():
        return 0
    sharing: dict[int, list[QuantLinear | QuantEmbedding]] = {}
    for module in model.modules():
        if isinstance(module, (QuantLinear, QuantEmbedding)) and module.fmt in REPACKED:
            sharing.setdefault(module.weight.data_ptr(), []).append(module)
    todo = [modules for modules in sharing.values() if modules[0].code == FORMATS[modules[0].fmt]]
    # every matrix moves into one map of huge pages (engine/huge_pages.py), 64-byte aligned each
    sizes = [(modules[0].weight.nbytes + 63) // 64 * 64 for modules in todo]
    arena, offset = huge_page_buffer(sum(sizes)), 0
    loader_maps = file_ranges()  # read once: the loop maps nothing new
    for modules, size in zip(todo, sizes):
        first = modules[0]
        weight = arena[offset:offset + first.weight.nbytes].view(first.weight.shape)
        offset += size
        weight.copy_(first.weight)
        drop_file_pages(first.weight, loader_maps)
        code = torch.ops.tandem.repack(weight, first.code)
        for module in modules:
            module.weight, module.code = weight, code
    return len(todo)


def swap_modules(model: nn.Module, weights: dict[str, torch.Tensor | QTensor]) -> dict[str, torch.Tensor]:
    """Replace each layer whose weight in `weights` is a QTensor by its quantized module.

    The output layer (`output`) keeps fp32 activations: int8 rounding of the final
    hidden state flips near-ties between the top tokens (measured on SmolLM2).

    Returns the plain state dict to load (`<layer>.weight` and `<layer>.scales`).
    """
    state: dict[str, torch.Tensor] = {}
    for name, value in weights.items():
        if not isinstance(value, QTensor):
            state[name] = value
            continue
        if not name.endswith(".weight"):
            raise ValueError(f"quantized tensor {name!r} is not a layer weight")
        path = name.removesuffix(".weight")
        parent_name, _, child = path.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        old = getattr(parent, child)
        n, k = value.shape
        if isinstance(old, nn.Embedding):
            new: nn.Module = QuantEmbedding(n, k, value.fmt)
        elif isinstance(old, nn.Linear):
            new = QuantLinear(k, n, value.fmt, quantize_activations=path != "output")
        else:
            raise ValueError(f"{path} is a {type(old).__name__}; only Linear and Embedding layers are quantized")
        setattr(parent, child, new)
        state[name] = value.data
        if value.scales is not None:
            state[path + ".scales"] = value.scales
    return state


def quantized_bytes(model: nn.Module) -> int:
    """Bytes of every distinct parameter and buffer (tied tensors counted once)."""
    seen, total = set(), 0
    for t in [*model.parameters(), *model.buffers()]:
        if t.data_ptr() not in seen:
            seen.add(t.data_ptr())
            total += t.nbytes
    return total
