"""The gateway's own tokenizer of the served model, and the check that the engine tokenizes alike.

Token IDs cross the gateway untouched, so an engine whose vocabulary differs
from the gateway's would continue from different text than the edge meant.
On start the gateway tokenizes probe texts both ways and refuses to serve on
the first difference, naming the text and the first position that differs.
The probes cover what tokenizers most often disagree on: spaces and newlines,
digits, punctuation, accents, non-Latin scripts, emoji, code, and the chat
template's special tokens.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

from engine.errors import ModelFormatError
from engine.gguf_file import GGUFFile
from engine.gguf_loader import is_gguf_file
from engine.registry import resolve
from engine.tokenizer import Tokenizer, load_gguf_tokenizer, load_tokenizer

PROBES = (
    "Hello, world!",
    "The quick brown fox jumps over the lazy dog.",
    "  two leading spaces,\ttab and\nnewline\n\n",
    "Numbers: 0 7 42 1234567 3.14159 -2e10",
    "Ünïcödé àccents: café naïve Zürich",
    "中文测试，日本語のテキスト、한국어",
    "Emoji: 🙂🚀👍🏽",
    "def f(x):\n    return x ** 2  # code\n",
    "!!!???...,,,;;;::: ---___ ((([[[{{{",
)


class TokenizerMismatchError(ValueError):
    """The engine's tokenizer is not the gateway's: serving would hand the engine different text."""


def load_served_tokenizer(model: str | Path, tokenizer: str | Path | None = None) -> Tokenizer:
    """The tokenizer of `model` (a short name, GGUF file or HF folder) without loading its weights."""
    if tokenizer is not None:
        return load_tokenizer(resolve(tokenizer))
    path = resolve(model)
    if is_gguf_file(path):
        return load_gguf_tokenizer(GGUFFile(path).metadata, str(path))
    if path.is_dir() or path.suffix in (".json", ".model"):
        return load_tokenizer(path)
    raise ModelFormatError(f"{path}: give a GGUF file, a Hugging Face folder or a tokenizer file for --model")


def check_tokenizer(ours: Tokenizer, engine_tokenize: Callable[[str], Sequence[int]], *, engine: str,
                    probes: Sequence[str] = PROBES) -> None:
    """Raise TokenizerMismatchError unless `engine_tokenize` gives our IDs for every probe text
    (special tokens included: the chat template's end-of-turn tokens must map to the same IDs)."""
    specials = [ours.decode([i]) for i in ours.stop_ids]
    texts = list(probes) + ([f"Hi{''.join(specials)}there"] if specials else [])
    for text in texts:
        mine = ours.encode(text, allow_special=True)
        theirs = list(engine_tokenize(text))
        if mine != theirs:
            at = next((i for i, (a, b) in enumerate(zip(mine, theirs)) if a != b), min(len(mine), len(theirs)))
            raise TokenizerMismatchError(
                f"the engine ({engine}) tokenizes differently from this gateway's tokenizer "
                f"({ours.source}, fingerprint {ours.fingerprint[:12]}): for the text {text!r} they differ "
                f"at token {at} (gateway {mine[at:at + 3]}, engine {theirs[at:at + 3]}); token IDs from the "
                "edge would mean other text there. Serve the same model on the engine as the gateway's --model "
                "(or point --tokenizer at that model's tokenizer)."
            )
