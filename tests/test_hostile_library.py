"""Hostile input through the library: load_topology_data / read_document raise TopologyError (never
anything else) for values JSON cannot hold, and every problem formats as one printable line."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from ovsflow.load import _fast_yaml, _slow_yaml, read_document
from ovsflow.model import TopologyError, load_topology_data, schema
from ovsflow.problems import Problem, show


def base() -> dict:
    return {"hosts": {"hv1": {"vtep": "192.0.2.1"}}, "networks": {"n": {"vni": 7}},
            "ports": {"p": {"host": "hv1", "network": "n", "mac": "02:00:00:00:00:01"}}}


def problems(data: object) -> list[str]:
    with pytest.raises(TopologyError) as exc:
        load_topology_data(data, source="t")
    lines = [str(p) for p in exc.value.problems]
    assert lines and all(ln.isprintable() and "\n" not in ln for ln in lines)
    return lines


@pytest.mark.parametrize(("where", "value", "expected"), [
    ("vni", dt.date(2001, 12, 14), "t: networks.n.vni: not a value a topology can hold: a date or time (!!timestamp) (2001-12-14)"),
    ("vni", dt.datetime(2001, 12, 14, 1, 2), "t: networks.n.vni: not a value a topology can hold: a date or time (!!timestamp) (2001-12-14T01:02:00)"),  # noqa: E501
    ("vni", b"\x00\xff", "t: networks.n.vni: not a value a topology can hold: binary data (!!binary) (b'\\x00\\xff')"),
    ("vni", {3, "a"}, "t: networks.n.vni: not a value a topology can hold: a set (!!set) ({3, \"a\"})"),
    ("vni", 7.0, "t: networks.n.vni: must be of type integer (7.0)"),
    ("vni", float("nan"), "t: networks.n.vni: must be of type integer (nan)"),
    ("vni", True, "t: networks.n.vni: must be of type integer (true)"),
    ("tunnel", 1.5, "t: networks.n.tunnel: must be one of \"vxlan\", \"gre\", \"geneve\" (1.5)"),
])
def test_values_json_cannot_hold_or_wrong_types(where: str, value: object, expected: str) -> None:
    data = base()
    data["networks"]["n"][where] = value
    assert problems(data) == [expected]


def test_non_string_keys_of_every_kind() -> None:
    data = base()
    data["hosts"].update({1: {}, None: {}, (1, 2): {}, 2.5: {}, False: {}})
    lines = problems(data)
    assert len(lines) == 5 and all("a mapping key must be a string" in ln for ln in lines)
    assert "t: hosts.(1, 2): a mapping key must be a string, not a tuple ([1, 2])" in lines


def test_float_in_every_integer_field_is_refused() -> None:
    for path in (("networks", "n", "vni"), ("networks", "n", "vlan"), ("networks", "n", "hard_timeout"),
                 ("ports", "p", "ofport"), ("learn", "idle_timeout"), ("controller", "inactivity_probe_ms")):
        data = base()
        target = data
        for key in path[:-1]:
            target = target.setdefault(key, {})
        target[path[-1]] = 5.0
        assert problems(data) == [f"t: {'.'.join(path)}: must be of type integer (5.0)"], path


def test_depth_and_no_lists_in_the_schema() -> None:
    data = base()
    deep: dict = {}
    node = deep
    for _ in range(40):
        node["k"] = {}
        node = node["k"]
    data["hosts"]["hv1"]["x"] = deep
    assert any("nested deeper than 32 levels" in ln for ln in problems(data))
    assert '"array"' not in str(schema())  # load.py's fast path relies on it: no field is a list


def test_problem_formatting_never_raises_and_escapes_everything() -> None:
    values = [{1: "a", "b": 2, None: [1, "x"], (1,): {2}}, {3, "a", None, 2.5}, 10**5000, -(10**4400),
              "\x1b[2J\u202e\ud800", b"\xff" * 200, dt.time(1, 2), object(), [[[[[[[[1]]]]]]]], {"k" * 100: "v" * 100}]
    for value in values:
        text = str(Problem("f\n\x1b", "p.\x00\ud800", "m\r", value))
        assert text.isprintable() and len(text) < 200, text
        assert text.startswith("f\\n\\x1b: p.\\x00\\ud800: m\\r (")
    assert show(10**5000).startswith("<integer of 16610 bits>")
    assert show("\x1b]0;title\x07") == "\\x1b]0;title\\x07"


def test_fast_and_pure_yaml_loaders_agree(tmp_path: Path) -> None:
    docs = [
        "hosts:\n  hv1: {vtep: 192.0.2.1}  # note: with, commas {and} braces\nnetworks: {}\n",
        "a: 12:00:00:00:01:01\nb: no\nc: on\nd: 0o17\ne: 0x1F\nf: 017\ng: ~\nh: 1_000\ni: 2001-12-14\nj: .inf\nk: TRUE\n",
        "a: {b: 1, c: \"x: y\", d: 'q'}\nb:\n  c: d\n  e:\n",
        "a: [1, 2]\n",
    ]
    for text in docs:
        fast, why = _fast_yaml(text)
        assert why is None, (text, why)
        assert fast == _slow_yaml(text, "t"), text
    for text in ("a: 1\na: 2\n", "a: {b: 1, b: 2}\n", "a: {b, b}\n", "a:\n  x: 1\n  x: 1\n# note: padding\n"):
        path = tmp_path / "t.yaml"
        path.write_text(text)
        with pytest.raises(TopologyError, match="duplicate key"):
            read_document(path)
    # comments are no reason to leave a document to the slow loader (when no quote can hold a "#")
    assert _fast_yaml("# do not! *note* &x |>\na: 1  # !tag\nb: x#y\n") == ({"a": 1, "b": "x#y"}, None)
    for text in ("a: !!binary aGk=\n", "a: &x 1\nb: *x\n", "a: 0X1\n", "a: +0x1\n", "a: b\n---\nc: d\n",
                 "a: x#!y\n", "a: '# x'\nb: !t 1\n"):
        assert _fast_yaml(text)[1] is not None, text  # left to the pure loader (or refused)
