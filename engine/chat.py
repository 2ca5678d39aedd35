"""Chat templates, rendered straight to token IDs.

Role headers and turn markers become special-token IDs; message text is encoded
with special-token parsing off, so a user cannot forge a turn boundary.
Llama 3 follows Meta's reference `ChatFormat` (header, "\\n\\n", stripped
content, <|eot_id|>); ChatML follows SmolLM2's template, including its default
system prompt.
"""

from __future__ import annotations

import re
from typing import Mapping, Sequence

from engine.tokenizer import Tokenizer

Message = Mapping[str, str]
ROLES = ("system", "user", "assistant", "tool", "ipython")


def chat_format(tokenizer: Tokenizer) -> str:
    if "<|start_header_id|>" in tokenizer.specials:
        return "llama3"
    if "<|im_start|>" in tokenizer.specials:
        return "chatml"
    return "plain"


def default_system_prompt(tokenizer: Tokenizer) -> str | None:
    """The system prompt a ChatML template inserts when the first message is not one."""
    template = tokenizer.chat_template or ""
    if "messages[0]['role'] != 'system'" not in template:
        return None
    found = re.search(r"<\|im_start\|>system\n(.*?)<\|im_end\|>", template, re.S)
    return found.group(1) if found else None


def render_chat(tokenizer: Tokenizer, messages: Sequence[Message], *, add_generation_prompt: bool = True) -> list[int]:
    """Token IDs of a conversation, ending with the assistant header when asked."""
    for m in messages:
        if m.get("role") not in ROLES or not isinstance(m.get("content"), str):
            raise ValueError(f"each message needs a role in {ROLES} and string content; got {dict(m)!r}")
    kind = chat_format(tokenizer)
    if kind == "llama3":
        return _render_llama3(tokenizer, messages, add_generation_prompt)
    if kind == "chatml":
        return _render_chatml(tokenizer, messages, add_generation_prompt)
    text = "\n".join(f"{m['role']}: {m['content']}" for m in messages)
    return tokenizer.encode(text + ("\nassistant:" if add_generation_prompt else ""), bos=tokenizer.add_bos)


def _render_llama3(tok: Tokenizer, messages: Sequence[Message], add_generation_prompt: bool) -> list[int]:
    start, end, eot = (tok.special_id(t) for t in ("<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"))

    def header(role: str) -> list[int]:
        return [start, *tok.encode(role), end, *tok.encode("\n\n")]

    ids = [tok.special_id("<|begin_of_text|>")]
    for m in messages:
        ids += header(m["role"]) + tok.encode(m["content"].strip()) + [eot]
    if add_generation_prompt:
        ids += header("assistant")
    return ids


def _render_chatml(tok: Tokenizer, messages: Sequence[Message], add_generation_prompt: bool) -> list[int]:
    start, end = tok.special_id("<|im_start|>"), tok.special_id("<|im_end|>")
    system = default_system_prompt(tok)
    turns = list(messages)
    if system is not None and (not turns or turns[0]["role"] != "system"):
        turns.insert(0, {"role": "system", "content": system})
    ids: list[int] = []
    for m in turns:
        ids += [start, *tok.encode(f"{m['role']}\n{m['content']}"), end, *tok.encode("\n")]
    if add_generation_prompt:
        ids += [start, *tok.encode("assistant\n")]
    return ids
