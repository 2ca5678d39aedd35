"""Reversible redaction: spans become stable placeholders before anything
leaves the device, and are put back in the answer on the device.

`[EMAIL_1]` names the kind and a per-kind counter; the same value always gets
the same placeholder within one request (across all its messages), so the
cloud model can still tell "the same person" from "another person". The
mapping lives only in the `Redaction` object: it has no serialiser, and its
repr shows counts, never values, so it cannot leak through a log line.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence

PLACEHOLDER = re.compile(r"\[[A-Z][A-Z0-9_]*_\d+\]")

Span = tuple[int, int, str]  # start, end, kind


class Redaction:
    """Placeholder <-> original value for one request; stays on the device."""

    def __init__(self, avoid: Iterable[str] = ()) -> None:
        # Texts whose literal contents must never be mistaken for our placeholders.
        self._avoid = tuple(avoid)
        self._placeholder_of: dict[str, str] = {}
        self._original_of: dict[str, str] = {}
        self._counts: Counter[str] = Counter()

    def __len__(self) -> int:
        return len(self._original_of)

    def __repr__(self) -> str:
        return f"<Redaction of {len(self)} value(s): {', '.join(self._original_of) or 'none'}>"

    @property
    def placeholders(self) -> tuple[str, ...]:
        """The placeholders handed out, in order (safe to show; the values are not)."""
        return tuple(self._original_of)

    def original(self, placeholder: str) -> str:
        """The value a placeholder stands for; KeyError for one this request never made."""
        return self._original_of[placeholder]

    def placeholder(self, kind: str, value: str) -> str:
        """The placeholder for `value`, minting `[KIND_n]` the first time it is seen."""
        if value in self._placeholder_of:
            return self._placeholder_of[value]
        label = re.sub(r"[^A-Z0-9_]", "_", kind.upper()) or "REDACTED"
        if not label[0].isalpha():
            label = "X" + label
        while True:
            self._counts[label] += 1
            candidate = f"[{label}_{self._counts[label]}]"
            if not any(candidate in text for text in self._avoid):
                break
        self._placeholder_of[value] = candidate
        self._original_of[candidate] = value
        return candidate

    def apply(self, text: str, spans: Sequence[Span]) -> str:
        """`text` with every span replaced; overlapping spans are merged into one
        placeholder named for the longest of them."""
        out, cursor = [], 0
        for start, end, kind in _merge(spans):
            out.append(text[cursor:start])
            out.append(self.placeholder(kind, text[start:end]))
            cursor = end
        out.append(text[cursor:])
        return "".join(out)

    def restore(self, text: str) -> str:
        """Put the original values back; placeholders this request did not make stay as they are."""
        if not self._original_of:
            return text
        return PLACEHOLDER.sub(lambda m: self._original_of.get(m.group(), m.group()), text)

    def restorer(self) -> Restorer:
        """A streaming restorer for an answer that arrives in pieces."""
        return Restorer(self)


def _merge(spans: Sequence[Span]) -> list[Span]:
    merged: list[tuple[int, int, str, int]] = []  # start, end, kind, length of the span that named it
    for start, end, kind in sorted(spans):
        if merged and start < merged[-1][1]:
            m_start, m_end, m_kind, m_len = merged[-1]
            named = (kind, end - start) if end - start > m_len else (m_kind, m_len)
            merged[-1] = (m_start, max(m_end, end), *named)
        else:
            merged.append((start, end, kind, end - start))
    return [(start, end, kind) for start, end, kind, _ in merged]


class Restorer:
    """Restores a streamed answer delta by delta.

    A delta may end in the middle of a placeholder (`[EMA`); that tail is held
    back until the next delta completes it or shows it is something else, so
    each character is emitted exactly once and never as a half placeholder.
    """

    def __init__(self, redaction: Redaction) -> None:
        self._redaction = redaction
        self._held = ""

    def feed(self, delta: str) -> str:
        """Restored text that is safe to show now."""
        text = self._held + delta
        cut = self._partial_start(text)
        self._held = text[cut:]
        return self._redaction.restore(text[:cut])

    def flush(self) -> str:
        """Whatever is still held back, at the end of the stream."""
        text, self._held = self._held, ""
        return self._redaction.restore(text)

    def _partial_start(self, text: str) -> int:
        start = text.rfind("[")
        if start == -1:
            return len(text)
        tail = text[start:]
        partial = any(len(tail) < len(p) and p.startswith(tail) for p in self._redaction.placeholders)
        return start if partial else len(text)
