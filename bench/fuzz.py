"""Fuzzing the loader and renderer: `python -m bench fuzz` (long run) and tests/test_fuzz.py (sample).

Each case is a topology file made from a random valid topology by one mutation of a named
category, written to disk and loaded the way the CLI loads it. Oracles:
- any exception but TopologyError is a traceback;
- a mutation known to make the document invalid (a float where an integer belongs, an unknown key,
  a control character in a name...) must be refused: accepting it is "accepted invalid";
- every problem line must be one printable line; a refusal must take < 1 s;
- a document that validates must render every host without an exception, and, for YAML, the fast
  loader and the pure reference loader must read it the same ("loader mismatch");
- the unmutated valid topologies must validate ("refused valid").
"""

from __future__ import annotations

import json
import os
import random
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ovsflow.graph import TopologyGraph
from ovsflow.load import _fast_yaml, _slow_yaml
from ovsflow.model import TopologyError, load_topology
from ovsflow.render import render_script


class Raw(str):
    """YAML text emitted as is (tags, anchors, aliases, odd scalars)."""


# ---------------------------------------------------------------------------------------------
# Valid topologies and their serialisation


def valid_topology(rng: random.Random) -> dict:
    nh, nn = rng.randint(1, 4), rng.randint(1, 3)
    hosts = {f"hv{i}": {"vtep": f"192.0.2.{10 + i}"} for i in range(nh)}
    if rng.random() < 0.2:
        hosts["hv0"]["bridges"] = {"int": "br-i", "tun": "br-t"}
    networks: dict[str, dict] = {}
    for i in range(nn):
        net: dict[str, Any] = {"vni": rng.choice([100 + i, 5000 + i, 16777215 - i])}
        if rng.random() < 0.5:
            net["tunnel"] = rng.choice(["vxlan", "gre", "geneve"])
        if rng.random() < 0.3:
            net["mode"] = rng.choice(["learn", "l2pop"])
        if rng.random() < 0.4:
            net["subnet"] = f"10.{i}.0.0/24"
        if rng.random() < 0.2:
            net["vlan"] = 10 + i
        networks[f"net-{i}"] = net
    ports = {}
    for i in range(rng.randint(0, 6)):
        n = rng.randrange(nn)
        port: dict[str, Any] = {"host": f"hv{rng.randrange(nh)}", "network": f"net-{n}", "mac": f"02:00:00:00:{n:02x}:{i:02x}"}
        if "subnet" in networks[f"net-{n}"] and rng.random() < 0.7:
            port["ip"] = f"10.{n}.0.{i + 1}"
        if rng.random() < 0.2:
            port["ipv6"] = f"2001:db8::{i + 1:x}"
        if rng.random() < 0.2:
            port["ofport"] = 100 + i
        ports[f"vm{i}.p"] = port
    data: dict[str, Any] = {"hosts": hosts, "networks": networks, "ports": ports}
    if rng.random() < 0.2:
        data["learn"] = {"hard_timeout": rng.randint(0, 65535)}
    return data


def scalar(value: Any) -> str:
    if isinstance(value, Raw):
        return str(value)
    if isinstance(value, str):
        plain = value and all(ch.isalnum() or ch in "_.-/:" for ch in value) and value.isascii() and not value[0].isdigit()
        return value if plain and ":" not in value else json.dumps(value)
    return json.dumps(value)


