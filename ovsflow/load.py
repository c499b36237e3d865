"""Reading a topology document from a file an attacker may have written: bounded, strict, and every
failure one `Problem` line, never a traceback or a hang.

- Only regular files are opened (a FIFO, /dev/zero or a directory is refused before it is read), and
  at most MAX_DOCUMENT_BYTES are read.
- JSON: the standard parser; duplicate keys, NaN and Infinity are errors.
- YAML: plain block/flow mappings without anchors, tags or escapes (what a topology is) go to
  fastyaml-rs (Rust, YAML 1.2 core schema: 0.36 s for 100,000 ports where PyYAML's C loader takes 9 s).
  It drops duplicate keys silently, so its mapping entries are counted against the text's `key: `
  occurrences, which can only overcount keys: equal counts prove there was no duplicate. Anything
  else (aliases, tags, escapes, counts that differ) goes to PyYAML's pure loader with YAML 1.2 scalars,
  bounded in size, nesting and alias expansion, which also words every syntax error.
"""

from __future__ import annotations

import json
import os
import re
import stat
from itertools import chain
from pathlib import Path
from typing import Any

import fast_yaml
import yaml
from fast_yaml import lint as fast_lint

from .limits import (
    MAX_ALIAS_NODES,
    MAX_DEPTH,
    MAX_DOCUMENT_BYTES,
    MAX_SLOW_YAML_BYTES,
    MAX_SLOW_YAML_NODES,
)
from .problems import Problem, TopologyError


def _fail(name: str, message: str) -> TopologyError:
    return TopologyError([Problem(name, "", message, has_value=False)])


_FILE_KINDS = {stat.S_IFDIR: "a directory", stat.S_IFIFO: "a FIFO (named pipe)", stat.S_IFCHR: "a character device",
               stat.S_IFBLK: "a block device", stat.S_IFSOCK: "a socket"}


