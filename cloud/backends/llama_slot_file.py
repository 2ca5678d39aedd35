"""llama.cpp's sequence state file (what `POST /slots/{id}?action=save` writes and `restore` reads), read and written.

The layout is the one of llama.cpp's `llama_state_seq_save_file` in the vendored
llama.cpp that `make engines` builds (llama-cpp-python 0.3.36, state file
version 3), little-endian:

    u32 magic 'ggsq', u32 version, u32 n_tokens, i32 tokens[n_tokens]
    u32 n_stream; per stream: u32 n_cells, and for a non-empty stream
        per cell: i32 pos, u32 n_seq_id (1), i32 seq_id
        u32 v_trans, u32 n_layers
        per layer: i32 k_type, u64 k_row_bytes, k rows (one per cell)
        per layer, v_trans 0: i32 v_type, u64 v_row_bytes, v rows (one per cell)
                   v_trans 1: i32 v_type, u32 v_element_bytes, u32 n_embd_v, then per channel its n_cells values

A row holds the cell's keys (or values) of every KV head, head after head. The
token section is llama-server's: either a plain token list or its "state"
encoding (-1, format version 1, the count, the tokens, an empty media list);
this writer uses the encoding the engine itself wrote when probed.

llama.cpp's GGUF llama weights have their Q/K rows permuted so that its RoPE
rotates adjacent pairs; Tandem's keys rotate half-split pairs (Hugging Face's
layout). A key's head dimension is reordered accordingly on the way in:
llama index 2i+j holds Tandem's j*(head_dim/2)+i. Checked against a slot the
engine saved after its own prefill of the same tokens (tests/test_cloud_llama_slots.py).
"""

from __future__ import annotations

import os
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

MAGIC = 0x67677371      # 'ggsq'
VERSION = 3             # LLAMA_STATE_SEQ_VERSION of the vendored llama.cpp
TOKENS_STATE_MARKER = -1  # llama-server's token-section encoding starts with LLAMA_TOKEN_NULL
TOKENS_STATE_VERSION = 1

# ggml type id -> (name, bytes per element, torch dtype) for the cache types this writer can fill.
CACHE_TYPES = {0: ("f32", 4, torch.float32), 1: ("f16", 2, torch.float16), 30: ("bf16", 2, torch.bfloat16)}


class SlotFileError(ValueError):
    """A state file that is not what this writer knows (another llama.cpp version, a cache type it cannot write)."""


@dataclass(frozen=True)
class SlotFormat:
    """What one engine's state files look like, read from a file it saved itself."""

    version: int
    n_stream: int
    n_layers: int
    k_type: int
    k_row_bytes: int
    v_type: int
    v_row_bytes: int      # bytes of one cell's values (n_embd_v * element size)
    v_trans: bool
    tokens_state: bool    # the token section uses llama-server's state encoding

    def check(self, n_layers: int, n_kv_heads: int, head_dim: int) -> None:
        """SlotFileError unless a cache of this geometry can be written in this format."""
        for what, kind, row in (("key", self.k_type, self.k_row_bytes), ("value", self.v_type, self.v_row_bytes)):
            if kind not in CACHE_TYPES:
                raise SlotFileError(f"the engine keeps its {what} cache as ggml type {kind}; the gateway writes only "
                                    f"{', '.join(n for n, _, _ in CACHE_TYPES.values())} (start llama-server "
                                    "without a quantized --cache-type-k/-v)")
            want = n_kv_heads * head_dim * CACHE_TYPES[kind][1]
            if row != want:
                raise SlotFileError(f"the engine's {what} rows are {row} bytes; this model's {n_kv_heads} KV heads "
                                    f"x {head_dim} dims make {want}: it serves another model")
        if self.n_layers != n_layers:
            raise SlotFileError(f"the engine's cache has {self.n_layers} layers, this model {n_layers}: it serves "
                                "another model")


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.at = data, 0

    def take(self, fmt: str) -> tuple:
        try:
            values = struct.unpack_from("<" + fmt, self.data, self.at)
        except struct.error:
            raise SlotFileError("the state file ends early") from None
        self.at += struct.calcsize("<" + fmt)
        return values

    def skip(self, n: int) -> None:
        if self.at + n > len(self.data):
            raise SlotFileError("the state file ends early")
        self.at += n


@dataclass
class SlotState:
    format: SlotFormat
    tokens: list[int]
    k: torch.Tensor  # [n_layers, n_kv_heads, n, head_dim] float32, Tandem's key layout
    v: torch.Tensor


def _array(r: _Reader, kind: int, count: int) -> torch.Tensor:
    if kind not in CACHE_TYPES:
        raise SlotFileError(f"the engine keeps its cache as ggml type {kind}; the gateway reads and writes only "
                            f"{', '.join(n for n, _, _ in CACHE_TYPES.values())} (start llama-server without a "
                            "quantized --cache-type-k/-v)")
    size = CACHE_TYPES[kind][1]
    r.skip(count * size)
    raw = torch.frombuffer(bytearray(r.data[r.at - count * size: r.at]), dtype=torch.uint8)
    return raw.view(CACHE_TYPES[kind][2]).float()


