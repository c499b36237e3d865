"""Network pieces and how a bridge is assembled from them (no table knowledge here).

A host's program is its host-wide flows plus one `NetworkPiece` per network it is on; `PieceMemo`
keeps pieces between compiles so an edit rebuilds only the networks it touched, and `assemble`
merges sorted parts into a bridge, proving on the way that no two flows share an identity.
"""

from __future__ import annotations

from collections.abc import Generator, Iterable, Mapping
from dataclasses import dataclass
from operator import eq, itemgetter
from typing import Any

from .. import flow as F
from ..flow import Flow
from ..pipeline import Pipeline, Table
from ..program import COOKIE_STATIC, BridgeProgram, PortConfig

SortKey = tuple[Any, ...]


@dataclass(frozen=True, eq=False)
class NetworkPiece:
    """One network's share of one host's program: its br-tun and br-int flows and its flood group.

    A host's program is its host-wide flows (classify by port, learn(), table misses) plus one piece
    per network it is on. A piece depends only on `piece_key`, so a compile that is given the pieces
    of an earlier compile (`PieceMemo`) rebuilds only the networks an edit touched; the pieces that
    come back are the same objects, which lets the live controller reuse their encoding too.
    """

    tun: tuple[Flow, ...]  # sorted by Flow.sort_key
    int: tuple[Flow, ...]
    group: F.GroupEntry | None
    tun_keys: tuple[SortKey, ...] = ()  # the flows' sort keys, kept so assembling only merges
    int_keys: tuple[SortKey, ...] = ()


class PieceMemo:
    """Network pieces of the hosts compiled so far, reusable by the next compile.

    `PieceMemo(previous)` starts empty but can take any piece `previous` holds; it keeps only what
    was used (or carried over with `carry`), so it never grows beyond one topology's worth.
    """

    def __init__(self, previous: PieceMemo | None = None) -> None:
        self._previous = previous._hosts if previous is not None else {}
        self._hosts: dict[str, dict[SortKey, Any]] = {}  # piece key -> NetworkPiece; ("same", name) -> value

    def lookup(self, host: str, key: SortKey) -> NetworkPiece | None:
        """The piece for `key`, from this memo or the previous one (then kept in this one)."""
        mine = self._hosts.setdefault(host, {})
        found = mine.get(key)
        if found is None:
            found = self._previous.get(host, {}).get(key)
            if found is not None:
                mine[key] = found
        return found if isinstance(found, NetworkPiece) else None

    def store(self, host: str, key: SortKey, piece: NetworkPiece) -> NetworkPiece:
        self._hosts.setdefault(host, {})[key] = piece
        return piece

    def same(self, host: str, name: str, value: SortKey) -> SortKey:
        """`value`, or the equal value recorded under `name` last time (then the very same object,
        which is what lets callers reuse work done for it)."""
        key = ("same", name)
        old = self._previous.get(host, {}).get(key)
        if old is not None and old == value:
            value = old
        self._hosts.setdefault(host, {})[key] = value
        return value

    def carry(self, host: str) -> None:
        """Keep `host`'s pieces from the previous memo as they are (its program was reused whole)."""
        if host in self._previous:
            self._hosts[host] = dict(self._previous[host])



def sorted_piece(tun: Iterable[Flow], int_: Iterable[Flow], group: F.GroupEntry | None = None) -> NetworkPiece:
    """A piece from already checked flows: each bridge's flows sorted, with their sort keys."""
    (tun_sorted, tun_keys), (int_sorted, int_keys) = keyed(tun), keyed(int_)
    return NetworkPiece(tun_sorted, int_sorted, group, tun_keys, int_keys)


def finish(steps: Generator[None, None, NetworkPiece]) -> NetworkPiece:
    """Run a step-wise build (HostCompiler.piece_steps) to its end."""
    while True:
        try:
            next(steps)
        except StopIteration as done:
            piece: NetworkPiece = done.value
            return piece


def make(table: Table, priority: int, match: Mapping[str, F.MatchValue], actions: Iterable[F.Action]) -> Flow:
    """A flow of the compiled program in `table` (every one carries COOKIE_STATIC)."""
    return table.flow(priority, match, actions, COOKIE_STATIC)


def check(pipeline: Pipeline, flows: tuple[Flow, ...], groups: tuple[F.GroupEntry, ...] = ()) -> None:
    """Every flow keeps its table's contract and uses only groups the program defines. (That no
    two flows share an identity is checked when a bridge is assembled.)"""
    missing = pipeline.check_all(flows) - {g.group_id for g in groups}
    if missing:
        f = next(f for f in flows if any(type(a) is F.Group and a.group_id in missing for a in f.actions))
        raise AssertionError(f"flow outputs to group {sorted(missing)[0]}, which the program does not define: {f}")


def keyed(flows: Iterable[Flow]) -> tuple[tuple[Flow, ...], tuple[SortKey, ...]]:
    """Flows sorted by Flow.sort_key, and those keys."""
    pairs = sorted(((f.sort_key(), f) for f in flows), key=itemgetter(0))
    return tuple(f for _, f in pairs), tuple(k for k, _ in pairs)


def assemble(name: str, role: str, datapath_type: str, dpid: int, ports: list[PortConfig],
             parts: tuple[tuple[tuple[Flow, ...], tuple[SortKey, ...]], ...], groups: tuple[F.GroupEntry, ...]) -> BridgeProgram:
    """One bridge from checked, sorted parts (host-wide flows, then one part per network) and
    their sort keys: merged in key order. Parts are disjoint by construction (each network's flows
    match its own VLAN, tunnel key or VM ports); equal identities would have equal sort keys, side
    by side after the merge, so one pass over neighbours proves it."""
    pairs = [pair for flows, keys in parts for pair in zip(keys, flows)]
    pairs.sort(key=itemgetter(0))  # sorted runs: a merge, not a sort
    keys = [k for k, _ in pairs]
    if any(map(eq, keys, keys[1:])):
        dup = next(i for i in range(len(keys) - 1) if keys[i] == keys[i + 1])
        raise AssertionError(f"compiler emitted two flows with the same match and priority: {pairs[dup][1]} / {pairs[dup + 1][1]}")
    flows = tuple(f for _, f in pairs)
    return BridgeProgram(name, role, datapath_type, dpid, tuple(ports), flows, groups, tuple(f for f, _ in parts))

