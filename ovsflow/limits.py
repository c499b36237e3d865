"""Bounds on what a topology may be, in one place: the loader refuses documents beyond them and the
semantic checks name them, so no input reaches an allocator or a parser that cannot cope."""

from __future__ import annotations

# Reading: a topology of 100,000 ports is about 8 MB of YAML or JSON.
MAX_DOCUMENT_BYTES = 32 * 1024 * 1024
# YAML outside the plain block-mapping subset (anchors, tags, flow sequences, multi-line scalars...)
# is read by PyYAML's pure-Python loader, about 20 us and 1 KB per node: it gets 1 MiB and 20,000
# nodes (about 2,500 ports), so a hostile document is refused in well under a second.
MAX_SLOW_YAML_BYTES = 1024 * 1024
MAX_SLOW_YAML_NODES = 20_000
# A topology is 4 levels deep (ports.vm1.mac); more is never valid.
MAX_DEPTH = 32
# Nodes YAML aliases may add when expanded (a billion-laughs document adds 10^9).
MAX_ALIAS_NODES = 10_000

# Identifiers the switch sees (graph.py allocates them from these ranges).
MAX_LOCAL_VLANS = 4094
VM_OFPORTS = range(2, 32768)  # br-int; 1 is the patch port
TUNNEL_OFPORTS = range(32768, 65280)  # br-tun; 0xff00 and up are reserved by OpenFlow
