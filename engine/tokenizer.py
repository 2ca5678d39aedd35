"""One tokenizer interface over HF `tokenizers` and tiktoken-format BPE files.

Edge and cloud hand off token IDs, so both must tokenize identically; the
`fingerprint` (a hash of vocabulary bytes, merges and special tokens) is equal
for the same tokenizer whatever file format it came from, and is what the tiers
compare before a hand-off.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Iterable, Protocol

import tiktoken
import tiktoken.load
from tokenizers import AddedToken, Regex, decoders, models, pre_tokenizers
from tokenizers import Tokenizer as HFTokenizer

from engine.errors import ModelFormatError, UnsupportedModelError

# Meta's Llama 3 pre-tokenization pattern (llama_models/llama3/tokenizer.py).
LLAMA3_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
LLAMA3_SPECIALS = [
    "<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>",
    "<|reserved_special_token_1|>", "<|finetune_right_pad_id|>", "<|step_id|>",
    "<|start_header_id|>", "<|end_header_id|>", "<|eom_id|>", "<|eot_id|>",
    "<|python_tag|>", "<|image|>",
]
LLAMA3_NUM_SPECIALS = 256
# Tokens that end a turn, whichever chat format the vocabulary speaks.
END_OF_TURN = ("<|eot_id|>", "<|eom_id|>", "<|end_of_text|>", "<|im_end|>", "<|endoftext|>")


class _Backend(Protocol):
    def encode(self, text: str, allow_special: bool) -> list[int]: ...
    def decode(self, ids: list[int]) -> str: ...


class _HFBackend:
    """Two copies of the tokenizer, so encoding with and without special-token
    parsing never flips shared state (the cloud encodes from many threads)."""

    def __init__(self, tok: HFTokenizer) -> None:
        self.tok = tok
        self.plain = HFTokenizer.from_str(tok.to_str())
        self.plain.encode_special_tokens = True

    def encode(self, text: str, allow_special: bool) -> list[int]:
        return (self.tok if allow_special else self.plain).encode(text, add_special_tokens=False).ids

    def decode(self, ids: list[int]) -> str:
        return self.tok.decode(ids, skip_special_tokens=False)


@dataclass
class _TiktokenBackend:
    enc: tiktoken.Encoding

    def encode(self, text: str, allow_special: bool) -> list[int]:
        return self.enc.encode(text, allowed_special="all" if allow_special else set(), disallowed_special=())

    def decode(self, ids: list[int]) -> str:
        return self.enc.decode(ids, errors="replace")


class Tokenizer:
    """Encode/decode plus what the runtime needs: specials, BOS, stop IDs, chat format."""

    def __init__(
        self,
        backend: _Backend,
        *,
        vocab: dict[bytes, int],
        merges: list[tuple[bytes, bytes]] | None,
        specials: dict[str, int],
        add_bos: bool,
        bos_token: str | None,
        chat_template: str | None = None,
        source: str = "",
    ) -> None:
        self._backend = backend
        self._vocab = vocab
        self._merges = merges
        self._pieces: dict[int, bytes] | None = None
        self.specials = specials
        self.add_bos = add_bos
        self.bos_token = bos_token
        self.bos_id = specials.get(bos_token) if bos_token else None
        self.stop_ids = sorted({specials[t] for t in END_OF_TURN if t in specials})
        self.chat_template = chat_template
        self.source = source
        self.vocab_size = max([*vocab.values(), *specials.values()]) + 1

    def encode(self, text: str, *, allow_special: bool = False, bos: bool = False) -> list[int]:
        """Token IDs of `text`. Special-token strings in user text stay plain text
        unless `allow_special`, so user input cannot forge control tokens."""
        ids = self._backend.encode(text, allow_special)
        return [self.bos_id, *ids] if bos and self.bos_id is not None else ids

    def decode(self, ids: Iterable[int]) -> str:
        return self._backend.decode(list(ids))

    def token_id(self, piece: bytes) -> int | None:
        """The ID of the vocabulary entry whose bytes are exactly `piece` (None: no such entry)."""
        return self._vocab.get(piece)

    def piece(self, token_id: int) -> bytes:
        """The bytes of one vocabulary entry (b"" for a special token or an ID outside the vocabulary)."""
        if self._pieces is None:
            self._pieces = {i: b for b, i in self._vocab.items()}
        return self._pieces.get(token_id, b"")

    def save(self, folder: Path) -> None:
        """Write this tokenizer into a checkpoint folder in a format `load_tokenizer` reads back
        with the same fingerprint: tokenizer.json (+ tokenizer_config.json), or a tiktoken file."""
        if isinstance(self._backend, _TiktokenBackend):
            shutil.copy(self.source, folder / "tokenizer.model")
            return
        self._backend.tok.save(str(folder / "tokenizer.json"))
        config = {"bos_token": self.bos_token, "add_bos_token": self.add_bos}
        if self.chat_template:
            config["chat_template"] = self.chat_template
        (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")

    def special_id(self, token: str) -> int:
        try:
            return self.specials[token]
        except KeyError:
            raise KeyError(f"tokenizer has no special token {token!r}") from None

    @cached_property
    def fingerprint(self) -> str:
        """sha256 over vocabulary bytes, merge priorities and special tokens.

        Merges are hashed as the priority order of the tokens they produce: a
        tiktoken rank file implies exactly that order, and a tokenizer.json
        lists (possibly several) merges per token in it, so the same tokenizer
        hashes the same from either format.
        """
        if self._merges is None:
            merged = [i for t, i in sorted(self._vocab.items(), key=lambda kv: kv[1]) if len(t) > 1]
        else:
            merged, seen = [], set()
            for a, b in self._merges:
                idx = self._vocab.get(a + b)
                if idx is not None and idx not in seen:
                    seen.add(idx)
                    merged.append(idx)
        h = hashlib.sha256()
        for token, idx in sorted(self._vocab.items(), key=lambda kv: kv[1]):
            h.update(b"v%d:%s\n" % (idx, token.hex().encode()))
        h.update(b"m" + ",".join(map(str, merged)).encode() + b"\n")
        for name, idx in sorted(self.specials.items(), key=lambda kv: kv[1]):
            h.update(b"s%d:%s\n" % (idx, name.encode()))
        return "tok-" + h.hexdigest()[:32]

    def __repr__(self) -> str:
        return f"Tokenizer({self.source!r}, vocab={self.vocab_size}, fingerprint={self.fingerprint})"


def _byte_decoder() -> dict[str, int]:
    """GPT-2's printable-unicode spelling of bytes, inverted."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars, extra = {}, 0
    for b in range(256):
        if b in printable:
            chars[chr(b)] = b
        else:
            chars[chr(256 + extra)] = b
            extra += 1
    return chars


