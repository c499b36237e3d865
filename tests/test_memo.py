"""compiler.PieceMemo: a compile that reuses an earlier compile's network pieces must give exactly
the program a compile from scratch gives (the live controller relies on it after every edit), and
must reuse the pieces of the networks the edit did not touch."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_fingerprint import edit
from test_properties import topologies

from ovsflow.compiler import PieceMemo, compile_all
from ovsflow.model import TopologyError, load_topology_data


@given(topologies(), st.lists(st.tuples(st.sampled_from(["move", "remove", "add", "mac", "mode", "vtep", "vni"]),
                                        st.integers(0, 1000)), min_size=1, max_size=3))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_memo_compile_equals_compile_from_scratch(data: dict, edits: list) -> None:
    memo = PieceMemo()
    compile_all(load_topology_data(data, "old"), memo=memo)
    for kind, pick in edits:
        try:
            candidate = edit(data, kind, pick)
            topo = load_topology_data(candidate, "new")
        except TopologyError:
            continue  # an invalid edit is refused (the controller keeps its program): try the next one
        data = candidate
        memo = PieceMemo(memo)
        with_memo, scratch = compile_all(topo, memo=memo), compile_all(topo)
        for host in scratch:
            assert with_memo[host] == scratch[host], f"{kind}: {host}'s program differs when compiled through the memo"
            for a, b in zip(with_memo[host].bridges, scratch[host].bridges):
                assert a.parts == b.parts and a.flows == tuple(sorted(a.flows, key=lambda f: f.sort_key()))


def test_an_edit_rebuilds_only_the_network_it_touches() -> None:
    data = {
        "hosts": {"hv1": {"vtep": "192.0.2.11"}, "hv2": {"vtep": "192.0.2.12"}},
        "networks": {"blue": {"vni": 101, "mode": "l2pop"}, "red": {"vni": 102}, "green": {"vni": 103, "mode": "l2pop"}},
        "ports": {f"{n}{h}": {"host": f"hv{h}", "network": n, "mac": f"02:00:00:00:{i:02x}:0{h}", "ip": f"198.51.100.{10 * i + h}"}
                  for i, n in enumerate(("blue", "red", "green"), 1) for h in (1, 2)},
    }
    memo = PieceMemo()
    before = compile_all(load_topology_data(data, "t"), memo=memo)
    data["ports"]["blue3"] = {"host": "hv2", "network": "blue", "mac": "02:00:00:00:01:03", "ip": "198.51.100.13"}
    memo = PieceMemo(memo)
    after = compile_all(load_topology_data(data, "t"), memo=memo)
    for host in ("hv1", "hv2"):
        for old, new in zip(before[host].bridges, after[host].bridges):
            # parts: host-wide (unchanged, so kept), then blue, red, green (by VNI)
            assert [o is n for o, n in zip(old.parts, new.parts)] == [True, False, True, True], (host, old.name)
            assert old.parts[2] and old.parts[3]
        assert after[host] == compile_all(load_topology_data(data, "t"))[host]


def test_with_memory_a_colliding_newcomer_moves_nothing_and_the_old_piece_is_reused() -> None:
    """VNI 4195 prefers VLAN 101, as does VNI 101. Given hv1's previous allocation, blue keeps 101
    when red arrives and red takes 102: blue's piece comes back from the memo as it was. Without
    memory (a pure function of the topology) the older VNI takes 101 and blue moves to 102: same
    network, new piece."""
    data = {
        "hosts": {"hv1": {"vtep": "192.0.2.11"}, "hv2": {"vtep": "192.0.2.12"}},
        "networks": {"blue": {"vni": 4195, "mode": "l2pop"}, "red": {"vni": 101}},
        "ports": {"b1": {"host": "hv1", "network": "blue", "mac": "02:00:00:00:00:01", "ip": "198.51.100.1"},
                  "b2": {"host": "hv2", "network": "blue", "mac": "02:00:00:00:00:02", "ip": "198.51.100.2"},
                  "r2": {"host": "hv2", "network": "red", "mac": "02:00:00:00:00:03"}},
    }
    memo = PieceMemo()
    before = compile_all(load_topology_data(data, "t"), memo=memo)
    data["ports"]["r1"] = {"host": "hv1", "network": "red", "mac": "02:00:00:00:00:04"}
    topo = load_topology_data(data, "t")
    memory = {h: p.allocation for h, p in before.items()}
    kept = compile_all(topo, memo=PieceMemo(memo), memory=memory)
    assert before["hv1"].local_vlans == {"blue": 101} and kept["hv1"].local_vlans == {"blue": 101, "red": 102}
    assert kept == compile_all(topo, memory=memory)
    # parts: host-wide, then one per network by VNI (red 101, blue 4195): blue's is the old object
    for old, new in zip(before["hv1"].bridges, kept["hv1"].bridges):
        assert new.parts[-1] is old.parts[-1] and old.parts[-1]
    fresh = compile_all(topo, memo=PieceMemo(memo))
    assert fresh["hv1"].local_vlans == {"red": 101, "blue": 102}
    assert fresh == compile_all(topo)
    assert all(new.parts[-1] is not old.parts[-1] for old, new in zip(before["hv1"].bridges, fresh["hv1"].bridges))
