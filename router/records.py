"""Values in records: the cells of delimited rows under a header, and the quoted values of SQL
INSERT rows, whose column says what they are where no word beside them does ("employee", "Name",
"dob": `INSERT INTO patients (first_name, dob) VALUES ('Maria', '1988-03-12')`). The callers name
the columns they read and say what a value must look like (router/names.py, router/labelled.py).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from functools import lru_cache

from router.name_words import THING_NAMES

Span = tuple[int, int]
_SEPARATORS = (",", ";", "\t", "|")
# The statement's head up to VALUES; the column list is short, so its match is too (linear: no nesting).
_INSERT = re.compile(r"(?i)\binsert\s+into\s+([\w.`\"\[\]]{1,128})\s*\(([^()]{1,2000})\)\s*values\s*")
_MAX_ROWS_CHARS = 100_000  # how far one statement's rows are read


def _column(heading: str) -> str:
    return "".join(c for c in heading.casefold() if c.isalpha())


@lru_cache(maxsize=4)
def _headings(text: str) -> frozenset[str]:
    """Every cell of every delimited line, as a column name: what a header could name. Computed once a
    text for the detectors that each read tables (names, dates of birth, health, pay, cards)."""
    found: set[str] = set()
    for line in text.split("\n"):
        for sep in _SEPARATORS:
            if sep in line:
                found.update(_column(cell) for cell in line.split(sep))
    return frozenset(found)


def table_cells(text: str, columns: frozenset[str], accept: Callable[[str], bool]) -> Iterator[Span]:
    """Cells of delimited rows under a header naming one of `columns` (letters only, lower case), in
    such a column, that `accept` takes."""
    if "\n" not in text or columns.isdisjoint(_headings(text)):
        return
    keys: set[int] = set()
    sep, width, offset = "", 0, 0
    for line in text.split("\n"):
        # the header's separator first: "| Ana | $187,000 |" holds a comma too
        row_sep = sep if sep and sep in line else next((s for s in _SEPARATORS if s in line), "")
        cells = line.split(row_sep) if row_sep else [line]
        heading = {i for i, cell in enumerate(cells) if _column(cell) in columns}
        if row_sep and heading and len(cells) >= 2:
            keys, sep, width = heading, row_sep, len(cells)
        elif keys and row_sep == sep and len(cells) == width:
            at = offset
            for i, cell in enumerate(cells):
                value = cell.strip().strip("\"'")
                if i in keys and value and accept(value):
                    start = at + cell.index(value)
                    yield start, start + len(value)
                at += len(cell) + len(sep)
        else:
            keys = set()
        offset += len(line) + 1


def sql_values(text: str, columns: frozenset[str], accept: Callable[[str], bool]) -> Iterator[Span]:
    """Quoted values of INSERT rows in one of `columns` (letters only, lower case) that `accept` takes."""
    for head in _INSERT.finditer(text):
        table = "".join(c for c in head.group(1).rsplit(".", 1)[-1].casefold() if c.isalpha())
        singular = table[:-3] + "y" if table.endswith("ies") else table.removesuffix("s")
        things = table in THING_NAMES or singular in THING_NAMES  # products.name, companies.name: no one's
        names = [c.strip().strip("`\"[]") for c in head.group(2).split(",")]
        read = [_column(c) in columns and not (things and c.casefold() == "name") for c in names]
        if any(read):
            yield from _row_values(text, head.end(), min(len(text), head.end() + _MAX_ROWS_CHARS), read, accept)


def _row_values(text: str, at: int, end: int, read: list[bool], accept: Callable[[str], bool]) -> Iterator[Span]:
    """Walk `(v, 'v', ...), (...)` from `at`: each quoted value in a column to `read` that `accept` takes."""
    while at < end and text[at] == "(":
        at, column = at + 1, 0
        while at < end and text[at] != ")":
            if text[at] in "'\"":
                quote, start = text[at], at + 1
                at = start
                while at < end and (text[at] != quote or text[at + 1:at + 2] == quote):
                    at += 2 if text[at] == quote else 1  # '' inside a string is a quote
                if column < len(read) and read[column] and accept(text[start:at]):
                    yield start, at
                at += 1
            elif text[at] == ",":
                column, at = column + 1, at + 1
            else:
                at += 1
        at += 1
        while at < end and text[at] in " \t\r\n,":
            at += 1