_BYTE_DECODER = _byte_decoder()


def _spelled_to_bytes(token: str) -> bytes:
    try:
        return bytes(_BYTE_DECODER[c] for c in token)
    except KeyError:
        return token.encode("utf-8")


def load_tiktoken(path: Path) -> Tokenizer:
    """A Llama 3 `tokenizer.model` (base64 token + rank per line) with Meta's specials."""
    try:
        ranks = tiktoken.load.load_tiktoken_bpe(str(path))
    except Exception as exc:
        raise ModelFormatError(f"{path} is not a tiktoken BPE file: {exc}") from exc
    n = len(ranks)
    names = LLAMA3_SPECIALS + [
        f"<|reserved_special_token_{2 + i}|>" for i in range(LLAMA3_NUM_SPECIALS - len(LLAMA3_SPECIALS))
    ]
    specials = {name: n + i for i, name in enumerate(names)}
    enc = tiktoken.Encoding(name=path.name, pat_str=LLAMA3_PATTERN, mergeable_ranks=ranks, special_tokens=specials)
    return Tokenizer(
        _TiktokenBackend(enc), vocab=ranks, merges=None, specials=specials,
        add_bos=True, bos_token="<|begin_of_text|>", source=str(path),
    )


def load_tokenizer_json(path: Path, config: dict[str, Any] | None = None) -> Tokenizer:
    """An HF `tokenizer.json` (byte-level BPE), with tokenizer_config.json beside it if present."""
    try:
        raw = json.loads(path.read_text())
        tok = HFTokenizer.from_str(json.dumps(raw))
    except Exception as exc:
        raise ModelFormatError(f"{path} is not a valid tokenizer.json: {exc}") from exc
    model = raw.get("model", {})
    if model.get("type") != "BPE":
        raise UnsupportedModelError(f"{path}: tokenizer model {model.get('type')!r} is not supported (BPE only)")
    cfg_path = path.with_name("tokenizer_config.json")
    cfg = config if config is not None else (json.loads(cfg_path.read_text()) if cfg_path.is_file() else {})
    specials = {t["content"]: t["id"] for t in raw.get("added_tokens", []) if t.get("special")}
    vocab = {_spelled_to_bytes(t): i for t, i in model["vocab"].items() if t not in specials}
    merges = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in model.get("merges", [])]
    bos = cfg.get("bos_token")
    bos = bos.get("content") if isinstance(bos, dict) else bos
    template = cfg.get("chat_template")
    template_file = path.with_name("chat_template.jinja")
    if template is None and template_file.is_file():
        template = template_file.read_text()
    return Tokenizer(
        _HFBackend(tok), vocab=vocab,
        merges=[(_spelled_to_bytes(a), _spelled_to_bytes(b)) for a, b in merges],
        specials=specials, add_bos=bool(cfg.get("add_bos_token", bos == "<|begin_of_text|>")),
        bos_token=bos, chat_template=template if isinstance(template, str) else None, source=str(path),
    )


