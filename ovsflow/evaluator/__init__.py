"""A flow-table evaluator: push frames through compiled OpenFlow tables the way OVS would.

It answers what a compiled program *does* (which ports a frame leaves on, with which tunnel key,
what learn() remembers) without a switch: the tests hold the compiler to it, and trace/verify build
on it. Modules: results.py (what comes out: egress, trace), tables.py (one bridge's tables,
matching, checking), host.py (one host's translation, learn()), fabric.py (hosts joined by tunnels).
It reads `ovsflow.flow.Flow` values directly:
no text parsing, so it tests the compiler's output, not a printer/parser round trip.

Semantics follow OVS (ofproto-dpif-xlate), restricted to what ovsflow emits:
- In a table the matching flow of highest priority wins. Two matching flows of the same priority is
  undefined in OpenFlow; here the first in `Flow.sort_key()` order wins (match text, then actions
  text) and the trace records the tie (`Trace.ambiguities`) so a test can refuse it.
- A table miss with no matching flow drops (OpenFlow 1.3+, and ovsflow bridges are fail_mode secure).
- Actions run in order, then `goto_table`. `output:P` with P equal to the frame's in_port is skipped
  (OpenFlow), only `IN_PORT` sends a frame back where it came from.
- Output to a patch port continues in the peer bridge at table 0 with in_port = the peer port and
  the tunnel metadata cleared (OVS `patch_port_output`); the sender's state is untouched afterwards.
- learn() builds a flow from the current frame; learned flows are installed when the frame's pass
  through the host is over (OVS installs them after translation), replacing a flow with the same
  table, priority and match, as an OpenFlow add does. Hard and idle timeouts run on a clock that
  only moves with `advance()`.
- Groups: `all` applies every bucket to its own copy, `indirect` its one bucket, `select` one bucket
  chosen by a hash of the Ethernet addresses and VLAN (deterministic).
- Flows are checked when added, as `ovs-ofctl -O OpenFlow14` would refuse them: goto_table only
  forward and last, match prerequisites (arp_* need dl_type=0x0806 ...), pop_vlan and
  set_field:vlan_vid only when a VLAN header is known to be present, groups must exist.
Anything outside this model (QinQ, reserved ports such as NORMAL, unknown actions) raises
`EvaluationError` instead of guessing.
"""

from .fabric import MAX_TUNNEL_HOPS, Fabric
from .host import MAX_DEPTH, MAX_RESUBMITS, Host, learn_flow
from .results import Egress, EvaluationError, FabricResult, Result, Step, Trace
from .tables import Bridge, Entry, check_flow, matches

__all__ = ["MAX_DEPTH", "MAX_RESUBMITS", "MAX_TUNNEL_HOPS", "Bridge", "Egress", "Entry", "EvaluationError", "Fabric",
           "FabricResult", "Host", "Result", "Step", "Trace", "check_flow", "learn_flow", "matches"]
