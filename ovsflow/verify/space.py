"""Header classes: ternary cubes over the fields the pipelines match, minus other cubes.

A `Cube` constrains each field to a (value, mask) pair (absent = any value) and the ingress port to
a finite set. A header class is a cube minus a tuple of excluded cubes (the higher-priority
matches a frame had to miss on its way), the representation of Header Space Analysis with lazy
subtraction. `witness` finds a concrete point of such a class (or proves there is none), so every
class the engine keeps is non-empty and every counterexample is a concrete frame.

The three VLAN views are one field here, `vlan_tci`, on 13 bits (OFPVID_PRESENT and the VID):
`dl_vlan=5` is vlan_tci 0x1005/0x1fff, "untagged" is 0/0x1fff; PCP is not modelled.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from ..fields import FIELDS, OFPVID_PRESENT, field

Ternary = tuple[int, int]  # (value, mask); value has no bits outside mask
VLAN_BITS = 0x1FFF
WITNESS_BUDGET = 20_000  # splits before witness() gives up and calls the class non-empty (sound)


def width(name: str) -> int:
    return 13 if name == "vlan_tci" else FIELDS[name].bits


def full(name: str) -> int:
    return (1 << width(name)) - 1


def canonical(name: str) -> str:
    """A match, set_field or NXM name as the one name the cube uses."""
    if name in ("dl_vlan", "vlan_vid", "vlan_tci"):
        return "vlan_tci"
    return field(name).name


def ternary(name: str, value: int | tuple[int, int]) -> tuple[str, Ternary]:
    """A Flow match item as (canonical field, ternary)."""
    if name == "dl_vlan":
        assert isinstance(value, int)
        return "vlan_tci", (OFPVID_PRESENT | value, VLAN_BITS)
    c = canonical(name)
    if isinstance(value, tuple):
        v, m = value
        m &= full(c)
        return c, (v & m, m)
    return c, (value & full(c), full(c))


class Cube:
    """Per-field ternaries and a set of ingress ports (None: any port)."""

    __slots__ = ("f", "ports")

    def __init__(self, f: Mapping[str, Ternary] | None = None, ports: frozenset[int] | None = None) -> None:
        self.f: dict[str, Ternary] = dict(f or {})
        self.ports = ports

    def __repr__(self) -> str:
        return f"Cube({self.f}, ports={sorted(self.ports) if self.ports is not None else 'any'})"

    def copy(self) -> Cube:
        return Cube(self.f, self.ports)

    def intersect(self, other: Cube) -> Cube | None:
        if other.ports is None:
            ports = self.ports
        elif self.ports is None:
            ports = other.ports
        else:
            ports = self.ports & other.ports
            if not ports:
                return None
        out = dict(self.f)
        for k, (v2, m2) in other.f.items():
            mine = out.get(k)
            if mine is None:
                out[k] = (v2, m2)
                continue
            v1, m1 = mine
            if (v1 ^ v2) & m1 & m2:
                return None
            out[k] = (v1 | v2, m1 | m2)
        return Cube(out, ports)

    def disjoint(self, other: Cube) -> bool:
        if self.ports is not None and other.ports is not None and not (self.ports & other.ports):
            return True
        for k, (v2, m2) in other.f.items():
            mine = self.f.get(k)
            if mine is not None and (mine[0] ^ v2) & mine[1] & m2:
                return True
        return False

    def within(self, other: Cube) -> bool:
        """Every point of self is in other."""
        if other.ports is not None and (self.ports is None or not self.ports <= other.ports):
            return False
        for k, (v2, m2) in other.f.items():
            mine = self.f.get(k)
            if mine is None or m2 & ~mine[1] or (mine[0] ^ v2) & m2:
                return False
        return True

    def exact(self, name: str) -> int | None:
        t = self.f.get(name)
        return t[0] if t is not None and t[1] == full(name) else None


def relevant(cube: Cube, excluded: Iterable[Cube]) -> tuple[Cube, ...]:
    return tuple(e for e in excluded if not cube.disjoint(e))


def witness(cube: Cube, excluded: tuple[Cube, ...]) -> tuple[dict[str, int], int | None] | None:
    """A concrete point (field values for the constrained fields, an ingress port) of `cube` minus
    the union of `excluded`, or None when that set is empty. Splits the cube on a bit (or a port)
    where an overlapping exclusion is more specific, until no exclusion overlaps."""
    budget = [WITNESS_BUDGET]

    def go(c: Cube, ex: tuple[Cube, ...]) -> tuple[dict[str, int], int | None] | None:
        ex = relevant(c, ex)
        if not ex:
            return {k: v for k, (v, _) in c.f.items()}, (min(c.ports) if c.ports else None)
        budget[0] -= 1
        if budget[0] < 0:  # give up: treat as non-empty (over-approximation)
            return {k: v for k, (v, _) in c.f.items()}, (min(c.ports) if c.ports else None)
        e = ex[0]
        if c.within(e):
            return None
        if e.ports is not None and (c.ports is None or not c.ports <= e.ports):
            outside = None if c.ports is None else c.ports - e.ports
            if outside:
                found = go(Cube(c.f, outside), ex[1:])
                if found is not None:
                    return found
            inside = e.ports if c.ports is None else c.ports & e.ports
            return go(Cube(c.f, inside), ex)
        for k, (v2, m2) in e.f.items():
            v1, m1 = c.f.get(k, (0, 0))
            free = m2 & ~m1
            if not free:
                continue
            bit = free & -free
            off = dict(c.f)
            off[k] = (v1 | ((v2 & bit) ^ bit), m1 | bit)  # the bit e does not have: leaves e
            found = go(Cube(off, c.ports), ex[1:])
            if found is not None:
                return found
            on = dict(c.f)
            on[k] = (v1 | (v2 & bit), m1 | bit)
            return go(Cube(on, c.ports), ex)
        return None  # unreachable: e overlaps c and is not more specific, so it contains c

    return go(cube, excluded)
