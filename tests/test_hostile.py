"""Hostile input through the command line: exit 2 and one escaped line `file: path: message (value)`
per problem, never a traceback or a hang, within bounded time and memory."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
BASE = """\
hosts:
  hv1: {vtep: 192.0.2.11}
  hv2: {vtep: 192.0.2.12}
networks:
  blue: {vni: 101}
ports:
  vm1: {host: hv1, network: blue, mac: "02:00:00:00:01:01"}
  vm2: {host: hv2, network: blue, mac: "02:00:00:00:01:02"}
"""
LINE = re.compile(r"^[^\n]+: [^\n]+: [^\n]+$")  # file: path: message (value)


def ovsflow(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "ovsflow.cli", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, errors="surrogateescape", timeout=timeout)


def refused(proc: subprocess.CompletedProcess[str], *fragments: str) -> list[str]:
    """Exit 2, nothing on stdout, only well-formed printable lines on stderr, each fragment in one."""
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert lines and all(LINE.match(ln) and ln.isprintable() for ln in lines), lines
    for fragment in fragments:
        assert any(fragment in ln for ln in lines), (fragment, lines)
    return lines


def write(tmp_path: Path, text: str | bytes, name: str = "topo.yaml") -> Path:
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass"))
    return path


@pytest.mark.parametrize(("snippet", "fragments"), [
    ("  red: {vni: 5.0}", ["networks.red.vni: must be of type integer (5.0)"]),
    ("  red: {vni: 1e3}", ["networks.red.vni: must be of type integer (1000.0)"]),
    ("  red: {vni: true}", ["networks.red.vni: must be of type integer (true)"]),
    ("  red: {vni: 2001-12-14}", ["networks.red.vni: must be of type integer (2001-12-14)"]),
    ("  red: {vni: !!timestamp 2001-12-14}", ["networks.red.vni: not a value a topology can hold: a date"]),
    ("  red: {vni: !!binary aGVsbG8=}", ["networks.red.vni: not a value a topology can hold: binary data"]),
    ("  red: !!set {a, b}", ["networks.red: not a value a topology can hold: a set"]),
    ("  7: {vni: 7}", ["networks.7: a mapping key must be a string, not a number (7)"]),
    ("  ~: {vni: 7}", ["networks.None: a mapping key must be a string, not null"]),
    ("  ? [a, b]\n  : {vni: 7}", ["a mapping key must be a string"]),
    ("  red: {vni: " + "9" * 5000 + "}", ["not an integer Python can read"]),
    ("  red: {vni: 7, vni: 8}", ["duplicate key 'vni'"]),
    ("  red: {vni: !!python/object:os.system x}", ["could not determine a constructor"]),
    ("  red: {vni: 7, tunnel: \"vx\\e[31mlan\\n\"}", ["networks.red.tunnel: must be one of", "(vx\\x1b[31mlan\\n)"]),
])
def test_wrong_types_and_values_yaml(tmp_path: Path, snippet: str, fragments: list[str]) -> None:
    refused(ovsflow("validate", str(write(tmp_path, BASE.replace("  blue: {vni: 101}", "  blue: {vni: 101}\n" + snippet)))), *fragments)


@pytest.mark.parametrize(("patch", "fragment"), [
    ({"vni": 5.0}, "networks.blue.vni: must be of type integer (5.0)"),
    ({"vni": 1e3}, "networks.blue.vni: must be of type integer (1000.0)"),
    ({"vni": 101, "vlan": 7.0}, "networks.blue.vlan: must be of type integer (7.0)"),
    ({"vni": 10**4000}, "networks.blue.vni: must be <= 16777215"),
])
def test_wrong_types_json(tmp_path: Path, patch: dict, fragment: str) -> None:
    data = yaml.safe_load(BASE)
    data["networks"]["blue"] = patch
    refused(ovsflow("validate", str(write(tmp_path, json.dumps(data), "topo.json"))), fragment)


def test_float_ofport_refused_and_json_specials(tmp_path: Path) -> None:
    refused(ovsflow("validate", str(write(tmp_path, BASE.replace('"02:00:00:00:01:01"}', '"02:00:00:00:01:01", ofport: 5.0}')))),
            "ports.vm1.ofport: must be of type integer (5.0)")
    refused(ovsflow("validate", str(write(tmp_path, '{"hosts": {}, "networks": {"a": {"vni": NaN}}}', "t.json"))), "invalid JSON: NaN")
    refused(ovsflow("validate", str(write(tmp_path, '{"a": ' + "9" * 5000 + "}", "t.json"))), "invalid JSON", "4300 digits")
    refused(ovsflow("validate", str(write(tmp_path, '{"hosts": {"hv\\ud800": {"vtep": "192.0.2.1"}}, "networks": {}}', "t.json"))),
            "hosts.hv\\ud800: invalid key")


@pytest.mark.parametrize(("name", "text", "fragment"), [
    ("deep.yaml", "a: " + "[" * 100_000, "nested deeper than 32 levels"),
    ("block.yaml", "".join("  " * i + f"k{i}:\n" for i in range(200)), "nested deeper than 32 levels"),
    ("deep.json", "[" * 100_000, "invalid JSON: nested too deeply"),
    ("deep2.json", '{"hosts": ' + '{"a": ' * 500 + "1" + "}" * 500 + ', "networks": {}}', "nested deeper than 32 levels"),
    ("list.json", '{"hosts": ' + "[" * 500 + "]" * 500 + ', "networks": {}}', "hosts: must be of type object"),
])
def test_depth(tmp_path: Path, name: str, text: str, fragment: str) -> None:
    refused(ovsflow("validate", str(write(tmp_path, text, name))), fragment)


def test_size(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    with big.open("wb") as f:
        f.truncate(33 * 1024 * 1024)
    refused(ovsflow("validate", str(big)), "file too large: more than 33554432 bytes")
    # beyond plain mappings (a tag) and over 1 MiB: not handed to the slow loader
    text = "a: !!str x\n" + "".join(f"k{i}: {i}\n" for i in range(250_000))
    refused(ovsflow("validate", str(write(tmp_path, text))), "at most 1048576 bytes")


def billion_laughs() -> str:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for prev, cur in zip("abcdefgh", "bcdefghi"):
        lines.append(f"{cur}: &{cur} [" + ",".join([f"*{prev}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def test_alias_expansion_refused_fast_and_small(tmp_path: Path) -> None:
    bomb = billion_laughs()
    assert len(bomb) < 800
    path = write(tmp_path, bomb)
    start = time.monotonic()
    refused(ovsflow("validate", str(path)), "aliases expand to more than 10000 nodes")
    assert time.monotonic() - start < 10  # about 0.3 s with the interpreter's start
    # the same in a process that reports its own peak RSS (getrusage mixes all children's)
    hwm = tmp_path / "hwm"
    code = ("import atexit, pathlib, sys\n"
            "def peak():\n"
            "    line = [x for x in open('/proc/self/status') if x.startswith('VmHWM:')][0]\n"
            f"    pathlib.Path({str(hwm)!r}).write_text(line.split()[1])\n"
            "atexit.register(peak)\n"
            "from ovsflow.cli import main\n"
            "main()\n")
    proc = subprocess.run([sys.executable, "-c", code, "validate", str(path)], cwd=ROOT, capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)), timeout=60)
    assert proc.returncode == 2 and "aliases expand" in proc.stderr
    assert 10_000 < int(hwm.read_text()) < 200 * 1024  # KB
    refused(ovsflow("validate", str(write(tmp_path, "a: &a [*a]\n"))), "recursive alias")


def test_aliases_within_bounds_still_work(tmp_path: Path) -> None:
    text = BASE.replace("  blue: {vni: 101}", "  blue: {vni: 101, tunnel: &t gre}\n  red: {vni: 102, tunnel: *t}")
    proc = ovsflow("validate", str(write(tmp_path, text)))
    assert proc.returncode == 0 and "2 networks" in proc.stdout, proc.stderr


def test_special_and_unreadable_files(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    refused(ovsflow("validate", str(fifo), timeout=30), "not a regular file but a FIFO")
    refused(ovsflow("validate", str(tmp_path)), "not a regular file but a directory")
    for dev in ("/dev/zero", "/dev/urandom", "/dev/null"):
        refused(ovsflow("validate", dev, timeout=30), "not a regular file but a character device")
    refused(ovsflow("validate", str(tmp_path / "missing.yaml")), "cannot read file: No such file or directory")
    refused(ovsflow("validate", str(tmp_path / "missing.yaml" / "x")), "cannot read file")
    refused(ovsflow("validate", str(write(tmp_path, b"\xff\xfe\x00h\x00o\x00s\x00t", "bin.yaml"))), "not UTF-8 text: byte 0xff at offset 0")
    refused(ovsflow("validate", str(write(tmp_path, os.urandom(4096), "random.json"))))
    # a regular file whose read fails (root reads any file mode, so a mode cannot make one)
    refused(ovsflow("validate", "/proc/self/mem"), "cannot read file: Input/output error")


def test_control_characters_in_names_and_file_name(tmp_path: Path) -> None:
    text = BASE.replace("  hv2: {vtep: 192.0.2.12}", '  "hv2\\e[2J\\n$(touch x)": {vtep: 192.0.2.12}')
    lines = refused(ovsflow("validate", str(write(tmp_path, text))), "hosts.hv2\\x1b[2J\\n$(touch x): invalid key")
    assert not any("\x1b" in ln for ln in lines)
    name = "t\x1b[31m\n$(touch MARK)\n.yaml"
    lines = refused(ovsflow("validate", str(write(tmp_path, "hosts: 1\n", name))))
    assert lines[0].startswith(str(tmp_path) + "/t\\x1b[31m\\n$(touch MARK)\\n.yaml: hosts: must be of type object")
    ok = ovsflow("validate", str(write(tmp_path, BASE, "ok\x1b[31m\n.yaml")))
    assert ok.returncode == 0 and ok.stdout == f"{tmp_path}/ok\\x1b[31m\\n.yaml: ok (2 hosts, 1 networks, 2 ports)\n"
    proc = ovsflow("render", str(write(tmp_path, BASE)), "--host", "hv\n9\x1b")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "hosts.hv\\n9\\x1b: no such host" in proc.stderr