def to_yaml(data: Any, rng: random.Random, indent: int = 0) -> str:
    """Block mappings, flow mappings for leaves (randomly), comments now and then."""
    if not isinstance(data, dict):
        return scalar(data) if not isinstance(data, list) else "[" + ", ".join(to_yaml(v, rng) for v in data) + "]"
    lines = []
    pad = "  " * indent
    for key, value in data.items():
        k = scalar(key) if not isinstance(key, (int, float, type(None))) or isinstance(key, bool) else json.dumps(key)
        if isinstance(key, bool) or key is None:
            k = json.dumps(key)
        if isinstance(key, tuple):
            k = "? [" + ", ".join(scalar(x) for x in key) + "]\n" + pad
        comments = ["  # note: a comment, with {braces}", "  # do not! *see* &below |>", "  #: x, y}"]
        comment = rng.choice(comments) if rng.random() < 0.05 else ""
        if (isinstance(value, dict) and value and (rng.random() < 0.5 or indent > 6)
                and all(not isinstance(v, (dict, list)) for v in value.values()) and rng.random() < 0.6):
            lines.append(f"{pad}{k}: {{" + ", ".join(f"{scalar(a)}: {scalar(b)}" for a, b in value.items()) + f"}}{comment}")
            continue
        if isinstance(value, dict) and value:
            lines.append(f"{pad}{k}:{comment}")
            lines.append(to_yaml(value, rng, indent + 1))
        elif isinstance(value, dict):
            lines.append(f"{pad}{k}: {{}}{comment}")
        else:
            lines.append(f"{pad}{k}: {to_yaml(value, rng)}{comment}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Mutations: each returns (document bytes or a special path, suffix, known invalid?)

INT_FIELDS = {"vni", "vlan", "ofport", "hard_timeout", "idle_timeout", "inactivity_probe_ms"}


def leaves(data: dict, path: tuple = ()) -> list[tuple]:
    out = []
    for k, v in data.items():
        if isinstance(v, dict):
            out += leaves(v, path + (k,))
        else:
            out.append(path + (k,))
    return out


def dicts(data: dict, path: tuple = ()) -> list[tuple]:
    out = [path]
    for k, v in data.items():
        if isinstance(v, dict):
            out += dicts(v, path + (k,))
    return out


def at(data: dict, path: tuple) -> Any:
    for k in path:
        data = data[k]
    return data


def wrong_type(rng: random.Random, data: dict) -> tuple[Any, bool]:
    path = rng.choice(leaves(data))
    if path[-1] in INT_FIELDS:
        value = rng.choice([5.0, 1e3, -0.0, True, False, "5", None, [5], {"a": 5}, Raw("1e3"), Raw("5.0"), Raw(".inf"),
                            Raw(".nan"), Raw("2001-12-14"), Raw("!!timestamp 2001-12-14"), Raw("!!binary aGk="), Raw("!!set {a}"),
                            Raw("!!float 5"), Raw("0X1F"), Raw("+0x1"), Raw("TRUE")])
    else:
        value = rng.choice([5, 5.0, True, None, [at(data, path)], {"a": 1}, Raw("!!binary aGk="), Raw("!!set {a}"),
                            Raw("!!timestamp 2001-12-14T10:00:00Z"), Raw("!!int 7"), Raw("~"), Raw("false"), Raw("0x1F")])
    at(data, path[:-1])[path[-1]] = value
    return data, True


def bad_key(rng: random.Random, data: dict) -> tuple[Any, bool]:
    path = rng.choice(dicts(data))
    target = at(data, path)
    if path in (("hosts",), ("networks",), ("ports",)) and target:
        name = rng.choice(["a b", "-x", "x" * 64, "é", "a/b", "$(x)", "", ".", "a:b"])
        target[name] = next(iter(target.values()))
    else:
        target[rng.choice(["colour", "VNI", "Host", "extra", "vni2", "hosts_", "<<"])] = rng.choice([1, "x", {}])
    return data, True


def nonstr_key(rng: random.Random, data: dict) -> tuple[Any, bool]:
    target = at(data, rng.choice(dicts(data)))
    target[rng.choice([7, None, True, 1.5, ("a", "b")])] = rng.choice([1, "x", {}])
    return data, True


def deep(rng: random.Random, data: dict) -> tuple[Any, bool]:
    path = rng.choice(leaves(data))
    depth = rng.choice([2, 10, 33, 100, 200])
    inner: Any = rng.choice([1, "x", []])
    for _ in range(depth):
        inner = [inner] if rng.random() < 0.5 else {"k": inner}
    at(data, path[:-1])[path[-1]] = inner
    return data, True


def control_chars(rng: random.Random, data: dict) -> tuple[Any, bool]:
    bad = rng.choice(["\n", "\r", "\x1b[31m", "\x00", "\x7f", "\x85", "\u202e", "\u2028", "\t", "\ud800", "\udfff", "\x1b]0;x\x07"])
    path = rng.choice([p for p in leaves(data) if isinstance(at(data, p), str)] or [("hosts",)])
    if rng.random() < 0.5 and path[0] in ("hosts", "networks", "ports") and len(path) > 1:
        parent = at(data, path[:1])
        name = path[1]
        parent[name[:1] + bad + name[1:]] = parent.pop(name)
    else:
        value = at(data, path)
        if isinstance(value, str):
            at(data, path[:-1])[path[-1]] = value[:2] + bad + value[2:]
        else:
            data["hosts"]["h" + bad] = {"vtep": "192.0.2.99"}
    return data, True


def huge(rng: random.Random, data: dict) -> tuple[Any, bool]:
    path = rng.choice(leaves(data))
    if path[-1] in INT_FIELDS:
        value: Any = rng.choice([10 ** rng.randint(8, 4200), -(10 ** rng.randint(1, 300)), 2**64, Raw("9" * rng.randint(4301, 6000))])
    else:
        value = "x" * rng.choice([64, 1000, 100_000])
    at(data, path[:-1])[path[-1]] = value
    return data, True


def semantic(rng: random.Random, data: dict) -> tuple[Any, bool]:
    nets, ports = data["networks"], data["ports"]
    kind = rng.choice(["vni", "vtep", "host", "network", "mac", "gateway"])
    if kind == "vni":
        nets["dup"] = dict(next(iter(nets.values())))
    elif kind == "vtep":
        data["hosts"]["dup"] = dict(next(iter(data["hosts"].values())))
    elif kind in ("host", "network", "mac") or not ports:
        p = {"host": "hv0", "network": next(iter(nets)), "mac": "02:00:00:00:99:99"}
        if kind == "host":
            p["host"] = "nowhere"
        elif kind == "network":
            p["network"] = "nonet"
        ports["dupmac1"] = dict(p)
        if kind == "mac" or kind == "gateway":
            ports["dupmac2"] = dict(p, mac=p["mac"].upper())
    else:
        nets[next(iter(nets))]["gateway"] = "203.0.113.1"
        nets[next(iter(nets))].pop("subnet", None)
    return data, True


def alias(rng: random.Random, data: dict) -> tuple[Any, bool]:
    if rng.random() < 0.5:  # a bomb: levels of aliases, each `width` times the one before
        width, levels = rng.randint(2, 12), rng.randint(2, 12)
        levels_text = [f"&b{i} [" + ", ".join([f"*b{i - 1}"] * width) + "]" for i in range(1, levels)]
        data["x"] = Raw("[" + ", ".join(["&b0 [y, y]", *levels_text]) + "]")
        return data, True
    # benign: one network's tunnel anchored, another's an alias of it (valid if the rest is)
    nets = list(data["networks"].values())
    nets[0]["tunnel"] = Raw("&t " + nets[0].get("tunnel", "vxlan"))
    for n in nets[1:]:
        n["tunnel"] = Raw("*t")
    return data, False


def special_file(rng: random.Random, tmp: Path) -> Path:
    kind = rng.choice(["dir", "fifo", "zero", "urandom", "null", "missing", "dangling", "sparse", "notdir", "mem"])
    if kind == "dir":
        return tmp
    if kind == "fifo":
        p = tmp / "fifo.yaml"
        if not p.exists():
            os.mkfifo(p)
        return p
    if kind in ("zero", "urandom", "null"):
        return Path(f"/dev/{kind}")
    if kind == "dangling":
        p = tmp / "dangling.yaml"
        if not p.is_symlink():
            p.symlink_to(tmp / "nothing-here")
        return p
    if kind == "sparse":
        p = tmp / "sparse.yaml"
        with p.open("wb") as f:
            f.truncate(40 * 1024 * 1024)
        return p
    if kind == "notdir":
        return tmp / "case.yaml" / "x"
    if kind == "mem":
        return Path("/proc/self/mem")
    return tmp / "missing.yaml"


MUTATIONS: dict[str, Callable[[random.Random, dict], tuple[Any, bool]]] = {
    "wrong_type": wrong_type, "bad_key": bad_key, "nonstr_key": nonstr_key, "deep": deep,
    "control_chars": control_chars, "huge": huge, "semantic": semantic, "alias": alias,
}
CATEGORIES = ["valid", *MUTATIONS, "syntax", "encoding", "special_file"]


def make_case(rng: random.Random, category: str, tmp: Path) -> tuple[Path, bool | None]:
    """Write one case; returns its path and whether it is known invalid (None: unknown)."""
    if category == "special_file":
        return special_file(rng, tmp), True
    data = valid_topology(rng)
    invalid: bool | None = False
    if category in MUTATIONS:
        data, invalid = MUTATIONS[category](rng, data)
    yamlish = category in ("alias", "syntax", "encoding") or rng.random() < 0.7 or _needs_yaml(data)
    text = to_yaml(data, rng) + "\n" if yamlish else json.dumps(data, ensure_ascii=rng.random() < 0.5)
    raw = text.encode("utf-8", "surrogatepass")
    if category == "syntax":
        chars = b":-{}[]\"'&*!#|>\n \t,?%@`\\~"
        buf = bytearray(raw)
        for _ in range(rng.randint(1, 3)):
            i = rng.randrange(len(buf) + 1)
            op = rng.random()
            if op < 0.4 and buf:
                del buf[min(i, len(buf) - 1)]
            elif op < 0.8:
                buf.insert(i, rng.choice(chars))
            else:
                buf[i:i] = buf[max(0, i - 20):i]
        raw, invalid = bytes(buf), None
    elif category == "encoding":
        how = rng.choice(["utf16", "latin1", "bom", "nul", "random", "cut"])
        if how == "utf16":
            raw = text.encode("utf-16")
        elif how == "latin1":
            raw = text.replace("hv0", "hvé").encode("latin-1")
        elif how == "bom":
            raw = b"\xef\xbb\xbf" + raw
        elif how == "nul":
            raw = raw[:10] + b"\x00" + raw[10:]
        elif how == "random":
            raw = raw[:20] + os.urandom(rng.randint(1, 64)) + raw[20:]
        else:
            raw = raw[: rng.randrange(len(raw) + 1)]
        invalid = {"utf16": True, "latin1": True, "nul": True}.get(how)
    path = tmp / ("case.yaml" if yamlish else "case.json")
    path.write_bytes(raw)
    return path, invalid


def _needs_yaml(data: Any) -> bool:
    if isinstance(data, Raw):
        return True
    if isinstance(data, dict):
        return any(not isinstance(k, str) or _needs_yaml(v) for k, v in data.items())
    if isinstance(data, list):
        return any(_needs_yaml(v) for v in data)
    return isinstance(data, str) and any(0xD800 <= ord(c) <= 0xDFFF for c in data)


# ---------------------------------------------------------------------------------------------
# Running


def check(path: Path, invalid: bool | None) -> tuple[str, str]:
    """(outcome, detail): outcome in refused, accepted, traceback, accepted_invalid, refused_valid,
    unprintable, slow_refusal, loader_mismatch."""
    start = time.perf_counter()
    try:
        topo = load_topology(path)
    except TopologyError as exc:
        lines = [str(p) for p in exc.problems]
        if not lines or not all(ln.isprintable() for ln in lines):
            return "unprintable", repr(lines[:2])
        if time.perf_counter() - start > 1.0:
            return "slow_refusal", f"{time.perf_counter() - start:.2f} s: {lines[0][:200]}"
        if invalid is False:
            return "refused_valid", lines[0][:300]
        return "refused", ""
    except Exception:
        return "traceback", traceback.format_exc(limit=-3)
    if invalid:
        return "accepted_invalid", path.read_text(errors="replace")[:400]
    try:
        for host in topo.hosts:
            render_script(topo, host, graph=TopologyGraph(topo, focus=host))
    except Exception:
        return "traceback", "render: " + traceback.format_exc(limit=-3)
    if path.suffix == ".yaml":
        text = path.read_bytes().decode("utf-8").removeprefix("\ufeff")
        fast, why = _fast_yaml(text)
        if why is None and fast != _slow_yaml(text, str(path)):
            return "loader_mismatch", text[:400]
    return "accepted", ""


def fuzz(cases: int, seed: int = 0, seconds: float | None = None) -> dict:
    rng = random.Random(seed)
    tried: Counter[str] = Counter()
    outcomes: Counter[tuple[str, str]] = Counter()
    failures: list[dict] = []
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="ovsflow-fuzz-") as d:
        tmp = Path(d)
        for i in range(cases):
            if seconds is not None and time.perf_counter() - start > seconds:
                break
            category = CATEGORIES[i % len(CATEGORIES)]
            path, invalid = make_case(rng, category, tmp)
            outcome, detail = check(path, invalid)
            tried[category] += 1
            outcomes[(category, outcome)] += 1
            if outcome not in ("refused", "accepted") and len(failures) < 50:
                failures.append({"category": category, "outcome": outcome, "detail": detail, "case": i})
    elapsed = time.perf_counter() - start
    total = sum(tried.values())
    bad = Counter(o for (_, o), n in outcomes.items() for _ in range(n) if o not in ("refused", "accepted"))
    return {"cases": total, "seconds": elapsed, "per_second": total / elapsed if elapsed else 0.0,
            "tried": dict(tried), "outcomes": {f"{c}/{o}": n for (c, o), n in sorted(outcomes.items())},
            "tracebacks": bad["traceback"], "accepted_invalid": bad["accepted_invalid"], "failures_by_kind": dict(bad),
            "failures": failures}


def run(quick: bool = False) -> list[dict]:
    r = fuzz(2_000 if quick else 100_000, seed=1)
    figures: dict[str, Any] = {"cases": r["cases"], "throughput (cases/s)": r["per_second"], "seconds": r["seconds"]}
    figures.update({f"tried: {c}": n for c, n in sorted(r["tried"].items())})
    figures["tracebacks"] = r["tracebacks"]
    figures["accepted invalid"] = r["accepted_invalid"]
    figures["other failures"] = sum(n for k, n in r["failures_by_kind"].items() if k not in ("traceback", "accepted_invalid"))
    for f in r["failures"][:10]:
        print(f"fuzz failure [{f['category']}/{f['outcome']}] case {f['case']}: {f['detail']}", file=sys.stderr)
    return [{"benchmark": "fuzz", "case": f"{r['cases']} generated topologies, {len(r['tried'])} categories",
             "figures": figures, "goal": "0 tracebacks, 0 accepted invalid in >= 100,000 cases", "raw": r}]
