"""graph.fingerprint: equal fingerprints must mean equal programs, or the live controller would
skip a host that needs an update. Random topologies, random edits, every host compared."""

from __future__ import annotations

import copy

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_properties import MAC_POOL, topologies

from ovsflow.compiler import compile_host
from ovsflow.graph import TopologyGraph
from ovsflow.model import TopologyError, load_topology_data


def edit(data: dict, kind: str, pick: int) -> dict:
    data = copy.deepcopy(data)
    ports, nets, hosts = sorted(data.get("ports") or {}), sorted(data["networks"]), sorted(data["hosts"])
    if kind == "move" and ports:
        data["ports"][ports[pick % len(ports)]]["host"] = hosts[pick % len(hosts)]
    elif kind == "remove" and ports:
        del data["ports"][ports[pick % len(ports)]]
    elif kind == "add":
        data.setdefault("ports", {})[f"new{pick}"] = {"host": hosts[pick % len(hosts)], "network": nets[pick % len(nets)],
                                                      "mac": "02:00:00:00:0f:%02x" % (pick % 256)}
    elif kind == "mac" and ports:
        data["ports"][ports[pick % len(ports)]]["mac"] = MAC_POOL[pick % len(MAC_POOL)]
    elif kind == "mode":
        n = data["networks"][nets[pick % len(nets)]]
        n["mode"] = "learn" if n.get("mode") == "l2pop" else "l2pop"
    elif kind == "vtep":
        data["hosts"][hosts[pick % len(hosts)]]["vtep"] = f"203.0.113.{pick % 250 + 1}"
    elif kind == "vni":
        data["networks"][nets[pick % len(nets)]]["vni"] = 9000 + pick
    return data


@given(topologies(), st.sampled_from(["move", "remove", "add", "mac", "mode", "vtep", "vni"]), st.integers(0, 1000))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_equal_fingerprint_means_equal_program(data: dict, kind: str, pick: int) -> None:
    old = load_topology_data(data, "old")
    try:
        new = load_topology_data(edit(data, kind, pick), "new")
    except TopologyError:
        return  # the edit made an invalid topology (e.g. a duplicate MAC): nothing to compare
    g_old, g_new = TopologyGraph(old), TopologyGraph(new)
    for host in sorted(set(old.hosts) & set(new.hosts)):
        if g_old.fingerprint(host) == g_new.fingerprint(host):
            a, b = compile_host(old, host, graph=g_old), compile_host(new, host, graph=g_new)
            assert a.bridges == b.bridges, f"{kind}: {host} kept its fingerprint but its program changed"


def test_fingerprint_changes_for_the_hosts_a_move_touches() -> None:
    from pathlib import Path

    import yaml

    data = yaml.safe_load((Path(__file__).parent / "data" / "seed003-l2pop.yaml").read_text())
    data["hosts"]["hv4"] = {"vtep": "192.0.2.14"}
    data["ports"]["red4"] = {"host": "hv4", "network": "red", "mac": "02:00:00:00:00:04"}
    old = TopologyGraph(load_topology_data(data))
    data["ports"]["blue2"]["host"] = "hv3"  # blue (l2pop) lives on hv1-hv3; hv4 only has red
    new = TopologyGraph(load_topology_data(data))
    changed = {h for h in data["hosts"] if old.fingerprint(h) != new.fingerprint(h)}
    assert changed == {"hv1", "hv2", "hv3"}


@given(topologies(), st.sampled_from(["move", "remove", "add", "mac", "mode", "vtep", "vni"]), st.integers(0, 1000))
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_equal_fingerprint_means_equal_program_with_memory(data: dict, kind: str, pick: int) -> None:
    """The controller compiles each host with the allocation in use and reuses a host's program
    when its fingerprint is unchanged: that program must be what compiling with memory gives."""
    old = load_topology_data(data, "old")
    try:
        new = load_topology_data(edit(data, kind, pick), "new")
    except TopologyError:
        return
    g_old = TopologyGraph(old)
    memory = {h: compile_host(old, h, graph=g_old).allocation for h in old.hosts}
    g_new = TopologyGraph(new, memory=memory)
    for host in sorted(set(old.hosts) & set(new.hosts)):
        if g_old.fingerprint(host) == g_new.fingerprint(host):
            a, b = compile_host(old, host, graph=g_old), compile_host(new, host, graph=g_new)
            assert a.bridges == b.bridges and a.allocation == b.allocation, f"{kind}: {host}"