def read_bytes(path: str | Path, name: str) -> bytes:
    """At most MAX_DOCUMENT_BYTES of a regular file. stat() comes first, so a FIFO or a device is
    never opened (opening some devices has effects); the open is non-blocking and fstat()ed again."""
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):
            raise _fail(name, f"cannot read file: not a regular file but {_FILE_KINDS.get(stat.S_IFMT(st.st_mode), 'a special file')}")
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the path
        raise _fail(name, f"cannot read file: {exc.strerror if isinstance(exc, OSError) and exc.strerror else exc}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise _fail(name, "cannot read file: not a regular file")
        chunks, total = [], 0
        while True:
            chunk = os.read(fd, min(1 << 20, MAX_DOCUMENT_BYTES + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > MAX_DOCUMENT_BYTES:
                raise _fail(name, f"file too large: more than {MAX_DOCUMENT_BYTES} bytes (the limit)")
    except OSError as exc:
        raise _fail(name, f"cannot read file: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    return b"".join(chunks)


def decode(raw: bytes, name: str) -> str:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _fail(name, f"not UTF-8 text: byte 0x{raw[exc.start]:02x} at offset {exc.start}") from None
    return text.removeprefix("\ufeff")


def read_document(path: str | Path) -> Any:
    """Parse a YAML or JSON file; any failure is a TopologyError naming the file and position."""
    name = str(path)
    text = decode(read_bytes(path, name), name)
    return parse_json(text, name) if name.endswith(".json") else parse_yaml(text, name)


# ---------------------------------------------------------------------------------------------
# JSON


def _json_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        for k, _ in pairs:
            if k in seen:
                raise ValueError(f"duplicate key {k!r}")
            seen.add(k)
    return out


def _no_constant(text: str) -> Any:
    raise ValueError(f"{text} is not a JSON number")


def parse_json(text: str, name: str) -> Any:
    try:
        return json.loads(text, object_pairs_hook=_json_pairs, parse_constant=_no_constant)
    except RecursionError:
        raise _fail(name, f"invalid JSON: nested too deeply (at most {MAX_DEPTH} levels)") from None
    except ValueError as exc:  # also integers longer than Python's int-string limit
        raise _fail(name, f"invalid JSON: {exc}") from None


# ---------------------------------------------------------------------------------------------
# YAML: the pure, bounded reference loader


class _Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 core scalars: `12:00:00:00:01:01` stays a string (YAML 1.1 would read
    a base-60 integer), `no`/`on` stay strings, no timestamps, and duplicate keys are an error, not
    silently dropped. Composing counts nesting depth, nodes and the nodes aliases add when expanded,
    so a billion-laughs document fails after MAX_ALIAS_NODES, not after gigabytes."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._nodes = 0
        self._expanded = 0
        self._sizes: dict[int, int] = {}

    def compose_node(self, parent: Any, index: Any) -> Any:
        mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
        if self.check_event(yaml.AliasEvent):
            node = super().compose_node(parent, index)
            size = self._sizes.get(id(node))
            if size is None:
                raise yaml.composer.ComposerError(None, None, "recursive alias (a node that contains itself)", mark)
            self._expanded += size
            if self._expanded > MAX_ALIAS_NODES:
                raise yaml.composer.ComposerError(None, None, f"aliases expand to more than {MAX_ALIAS_NODES} nodes (the limit)", mark)
            return node
        self._depth += 1
        self._nodes += 1
        if self._depth > MAX_DEPTH:
            raise yaml.composer.ComposerError(None, None, f"nested deeper than {MAX_DEPTH} levels (the limit)", mark)
        if self._nodes > MAX_SLOW_YAML_NODES:
            raise yaml.composer.ComposerError(None, None, f"more than {MAX_SLOW_YAML_NODES} nodes (the limit)", mark)
        node = super().compose_node(parent, index)
        self._depth -= 1
        if isinstance(node, yaml.SequenceNode):
            size = 1 + sum(self._sizes.get(id(c), 1) for c in node.value)
        elif isinstance(node, yaml.MappingNode):
            size = 1 + sum(self._sizes.get(id(k), 1) + self._sizes.get(id(v), 1) for k, v in node.value)
        else:
            size = 1
        self._sizes[id(node)] = size
        return node


_DROPPED = ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float", "tag:yaml.org,2002:bool",
            "tag:yaml.org,2002:timestamp", "tag:yaml.org,2002:value")
_Loader.yaml_implicit_resolvers = {
    ch: [(tag, rx) for tag, rx in resolvers if tag not in _DROPPED]
    for ch, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:int", re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$"), list("-+0123456789")
)
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"),
    list("-+0123456789."),
)


def _construct_int(loader: yaml.SafeLoader, node: yaml.Node) -> int:
    text = loader.construct_scalar(node)  # type: ignore[arg-type]
    try:
        return int(text, 0) if text.lower().startswith(("0x", "0o")) else int(text)
    except ValueError as exc:  # not a number after an explicit !!int, or longer than Python allows
        raise yaml.constructor.ConstructorError(None, None, f"not an integer Python can read ({exc})", node.start_mark) from None


_Loader.add_constructor("tag:yaml.org,2002:int", _construct_int)


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        try:
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (first at line {seen[key] + 1})", key_node.start_mark
                )
            seen[key] = key_node.start_mark.line
        except TypeError:  # a list or mapping as a key
            raise yaml.constructor.ConstructorError(None, None, "a mapping key must be a string", key_node.start_mark) from None
    return loader.construct_mapping(node)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _slow_yaml(text: str, name: str) -> Any:
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1} column {mark.column + 1}" if mark else ""
        what = getattr(exc, "problem", None) or str(exc)
        context = getattr(exc, "context", None)
        msg = f"invalid YAML at {where}: {what}" if where else f"invalid YAML: {what}"
        if context and context not in msg:
            msg += f" ({context})"
        raise _fail(name, msg) from None
    except (RecursionError, ValueError) as exc:
        raise _fail(name, f"invalid YAML: {exc.__class__.__name__}: {exc}") from None


# ---------------------------------------------------------------------------------------------
# YAML: the fast path

# Anything beyond mappings of plain or simply quoted scalars: tags (!), anchors and aliases (& *),
# directives (%), block scalars (| >), merge keys (<), explicit keys (?), reserved (@ `), escapes,
# tabs and CR, control characters, and the line breaks YAML 1.1 has and 1.2 does not.
_BEYOND_FAST = re.compile("[!&*%|><?@`\t\r\\\\\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\ufeff\ud800-\udfff]")
_COMMENT = re.compile(r"(?:^|(?<=[ ]))#[^\n]*", re.M)
_ASCII_FAST = bytes(b for b in range(128) if not _BEYOND_FAST.match(chr(b)))
# Also integers fastyaml reads and YAML 1.2's core schema does not (0X1, +0x1, -0o7): strings there.
# (A second document is refused by fastyaml itself: max_documents=1.)
_MARKERS = ('":', "':", ":}", ":,", ":]", "0X", "0O")
_SIGNED = ("+0x", "-0x", "+0o", "-0o")
_VALUELESS = re.compile(r"[{,][^:{},\n]*[,}]")
_FAST_ERROR = re.compile(r"^(?:YAML parse error: )?(?:YAML [a-z ]+ error: )?(?:YAML resource limit exceeded )?"
                         r"(.*?),? at line (\d+),? column (\d+):?\s*(.*)$", re.DOTALL)


