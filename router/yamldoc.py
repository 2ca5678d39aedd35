"""YAML to plain data, remembering the line of every field.

PyYAML's node API (`yaml.compose`) keeps each node's start mark, which a plain
`yaml.safe_load` throws away; the loader needs it to say *where* a policy is
wrong. Keys are taken as written (so `on:` stays the string "on"), a key given
twice is an error rather than a silent overwrite, and a syntax error is
located at the field being read when the parser gave up.

A policy file is small and flat, so the loader bounds what a hostile one can
cost before anything is built: at most MAX_BYTES of text, nesting at most
MAX_DEPTH deep (PyYAML's parser slows down sharply with depth and its composer
recurses), and no aliases (`*name`), which is what makes "billion laughs"
files expand exponentially and recursive ones never end. Merge keys (`<<`)
need an alias to merge, so they go with them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

Path = tuple[str | int, ...]

MAX_BYTES = 256 * 1024  # policy text (checked by the loader); the examples are ~1 KiB
MAX_DEPTH = 32          # nested mappings/sequences; the schema needs 4


def dotted(path: Path) -> str:
    """`("privacy", "custom", 0, "pattern")` -> `privacy.custom[0].pattern`."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


@dataclass
class Document:
    """Parsed data plus the 1-based line where each field path starts."""

    data: Any
    lines: dict[Path, int] = field(default_factory=dict)
    duplicates: list[tuple[Path, int]] = field(default_factory=list)
    bad_keys: list[tuple[Path, int]] = field(default_factory=list)

    def line_of(self, path: Path) -> int:
        """Line of `path`, or of its nearest ancestor present in the file."""
        while path not in self.lines and path:
            path = path[:-1]
        return self.lines.get(path, 1)


class YamlSyntaxError(Exception):
    def __init__(self, message: str, line: int, path: Path) -> None:
        super().__init__(message)
        self.message, self.line, self.path = message, line, path


def parse_yaml(text: str) -> Document:
    """One YAML document to data with line numbers; raises YamlSyntaxError."""
    try:
        _check_shape(text)
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        context = exc.context
        if context and exc.context_mark and exc.context_mark.line + 1 != line:
            context += f" (opened on line {exc.context_mark.line + 1})"
        message = " ".join(part for part in (context, exc.problem) if part)
        raise YamlSyntaxError(message or "not valid YAML", line, _path_at_failure(text)) from exc
    except yaml.YAMLError as exc:
        raise YamlSyntaxError(str(exc), 1, ()) from exc
    doc = Document(data=None)
    if node is not None:
        doc.lines[()] = node.start_mark.line + 1
        doc.data = _build(node, (), doc, yaml.constructor.SafeConstructor())
    return doc


def _check_shape(text: str) -> None:
    """Refuse aliases and deep nesting from the event stream, before anything is composed or built."""
    depth = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        line = event.start_mark.line + 1
        if isinstance(event, yaml.AliasEvent):
            raise YamlSyntaxError(f"alias *{event.anchor} is not allowed in a policy file (nor anchors and merge "
                                  "keys); write the value out where it is used", line, _path_before(text, event))
        if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            depth += 1
            if depth > MAX_DEPTH:
                raise YamlSyntaxError(f"nesting deeper than {MAX_DEPTH} levels; a policy file is never this deep",
                                      line, _path_before(text, event))
        elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            depth -= 1


def _path_before(text: str, event: yaml.Event) -> Path:
    """Field path at `event`: the text cut there stops being YAML where that field is being read."""
    return _path_at_failure(text[: event.start_mark.index] + "@")


def _build(node: Node, path: Path, doc: Document, constructor: yaml.constructor.SafeConstructor) -> Any:
    if isinstance(node, MappingNode):
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            line = key_node.start_mark.line + 1
            if not isinstance(key_node, ScalarNode):
                doc.bad_keys.append((path, line))
                continue
            key = key_node.value
            if key in out:
                doc.duplicates.append((path + (key,), line))
                continue
            doc.lines[path + (key,)] = line
            out[key] = _build(value_node, path + (key,), doc, constructor)
        return out
    if isinstance(node, SequenceNode):
        items = []
        for index, item in enumerate(node.value):
            doc.lines[path + (index,)] = item.start_mark.line + 1
            items.append(_build(item, path + (index,), doc, constructor))
        return items
    try:
        return constructor.construct_object(node, deep=True)
    except (yaml.YAMLError, ValueError, OverflowError) as exc:  # e.g. an int of 10,000 digits, a bad !!timestamp
        raise YamlSyntaxError(f"value {node.value[:40]!r} cannot be read: {exc}", node.start_mark.line + 1,
                              path) from None


def _path_at_failure(text: str) -> Path:
    """Field path the event parser had reached when the text stopped being YAML."""
    frames: list[list[Any]] = []  # [kind, key-or-index, expecting_key]

    def current() -> Path:
        path = tuple(f[1] for f in frames if f[1] is not None)
        # A mapping whose last value is complete is between keys: name the mapping, not that key.
        between_keys = bool(frames) and frames[-1][0] == "map" and frames[-1][2] and frames[-1][1] is not None
        return path[:-1] if between_keys else path

    def value_started(event: yaml.Event, opens: str | None) -> None:
        if frames and frames[-1][0] == "map":
            top = frames[-1]
            if top[2]:  # this node is a key
                top[1] = event.value if isinstance(event, yaml.ScalarEvent) else "?"
                top[2] = False
                if opens:
                    frames.append([opens, None, opens == "map"])
                return
            top[2] = True
        elif frames:
            frames[-1][1] = 0 if frames[-1][1] is None else frames[-1][1] + 1
        if opens:
            frames.append([opens, None, opens == "map"])

    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, (yaml.ScalarEvent, yaml.AliasEvent)):
                value_started(event, None)
            elif isinstance(event, yaml.MappingStartEvent):
                value_started(event, "map")
            elif isinstance(event, yaml.SequenceStartEvent):
                value_started(event, "seq")
            elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                frames.pop()
    except yaml.YAMLError:
        return current()
    return ()
