"""The schema step of validation: values JSON cannot hold and nesting depth first, then the JSON
Schema (ovsflow/schema/topology.schema.json) with strict types, each problem one `Problem`.

jsonschema-rs decides quickly that a document is valid; jsonschema (Python) is the reference and
words the errors. Both are strict here in ways the specification is not: a float (5.0, 1e3) or a
boolean is not an integer, and `$` ends the string.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterable
from functools import cache, lru_cache
from importlib import resources
from typing import Any

import jsonschema

from .limits import MAX_DEPTH
from .problems import Problem


@lru_cache(maxsize=1)
def schema() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(resources.files("ovsflow").joinpath("schema/topology.schema.json").read_text())
    return loaded


def _pattern(validator: Any, pattern: str, instance: Any, schema: dict[str, Any]) -> Iterable[jsonschema.ValidationError]:
    """JSON Schema's `$` ends the string; Python's `re.search` also lets it match before a final
    newline, which would let "hv1\\n" pass as a name."""
    if isinstance(instance, str) and not re.search(_anchored(pattern), instance):
        yield jsonschema.ValidationError(f"{instance!r} does not match {pattern!r}")


@cache
def _anchored(pattern: str) -> str:
    return pattern[:-1] + r"\Z" if pattern.endswith("$") else pattern


@lru_cache(maxsize=1)
def _validator() -> jsonschema.protocols.Validator:
    """The reference validator, strict: a float (5.0, 1e3) or a boolean is not an integer."""
    base = jsonschema.Draft202012Validator
    base.check_schema(schema())
    checker = base.TYPE_CHECKER.redefine("integer", lambda _c, v: isinstance(v, int) and not isinstance(v, bool))
    cls = jsonschema.validators.extend(base, validators={"pattern": _pattern}, type_checker=checker)
    validator: jsonschema.protocols.Validator = cls(schema(), format_checker=base.FORMAT_CHECKER)
    return validator


def _dotted(parts: Iterable[Any]) -> str:
    return ".".join(str(p) for p in parts)


@lru_cache(maxsize=1)
def _fast_validator() -> Any:
    """jsonschema-rs checks a valid document ~250x faster than jsonschema (0.12 s vs 30 s for
    100,000 ports, bench/); jsonschema stays the reference and words the errors when there are any."""
    try:
        import jsonschema_rs
    except ImportError:  # pragma: no cover - optional speed-up
        return None
    return jsonschema_rs.validator_for(schema(), validate_formats=True)


@lru_cache(maxsize=1)
def _integer_paths() -> tuple[tuple[str, ...], ...]:
    """Paths of the schema's integer fields ("*" for any name): jsonschema-rs, like the JSON Schema
    specification, counts 5.0 as an integer, so those fields are checked for floats after it."""
    defs, out = schema()["$defs"], []

    def walk(node: dict[str, Any], path: tuple[str, ...]) -> None:
        if "$ref" in node:
            node = defs[node["$ref"].rsplit("/", 1)[1]]
        if node.get("type") == "integer":
            out.append(path)
        for key, sub in node.get("properties", {}).items():
            walk(sub, path + (key,))
        if isinstance(node.get("additionalProperties"), dict):
            walk(node["additionalProperties"], path + ("*",))

    walk(schema(), ())
    return tuple(out)


def _float_in_integer_field(data: Any) -> bool:
    for path in _integer_paths():
        nodes = [data]
        for part in path:
            nodes = [x for n in nodes if isinstance(n, dict) for x in (n.values() if part == "*" else [n[part]] if part in n else [])]
        if any(type(n) is float for n in nodes):
            return True
    return False


def _kind(value: Any) -> str:
    if isinstance(value, (bytes, bytearray)):
        return "binary data (!!binary)"
    if isinstance(value, (set, frozenset)):
        return "a set (!!set)"
    if isinstance(value, (dt.date, dt.time)):
        return "a date or time (!!timestamp)"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    return f"a {type(value).__name__}"


def type_problems(data: Any, source: str, limit: int = 100) -> list[Problem]:
    """What JSON cannot hold (non-string keys, dates, binary data, sets) and nesting deeper than
    MAX_DEPTH, found before the schema validators, which choke on them."""
    out: list[Problem] = []
    stack: list[tuple[tuple[Any, ...], Any]] = [((), data)]
    while stack and len(out) < limit:
        path, value = stack.pop()
        if len(path) > MAX_DEPTH:
            out.append(Problem(source, _dotted(path[:MAX_DEPTH]), f"nested deeper than {MAX_DEPTH} levels (the limit)", has_value=False))
        elif isinstance(value, dict):
            for key, item in value.items():
                if isinstance(key, str):
                    stack.append((path + (key,), item))
                else:
                    out.append(Problem(source, _dotted(path + (key,)), f"a mapping key must be a string, not {_kind(key)}", key))
        elif isinstance(value, list):  # no field is a list: the schema refuses it without looking inside
            continue
        elif not isinstance(value, (str, int, float)) and value is not None:
            out.append(Problem(source, _dotted(path), f"not a value a topology can hold: {_kind(value)}", value))
    return sorted(out, key=lambda p: p.path)


def schema_problems(data: Any, source: str) -> list[Problem]:
    fast = _fast_validator()
    if fast is not None:
        try:
            if fast.is_valid(data) and not _float_in_integer_field(data):
                return []
        except (ValueError, TypeError, OverflowError, RecursionError):  # types JSON has not: words below
            pass
    problems = type_problems(data, source)
    if problems:
        return problems
    for err in _validator().iter_errors(data):
        path = list(err.absolute_path)
        rule: dict[str, Any] = err.schema if isinstance(err.schema, dict) else {}
        if err.validator == "additionalProperties" and isinstance(err.instance, dict):
            allowed = set(rule.get("properties", {}))
            for key in sorted(k for k in err.instance if k not in allowed):
                known = ", ".join(sorted(allowed)) or "none"
                problems.append(Problem(source, _dotted(path + [key]), f"unknown key (allowed: {known})", err.instance[key]))
            continue
        if "propertyNames" in err.schema_path:
            problems.append(Problem(source, _dotted(path + [err.instance]), f"invalid key: {_schema_message(err)}", err.instance))
            continue
        if err.validator == "required":
            missing = re.findall(r"'([^']+)' is a required property", err.message)
            for key in missing:
                problems.append(Problem(source, _dotted(path + [key]), "required key is missing", has_value=False))
            continue
        problems.append(Problem(source, _dotted(path), _schema_message(err), err.instance))
    if not problems and fast is not None:  # the two validators disagree: trust the stricter one
        try:
            problems = [Problem(source, _dotted(e.instance_path), e.message, has_value=False) for e in fast.iter_errors(data)]
        except (ValueError, TypeError, OverflowError, RecursionError) as exc:
            problems = [Problem(source, "", f"cannot validate: {exc}", has_value=False)]
    problems.sort(key=lambda p: (p.path, p.message))
    return problems


def _schema_message(err: jsonschema.ValidationError) -> str:
    v, s = err.validator, err.validator_value
    rule: dict[str, Any] = err.schema if isinstance(err.schema, dict) else {}
    if v == "type":
        return f"must be of type {' or '.join(map(str, s)) if isinstance(s, (list, tuple)) else s}"
    if v == "minimum":
        return f"must be >= {s}"
    if v == "maximum":
        return f"must be <= {s}"
    if v == "enum":
        return "must be one of " + ", ".join(json.dumps(x) for x in (s if isinstance(s, list) else [s]))
    if v == "pattern":
        hint = rule.get("description") or f"pattern {s}"
        return f"not {hint}" if "description" in rule else f"does not match {s}"
    if v == "format":
        return f"not a valid {s} address" if str(s).startswith("ipv") else f"not a valid {s}"
    return str(err.message)