def _fast_yaml(text: str) -> tuple[Any, str | None]:
    """(data, None) when fastyaml's reading is certainly the reference loader's, else (None, why)."""
    # ASCII text: bytes.translate deletes every allowed byte in 3 ms where the regex takes 37 ms
    beyond = None if text.isascii() and not text.encode("ascii").translate(None, _ASCII_FAST) else _BEYOND_FAST.search(text)
    if beyond and "#" in text and '"' not in text and "'" not in text:
        # Without quotes every " #" starts a comment, which neither reader interprets: look again
        # without them, so "# don't!" or "# *note*" does not leave a large file to the slow loader.
        beyond = _BEYOND_FAST.search(_COMMENT.sub("", text))
    if beyond:
        return None, f"{beyond.group()!r} at line {text.count(chr(10), 0, beyond.start()) + 1}"
    if any(m in text for m in _MARKERS) or (("0x" in text or "0o" in text) and any(m in text for m in _SIGNED)):
        return None, "quoted keys, keys without values or integers YAML 1.2 does not have"
    try:
        data = fast_yaml.safe_load(text, max_depth=MAX_DEPTH, max_alias_bytes=1, max_documents=1)
    except Exception as exc:  # whatever the fast reader fails on, the reference loader decides
        return None, _fast_message(str(exc))
    entries, level = 0, [data] if type(data) is dict else []
    while level:  # level by level, so that the leaves (most values) are looked at in C
        entries += sum(map(len, level))
        values = list(chain.from_iterable(map(dict.values, level)))
        kinds = set(map(type, values))
        if list in kinds:  # no field of a topology is a list: refused whatever its keys
            return data, None
        level = [v for v in values if type(v) is dict] if dict in kinds else []
    # Every key is followed by ": " or ":\n", but for flow-mapping keys without a value ({a, b}),
    # which sit between "{" or "," and "," or "}" with no ":" (when a segment like that exists,
    # every "," and "}" is counted as a key too): this bound counts every key, and more when a
    # comment or a string holds those characters. Duplicates make fewer entries than keys.
    bound = text.count(": ") + text.count(":\n") + text.endswith(":")
    if "{" in text and _VALUELESS.search(text):
        bound += text.count(",") + text.count("}")
    if entries != bound:
        if "[" in text:  # a topology has no sequences; fastyaml's linter takes ~400 bytes per item
            return None, "flow sequences"
        try:
            dups = [d for d in fast_lint.lint(text, _LINT) if d.code == "duplicate-key"]
        except Exception as exc:  # as above
            return None, _fast_message(str(exc))
        if dups:
            return None, f"invalid YAML at line {dups[0].span.start.line} column {dups[0].span.start.column}: {dups[0].message}"
    return data, None


def _fast_message(text: str) -> str:
    m = _FAST_ERROR.match(text.strip())
    if not m:
        return f"invalid YAML: {text}"
    detail = f" {m.group(4)}" if m.group(4) else ""
    return f"invalid YAML at line {m.group(2)} column {m.group(3)}: {m.group(1)}{detail}"


_LINT = fast_lint.LintConfig(max_line_length=None, max_depth=MAX_DEPTH, disabled_rules=[
    "brackets", "colons", "comments", "empty-lines", "indentation", "key-ordering", "line-length",
    "new-line-at-end-of-file", "octal-values", "quoted-strings", "trailing-whitespace", "truthy"])


def parse_yaml(text: str, name: str) -> Any:
    data, why = _fast_yaml(text)
    if why is None:
        return data
    if len(text) > MAX_SLOW_YAML_BYTES:
        if why.startswith("invalid YAML"):
            raise _fail(name, why)
        raise _fail(name, f"YAML beyond plain mappings ({why}) is read by the slow loader, which takes at most "
                          f"{MAX_SLOW_YAML_BYTES} bytes (the limit); write a large topology as plain YAML mappings or JSON")
    return _slow_yaml(text, name)
