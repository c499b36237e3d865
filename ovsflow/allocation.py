"""One host's numbering as a value that can be remembered: local VLAN per network, OpenFlow port
per VM port and per tunnel port.

The allocators (graph.py) keep a remembered number for an item that still exists, so an edit never
renumbers what a switch already carries; only newcomers take their preferred value or the next free
one. The memory lives where the numbers do: the live controller keeps the allocation in use on each
host, and `render`/`ovsdb-ensure` record it on the switch itself (br-int's
`external_ids:ovsflow-allocation`, in the compact text form below).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from .limits import TUNNEL_OFPORTS, VM_OFPORTS

EXTERNAL_ID = "ovsflow-allocation"  # br-int external_ids key that holds a host's allocation
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
_NUMBER = re.compile(r"[0-9]{1,5}")
_SECTIONS = (("v", "vlans", range(1, 4095)), ("p", "vm_ofports", VM_OFPORTS), ("t", "tunnel_ofports", TUNNEL_OFPORTS))


@dataclass(frozen=True)
class Allocation:
    """The numbers one host's switch carries, by the stable name of what carries them."""

    vlans: Mapping[str, int] = field(default_factory=dict)  # network name -> local VLAN
    vm_ofports: Mapping[str, int] = field(default_factory=dict)  # VM port name -> br-int ofport
    tunnel_ofports: Mapping[str, int] = field(default_factory=dict)  # tunnel port name -> br-tun ofport

    def __bool__(self) -> bool:
        return bool(self.vlans or self.vm_ofports or self.tunnel_ofports)

    def encode(self) -> str:
        """`v=blue:101,red:102;p=vm1:7;t=vxlan-c000020c:40001`: names (letters, digits, `_.-`) and
        numbers only, so the text is safe in an OVSDB string and a shell word once quoted."""
        parts = []
        for tag, attr, _ in _SECTIONS:
            pairs: Mapping[str, int] = getattr(self, attr)
            parts.append(f"{tag}=" + ",".join(f"{k}:{v}" for k, v in sorted(pairs.items())))
        return ";".join(parts)

    @staticmethod
    def decode(text: str) -> Allocation:
        """The inverse of `encode`; ValueError for anything it would not have written."""
        if len(text) > 4 * 1024 * 1024:
            raise ValueError("allocation text too long")
        found: dict[str, dict[str, int]] = {}
        for section in text.split(";") if text else ():
            tag, eq, body = section.partition("=")
            spec = next((s for s in _SECTIONS if s[0] == tag), None)
            if not eq or spec is None or spec[1] in found:
                raise ValueError(f"bad allocation section {section[:40]!r}")
            pairs: dict[str, int] = {}
            for item in body.split(",") if body else ():
                name, colon, number = item.partition(":")
                if not colon or not _NAME.fullmatch(name) or not _NUMBER.fullmatch(number) \
                        or int(number) not in spec[2] or name in pairs:
                    raise ValueError(f"bad allocation entry {item[:40]!r}")
                pairs[name] = int(number)
            found[spec[1]] = pairs
        return Allocation(**found)