# llama.cpp's `tokenizer.ggml.pre` names -> how to split text before BPE.
_GGUF_PRE_TOKENIZERS = {
    "llama-bpe": lambda: pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_PATTERN), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ]),
    "smollm": lambda: pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ]),
    "gpt-2": lambda: pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    "default": lambda: pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
}
_GGUF_CONTROL, _GGUF_USER_DEFINED = 3, 4


def load_gguf_tokenizer(meta: dict[str, Any], source: str) -> Tokenizer:
    """Byte-level BPE from GGUF metadata (tokens, token types, merges, pre-tokenizer name)."""
    kind = meta.get("tokenizer.ggml.model")
    if kind != "gpt2":
        raise UnsupportedModelError(f"{source}: GGUF tokenizer {kind!r} is not supported (byte-level BPE 'gpt2' only)")
    pre = meta.get("tokenizer.ggml.pre", "default")
    if pre not in _GGUF_PRE_TOKENIZERS:
        raise UnsupportedModelError(
            f"{source}: pre-tokenizer {pre!r} is not supported; known: {', '.join(sorted(_GGUF_PRE_TOKENIZERS))}"
        )
    tokens: list[str] = meta["tokenizer.ggml.tokens"]
    types: list[int] = meta.get("tokenizer.ggml.token_type") or [1] * len(tokens)
    merges = [tuple(m.split(" ", 1)) for m in meta.get("tokenizer.ggml.merges", [])]
    tok = HFTokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges, ignore_merges=False))
    tok.pre_tokenizer = _GGUF_PRE_TOKENIZERS[pre]()
    tok.decoder = decoders.ByteLevel()
    specials = {t: i for i, (t, ty) in enumerate(zip(tokens, types)) if ty == _GGUF_CONTROL}
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials])
    tok.add_tokens([AddedToken(t, normalized=False) for t, ty in zip(tokens, types) if ty == _GGUF_USER_DEFINED])
    bos_id = meta.get("tokenizer.ggml.bos_token_id")
    return Tokenizer(
        _HFBackend(tok),
        vocab={_spelled_to_bytes(t): i for i, t in enumerate(tokens) if t not in specials},
        merges=[(_spelled_to_bytes(a), _spelled_to_bytes(b)) for a, b in merges],
        specials=specials,
        add_bos=bool(meta.get("tokenizer.ggml.add_bos_token", False)),
        bos_token=tokens[bos_id] if bos_id is not None else None,
        chat_template=meta.get("tokenizer.chat_template"),
        source=source,
    )


def load_tokenizer(path: Path) -> Tokenizer:
    """From a tokenizer.json, a tiktoken `tokenizer.model`, or a folder holding either."""
    if path.is_dir():
        for candidate in (path / "tokenizer.json", path / "tokenizer.model", path / "original" / "tokenizer.model"):
            if candidate.is_file():
                return load_tokenizer(candidate)
        raise ModelFormatError(f"{path} holds no tokenizer.json or tokenizer.model")
    if not path.is_file():
        raise ModelFormatError(f"tokenizer file {path} does not exist")
    if path.suffix == ".json":
        return load_tokenizer_json(path)
    return load_tiktoken(path)
