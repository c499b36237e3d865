"""`ovsflow verify`: a static proof over the compiled programs of all hosts, without traffic.

Model. A header class is a ternary cube over the fields the pipelines match (in_port as a set,
the VLAN as one 13-bit vlan_tci) minus the cubes of higher-priority flows it missed (space.py).
Each host is explored alone (explore.py): classes enter at every VM port (any frame) and at the
tunnel ports of each type (any untagged inner frame, any key), are intersected with each flow in
priority order, and run its actions symbolically (set_field, move, load, push/pop VLAN, dec_ttl,
output, groups, goto; a patch port continues in the peer bridge at table 0) until they leave on a
VM or tunnel port. Hosts are joined by assume-guarantee (checks.py): a frame arriving with key K
is taken to be a frame of K's network from a host attached to it, and every host is checked to
send only such frames. learn() is over-approximated: the table it writes may hold, for every
VLAN, key and tunnel port a frame reaching the learn() action can carry (restricted to ports of
hosts attached to the key's network), an entry for any MAC; such a *may* entry is both taken and
skipped. Properties: isolation (every exit stays in the sender's network, or crosses through the
router that joins the two networks as IPv4 to the router's MAC, TTL decremented once, the
router's MAC as source), reachability (each port's frames, unicast to a peer's MAC and broadcast,
reach every peer's host, and each host delivers its network's frames from every peer host),
loops (patch crossings within a host, relay cycles across tunnels), flood groups (exactly the
VTEPs with a port on the network) and tunnel keys (each key maps to its network's VLAN in its
type's table). A violation carries a concrete entry frame, replayed in the evaluator (run.py).

Where it stops: PCP bits, QinQ, IPv6 hop-limit semantics beyond the field, the select/indirect
group types (every bucket is taken), timeouts (learned entries may or may not exist at any
time), equal-priority overlaps (taken in order), tunnel frames from outside ovsflow's hosts,
reachability across routers, and the underlay. Relations between fields lost on a write (a move
then a match) over-approximate the original frame, which can only add reports, never hide one.
"""

from .checks import HostReport, Violation
from .run import VerifyResult, frame_of, verify, verify_host

__all__ = ["HostReport", "VerifyResult", "Violation", "frame_of", "verify", "verify_host"]
