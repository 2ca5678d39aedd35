"""Errors the router raises on purpose.

    ValueError
     └── PolicyError        a policy file a user must fix; carries every Problem
                            found, each naming the file, the dotted field and the line

A policy is a promise about what may leave the device, so a file that does not
say exactly what its author meant is refused whole, never half-applied.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a policy file, located so an editor can jump to it."""

    source: str
    field: str
    line: int | None
    message: str

    def __str__(self) -> str:
        where = f"{self.source}:{self.line}" if self.line is not None else self.source
        return f"{where}: {self.field or '(top level)'}: {self.message}"


class PolicyError(ValueError):
    """A policy that cannot be used; `problems` lists every issue, sorted by line.

    `source`, `field`, `line` and `message` are those of the first problem, which
    is what most callers (and tests) want.
    """

    def __init__(self, problems: list[Problem]) -> None:
        if not problems:
            raise ValueError("PolicyError needs at least one problem")
        self.problems = tuple(sorted(problems, key=lambda p: (p.line is None, p.line or 0, p.field)))
        first = self.problems[0]
        self.source, self.field, self.line, self.message = first.source, first.field, first.line, first.message
        super().__init__("\n".join(str(p) for p in self.problems))
