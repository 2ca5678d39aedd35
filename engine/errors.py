"""Errors the engine raises, each naming the problem in words a user can act on.

    EngineError
    ├── ModelNotFoundError       a short name or path that resolves to nothing
    ├── ModelFormatError         a file that is missing pieces, truncated or corrupt
    ├── UnsupportedModelError    a valid checkpoint the engine cannot run
    └── ContextLengthError       a prompt (plus new tokens) longer than the context
"""

from __future__ import annotations


class EngineError(Exception):
    """Base class for every error the engine raises on purpose."""


class ModelNotFoundError(EngineError, FileNotFoundError):
    pass


class ModelFormatError(EngineError, ValueError):
    pass


class UnsupportedModelError(EngineError, ValueError):
    pass


class ContextLengthError(EngineError, ValueError):
    def __init__(self, n_tokens: int, limit: int, what: str = "prompt") -> None:
        super().__init__(
            f"{what} is {n_tokens} tokens, longer than the model's context of {limit} tokens"
        )
        self.n_tokens = n_tokens
        self.limit = limit
