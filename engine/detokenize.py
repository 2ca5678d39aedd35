"""Streaming detokenization: token IDs in, text deltas out, stop strings honoured.

A token can end inside a multi-byte character, and a stop string can span
tokens, so text is released only once it can no longer change.
"""

from __future__ import annotations

from engine.tokenizer import Tokenizer

_INCOMPLETE = "\ufffd"


class Detokenizer:
    def __init__(self, tokenizer: Tokenizer, stop_strings: tuple[str, ...] = ()) -> None:
        self.tokenizer = tokenizer
        self.stop_strings = tuple(s for s in stop_strings if s)
        self._ids: list[int] = []
        self._text = ""  # decoded text so far, complete characters only
        self._released = 0  # characters of _text already handed out
        self.stopped = False

    def push(self, token_id: int) -> str:
        """Add one token; return the text that is now final (may be empty)."""
        if self.stopped:
            return ""
        self._ids.append(token_id)
        text = self.tokenizer.decode(self._ids)
        if text.endswith(_INCOMPLETE):
            return ""
        self._text = text
        for stop in self.stop_strings:
            at = self._text.find(stop, max(0, self._released - len(stop)))
            if at >= 0:
                self.stopped = True
                self._text = self._text[:at]
                return self._release(len(self._text))
        return self._release(len(self._text) - self._held_back())

    def flush(self) -> str:
        """Release whatever was held back (at the end of generation)."""
        return self._release(len(self._text))

    @property
    def text(self) -> str:
        return self._text

    def _held_back(self) -> int:
        """Length of the longest tail that could still grow into a stop string."""
        tail = 0
        for stop in self.stop_strings:
            for n in range(min(len(stop) - 1, len(self._text)), tail, -1):
                if self._text.endswith(stop[:n]):
                    tail = n
                    break
        return tail

    def _release(self, upto: int) -> str:
        upto = max(upto, self._released)
        delta = self._text[self._released : upto]
        self._released = upto
        return delta