def decode_state(data: bytes, head_dim: int) -> SlotState:
    """A state file of one sequence (at least one cell): its format, tokens, keys and values. SlotFileError for a
    file of another version (refused, not guessed at), one without cells (nothing tells the cache's layout), or a
    cache type this module does not know."""
    r = _Reader(data)
    magic, version, n_packed = r.take("3I")
    if magic != MAGIC:
        raise SlotFileError(f"not a llama.cpp sequence state file (magic {magic:#010x})")
    if version != VERSION:
        raise SlotFileError(f"the engine writes sequence state version {version}; the gateway writes version "
                            f"{VERSION} (llama.cpp of llama-cpp-python 0.3.36): run that engine build, or turn the "
                            "slot hand-off off")
    packed = list(r.take(f"{n_packed}i"))
    tokens_state = bool(packed) and packed[0] == TOKENS_STATE_MARKER
    tokens = packed[3: 3 + packed[2]] if tokens_state and n_packed >= 3 else packed
    (n_stream,) = r.take("I")
    for _ in range(n_stream):
        (n,) = r.take("I")
        if n == 0:
            continue
        for _ in range(n):
            _pos, n_seq = r.take("iI")
            r.skip(4 * n_seq)
        v_trans, n_layers = r.take("2I")
        keys, values = [], []
        for _ in range(n_layers):
            k_type, k_row = r.take("iQ")
            keys.append(_array(r, k_type, n * k_row // CACHE_TYPES.get(k_type, ("", 1))[1]).reshape(n, -1))
        for _ in range(n_layers):
            if v_trans:
                v_type, v_el, n_embd_v = r.take("iII")
                v_row = v_el * n_embd_v
                values.append(_array(r, v_type, n * n_embd_v).reshape(n_embd_v, n).T)
            else:
                v_type, v_row = r.take("iQ")
                values.append(_array(r, v_type, n * v_row // CACHE_TYPES.get(v_type, ("", 1))[1]).reshape(n, -1))
        fmt = SlotFormat(version, n_stream, n_layers, k_type, k_row, v_type, v_row, bool(v_trans), tokens_state)

        def heads(rows: list[torch.Tensor]) -> torch.Tensor:  # [L, n, H*D] -> [L, H, n, D]
            t = torch.stack(rows)
            return t.reshape(n_layers, n, -1, head_dim).transpose(1, 2).contiguous()

        return SlotState(fmt, tokens, from_llama_keys(heads(keys)), heads(values))
    raise SlotFileError("the state file holds no cells; its cache layout cannot be read from it")


def to_llama_keys(k: torch.Tensor) -> torch.Tensor:
    """Keys [..., head_dim] from Tandem's half-split RoPE layout to llama.cpp's adjacent pairs."""
    d = k.shape[-1]
    return k.reshape(*k.shape[:-1], 2, d // 2).transpose(-1, -2).reshape(k.shape)


def from_llama_keys(k: torch.Tensor) -> torch.Tensor:
    """The inverse of `to_llama_keys`."""
    d = k.shape[-1]
    return k.reshape(*k.shape[:-1], d // 2, 2).transpose(-1, -2).reshape(k.shape)


def _layer_bytes(t: torch.Tensor, dtype: torch.dtype) -> list[bytes]:
    rows = t.permute(0, 2, 1, 3).reshape(t.shape[0], t.shape[2], -1).to(dtype).contiguous()
    return [bytes(rows[i].view(torch.uint8).numpy()) for i in range(rows.shape[0])]


def encode_state(fmt: SlotFormat, seq_id: int, tokens: list[int], k: torch.Tensor, v: torch.Tensor) -> bytes:
    """A state file restoring `tokens` at positions 0..n-1 of sequence `seq_id`, from Tandem's keys and values
    k, v: [n_layers, n_kv_heads, n, head_dim] (half-split RoPE keys, any float dtype)."""
    n_layers, n_kv_heads, n, head_dim = k.shape
    if v.shape != k.shape or len(tokens) != n:
        raise ValueError(f"keys {tuple(k.shape)}, values {tuple(v.shape)} and {len(tokens)} tokens do not match")
    fmt.check(n_layers, n_kv_heads, head_dim)
    packed = ([TOKENS_STATE_MARKER, TOKENS_STATE_VERSION, n, *tokens, 0] if fmt.tokens_state else list(tokens))
    out = [struct.pack("<3I", MAGIC, VERSION, len(packed)), struct.pack(f"<{len(packed)}i", *packed),
           struct.pack("<I", fmt.n_stream)]
    stream = min(seq_id, fmt.n_stream - 1)  # a unified cache has one stream; otherwise one per sequence
    for s in range(fmt.n_stream):
        if s != stream:
            out.append(struct.pack("<I", 0))
            continue
        out.append(struct.pack("<I", n))
        cells = np.empty((n, 3), dtype="<i4")
        cells[:, 0], cells[:, 1], cells[:, 2] = np.arange(n), 1, seq_id
        out.append(cells.tobytes())
        out.append(struct.pack("<2I", int(fmt.v_trans), n_layers))
        k_dtype, v_dtype = CACHE_TYPES[fmt.k_type][2], CACHE_TYPES[fmt.v_type][2]
        for layer in _layer_bytes(to_llama_keys(k), k_dtype):
            out += [struct.pack("<iQ", fmt.k_type, fmt.k_row_bytes), layer]
        if fmt.v_trans:  # per layer, channel after channel: each channel's n values
            v_el = CACHE_TYPES[fmt.v_type][1]
            channels = v.permute(0, 1, 3, 2).reshape(n_layers, n_kv_heads * head_dim, n).to(v_dtype).contiguous()
            for i in range(n_layers):
                out += [struct.pack("<iII", fmt.v_type, v_el, n_kv_heads * head_dim),
                        bytes(channels[i].view(torch.uint8).numpy())]
        else:
            for layer in _layer_bytes(v, v_dtype):
                out += [struct.pack("<iQ", fmt.v_type, fmt.v_row_bytes), layer]
    return b"".join(out)


def write_atomically(directory: Path, name: str, data: bytes) -> Path:
    """Write `data` to directory/name so that a reader sees the whole file or none of it."""
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f"{name}.partial-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, directory / name)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return directory / name
