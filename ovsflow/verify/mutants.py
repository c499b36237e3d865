"""Faults injected into compiled programs, and whether they change forwarding (for verify's
mutation score: a verifier is only as good as the faults it catches)."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import replace

from ..evaluator import EvaluationError, Fabric
from ..fields import BROADCAST, mac
from ..flow import Bucket, Flow, Group, GroupEntry, Output, SetField
from ..model import Topology
from ..packet import Frame
from ..program import TUNNEL_TYPES, BridgeProgram, HostProgram

Mutant = tuple[str, list[HostProgram]]


def _swap_bridge(progs: list[HostProgram], hi: int, role: str, bridge: BridgeProgram) -> list[HostProgram]:
    out = list(progs)
    h = out[hi]
    out[hi] = replace(h, bridges=tuple(bridge if b.role == role else b for b in h.bridges))
    return out


def _with_flows(progs: list[HostProgram], hi: int, role: str, flows: list[Flow]) -> list[HostProgram]:
    b = progs[hi].bridge(role)
    return _swap_bridge(progs, hi, role, replace(b, flows=tuple(sorted(flows, key=Flow.sort_key))))


def _pick_flow(rng: random.Random, progs: list[HostProgram], pred: Callable[[Flow], bool]) -> tuple[int, str, int] | None:
    found = [(hi, b.role, fi) for hi, h in enumerate(progs) for b in h.bridges for fi, f in enumerate(b.flows) if pred(f)]
    return rng.choice(found) if found else None


def _edit(progs: list[HostProgram], at: tuple[int, str, int], new: Flow | None) -> list[HostProgram]:
    hi, role, fi = at
    flows = list(progs[hi].bridge(role).flows)
    if new is None:
        del flows[fi]
    else:
        flows[fi] = new
    return _with_flows(progs, hi, role, flows)


def wrong_vlan(rng: random.Random, progs: list[HostProgram]) -> Mutant | None:
    at = _pick_flow(rng, progs, lambda f: any(isinstance(a, SetField) and a.field == "vlan_vid" for a in f.actions))
    if at is None:
        return None
    f = progs[at[0]].bridge(at[1]).flows[at[2]]
    vlans = sorted(set(progs[at[0]].local_vlans.values())) + [4000]
    acts = tuple(replace(a, value=0x1000 | rng.choice([v for v in vlans if v != a.value & 0xFFF]))
                 if isinstance(a, SetField) and a.field == "vlan_vid" else a for a in f.actions)
    return f"wrong VLAN on {progs[at[0]].host}: {f}", _edit(progs, at, replace(f, actions=acts))


def swapped_key(rng: random.Random, progs: list[HostProgram]) -> Mutant | None:
    keys = sorted({v for h in progs for b in h.bridges for f in b.flows for k, v in f.match if k == "tun_id" and isinstance(v, int)})
    at = _pick_flow(rng, progs, lambda f: "tun_id" in f.match_dict
                    or any(isinstance(a, SetField) and a.field == "tun_id" for a in f.actions))
    if at is None or len(keys) < 2:
        return None
    f = progs[at[0]].bridge(at[1]).flows[at[2]]
    md = f.match_dict
    if "tun_id" in md:
        md["tun_id"] = rng.choice([k for k in keys if k != md["tun_id"]])
        new = Flow.make(f.table, f.priority, md, f.actions, f.cookie, f.hard_timeout, f.idle_timeout)
    else:
        acts = tuple(replace(a, value=rng.choice([k for k in keys if k != a.value]))
                     if isinstance(a, SetField) and a.field == "tun_id" else a for a in f.actions)
        new = replace(f, actions=acts)
    return f"swapped tunnel key on {progs[at[0]].host}: {f}", _edit(progs, at, new)


def missing_drop(rng: random.Random, progs: list[HostProgram]) -> Mutant | None:
    at = _pick_flow(rng, progs, lambda f: not f.actions and f.priority > 0)
    if at is None:
        return None
    return f"missing drop on {progs[at[0]].host}: {progs[at[0]].bridge(at[1]).flows[at[2]]}", _edit(progs, at, None)


def deleted_flow(rng: random.Random, progs: list[HostProgram]) -> Mutant | None:
    at = _pick_flow(rng, progs, lambda f: f.priority > 0)
    if at is None:
        return None
    return f"deleted flow on {progs[at[0]].host}: {progs[at[0]].bridge(at[1]).flows[at[2]]}", _edit(progs, at, None)


def wrong_output(rng: random.Random, progs: list[HostProgram]) -> Mutant | None:
    at = _pick_flow(rng, progs, lambda f: any(isinstance(a, Output) and a.port < 0xFFFFFF00 for a in f.actions))
    if at is None:
        return None
    b = progs[at[0]].bridge(at[1])
    f = b.flows[at[2]]
    ports = [p.ofport for p in b.ports]
    outs = [a.port for a in f.actions if isinstance(a, Output)]
    others = [p for p in ports if p not in outs]
    if not others:
        return None
    to = rng.choice(others)
    acts = tuple(Output(to) if isinstance(a, Output) and a.port == outs[0] else a for a in f.actions)
    return f"wrong output on {progs[at[0]].host}: {f} -> port {to}", _edit(progs, at, replace(f, actions=acts))


def extra_bucket(rng: random.Random, progs: list[HostProgram]) -> Mutant | None:
    cands = []
    for hi, h in enumerate(progs):
        tun = h.bridge("tun")
        tunnels = [p.ofport for p in tun.ports if p.type in TUNNEL_TYPES]
        for gi, g in enumerate(tun.groups):
            used = {a.port for bk in g.buckets for a in bk.actions if isinstance(a, Output)}
            free = [t for t in tunnels if t not in used]
            if free:
                cands.append((hi, gi, free))
    if not cands:
        return None
    hi, gi, free = rng.choice(cands)
    tun = progs[hi].bridge("tun")
    g = tun.groups[gi]
    key = next(a.value for a in g.buckets[0].actions if isinstance(a, SetField))
    new = GroupEntry(g.group_id, g.type, (*g.buckets, Bucket((SetField("tun_id", key), Output(rng.choice(free))))))
    groups = tuple(new if i == gi else x for i, x in enumerate(tun.groups))
    return f"extra flood bucket on {progs[hi].host} group {g.group_id}", _swap_bridge(progs, hi, "tun", replace(tun, groups=groups))


def leaking_flood(rng: random.Random, progs: list[HostProgram]) -> Mutant | None:
    """A flood flow sending into another network's group (another network's VNI and VTEPs)."""
    at = _pick_flow(rng, progs, lambda f: any(isinstance(a, Group) for a in f.actions))
    if at is None:
        return None
    f = progs[at[0]].bridge(at[1]).flows[at[2]]
    mine = next(a.group_id for a in f.actions if isinstance(a, Group))
    others = [g.group_id for g in progs[at[0]].bridge("tun").groups if g.group_id != mine]
    if not others:
        return None
    acts = tuple(Group(rng.choice(others)) if isinstance(a, Group) else a for a in f.actions)
    return f"flood into another network's group on {progs[at[0]].host}: {f}", _edit(progs, at, replace(f, actions=acts))


MUTATORS = [wrong_vlan, swapped_key, missing_drop, deleted_flow, wrong_output, extra_bucket, leaking_flood]


def probe_frames(topo: Topology) -> list[tuple[str, Frame]]:
    """Per port: broadcast, ARP for every address of its network (and its gateway), unicast to
    every MAC of its network, IPv4 to its router's MAC for every address the topology has."""
    out: list[tuple[str, Frame]] = []
    ips = sorted({p.ip for p in topo.ports.values() if p.ip})
    for name, p in sorted(topo.ports.items()):
        peers = [q for q in topo.ports.values() if q.network == p.network]
        out.append((name, Frame.ethernet(p.mac, BROADCAST, payload="b")))
        targets = {q.ip for q in peers if q.ip} | {topo.networks[p.network].gateway or ""}
        for ip in sorted(t for t in targets if t):
            out.append((name, Frame.arp_request(p.mac, p.ip or "0.0.0.0", ip)))
        for q in peers:
            if q.name != p.name:
                out.append((name, Frame.ethernet(p.mac, q.mac, payload="u")))  # opaque L2: no IP source to check
        r = next((r for r in topo.routers.values() if p.network in r.networks), None)
        if r is not None and p.ip:
            for ip in ips:
                out.append((name, Frame.icmp_echo(p.mac, mac(r.mac(p.network)), p.ip, ip, ttl=9)))
    return out


def forwarding(topo: Topology, progs: list[HostProgram]) -> tuple[object, ...] | None:
    """What the probe frames do (deliveries, tunnel hops, losses), twice: the second time after
    the first round's learning. None when the evaluator refuses the program (OVS would too)."""
    try:
        fabric = Fabric(progs)
        seen: list[object] = []
        frames = probe_frames(topo)
        for _ in range(2):
            for name, frame in frames:
                p = topo.ports[name]
                r = fabric.inject(p.host, p.iface, frame)
                seen.append((tuple(sorted(str(e) for e in r.deliveries)), tuple(sorted(str(e) for e in r.tunnel_hops)),
                             len(r.lost)))
        return tuple(seen)
    except (EvaluationError, KeyError, ValueError):
        return None
