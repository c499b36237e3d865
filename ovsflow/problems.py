"""One problem per line: `file: path.to.field: message (value)`, safe to print whatever the input.

Everything in a line may come from a hostile file (its name, keys, values), so control characters,
line breaks, bidi overrides and lone surrogates are escaped (`\\n`, `\\x1b`, `\\udc80`): a line stays one
line, and no ANSI escape reaches the terminal. Values are shown bounded (80 characters) without
converting a whole document first, and any mix of types formats without raising.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass
from typing import Any

_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2066-\u2069\ufeff\ud800-\udfff]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape_one(m: re.Match[str]) -> str:
    ch = m.group()
    return _NAMED.get(ch) or (f"\\x{ord(ch):02x}" if ord(ch) < 0x100 else f"\\u{ord(ch):04x}")


def escape(text: str) -> str:
    """`text` with every character that could break a line or drive a terminal escaped."""
    return _UNSAFE.sub(_escape_one, text)


def show(value: Any, limit: int = 80) -> str:
    """A value as the error line shows it: strings as they are, the rest JSON-like; bounded, escaped."""
    text = value[: limit + 1] if isinstance(value, str) else _render(value, limit + 1, 0)
    text = text if len(text) <= limit else text[: limit - 3] + "..."
    return escape(text)


def _key(value: Any) -> tuple[str, str]:
    return (type(value).__name__, _render(value, 40, 7))


def _render(value: Any, budget: int, depth: int) -> str:
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, int):
        try:
            return str(value)
        except ValueError:  # more digits than Python converts
            return f"<integer of {value.bit_length()} bits>"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value[:budget], ensure_ascii=False)
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, (bytes, bytearray)):
        return repr(bytes(value[:budget]))
    if isinstance(value, dict):
        items = list(value.items())
        if all(isinstance(k, str) for k, _ in items):
            items.sort(key=lambda kv: kv[0])
        return _join("{", "}", (f"{_render(k, budget, 7)}: {_render(v, budget, depth + 1)}" for k, v in items), budget, depth)
    if isinstance(value, (list, tuple)):
        return _join("[", "]", (_render(v, budget, depth + 1) for v in value), budget, depth)
    if isinstance(value, (set, frozenset)):
        return _join("{", "}", (_render(v, budget, depth + 1) for v in sorted(value, key=_key)), budget, depth)
    return f"<{type(value).__name__}>"


def _join(open_: str, close: str, parts: Any, budget: int, depth: int) -> str:
    if depth >= 6:
        return open_ + "..." + close
    out: list[str] = []
    used = 0
    for part in parts:
        if used > budget:
            out.append("...")
            break
        out.append(part)
        used += len(part) + 2
    return open_ + ", ".join(out) + close


@dataclass(frozen=True)
class Problem:
    file: str
    path: str  # dotted path to the field, e.g. "ports.vm1.mac" ("" for the document itself)
    message: str
    value: Any = None
    has_value: bool = True

    def __str__(self) -> str:
        where = self.path or "(top)"
        text = f"{escape(self.file)}: {escape(where)}: {escape(self.message)}"
        if self.has_value:
            text += f" ({show(self.value)})"
        return text


class TopologyError(Exception):
    """Raised with every problem found; str() is one line per problem."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))
