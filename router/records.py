"""Names in records: the cells of delimited rows under a header that names a person ("employee",
"Name"), and the values of SQL INSERT rows whose column names one (`INSERT INTO patients
(first_name, dob) VALUES ('Maria', ...)`). A record's column says what a value is where no word
beside it does; the caller says what a name looks like (router/names.py).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

from router.name_words import PERSON_COLUMNS, THING_NAMES

Span = tuple[int, int]
_SEPARATORS = (",", ";", "\t", "|")
# The statement's head up to VALUES; the column list is short, so its match is too (linear: no nesting).
_INSERT = re.compile(r"(?i)\binsert\s+into\s+([\w.`\"\[\]]{1,128})\s*\(([^()]{1,2000})\)\s*values\s*")
_MAX_ROWS_CHARS = 100_000  # how far one statement's rows are read


def _names_a_person(column: str) -> bool:
    return "".join(c for c in column.casefold() if c.isalpha()) in PERSON_COLUMNS


def table_cells(text: str, is_name: Callable[[str], bool]) -> Iterator[Span]:
    """Cells of delimited rows under a header whose column names a person, that look like a name."""
    if "\n" not in text:
        return
    columns: set[int] = set()
    sep, width, offset = "", 0, 0
    for line in text.split("\n"):
        row_sep = next((s for s in _SEPARATORS if s in line), "")
        cells = line.split(row_sep) if row_sep else [line]
        keys = {i for i, cell in enumerate(cells) if _names_a_person(cell)}
        if row_sep and keys and len(cells) >= 2:
            columns, sep, width = keys, row_sep, len(cells)
        elif columns and row_sep == sep and len(cells) == width:
            at = offset
            for i, cell in enumerate(cells):
                value = cell.strip().strip("\"'")
                if i in columns and value and is_name(value):
                    start = at + cell.index(value)
                    yield start, start + len(value)
                at += len(cell) + len(sep)
        else:
            columns = set()
        offset += len(line) + 1


def sql_values(text: str, is_name: Callable[[str], bool]) -> Iterator[Span]:
    """Quoted values of INSERT rows, in a column that names a person, that look like a name."""
    for head in _INSERT.finditer(text):
        table = "".join(c for c in head.group(1).rsplit(".", 1)[-1].casefold() if c.isalpha())
        singular = table[:-3] + "y" if table.endswith("ies") else table.removesuffix("s")
        things = table in THING_NAMES or singular in THING_NAMES  # products.name, companies.name: no one's
        names = [c.strip().strip("`\"[]") for c in head.group(2).split(",")]
        columns = [_names_a_person(c) and not (things and c.casefold() == "name") for c in names]
        if any(columns):
            yield from _row_values(text, head.end(), min(len(text), head.end() + _MAX_ROWS_CHARS), columns, is_name)


def _row_values(text: str, at: int, end: int, columns: list[bool],
                is_name: Callable[[str], bool]) -> Iterator[Span]:
    """Walk `(v, 'v', ...), (...)` from `at`: each quoted value in a person's column that looks like a name."""
    while at < end and text[at] == "(":
        at, column = at + 1, 0
        while at < end and text[at] != ")":
            if text[at] in "'\"":
                quote, start = text[at], at + 1
                at = start
                while at < end and (text[at] != quote or text[at + 1:at + 2] == quote):
                    at += 2 if text[at] == quote else 1  # '' inside a string is a quote
                if column < len(columns) and columns[column] and is_name(text[start:at]):
                    yield start, at
                at += 1
            elif text[at] == ",":
                column, at = column + 1, at + 1
            else:
                at += 1
        at += 1
        while at < end and text[at] in " \t\r\n,":
            at += 1
