"""The compiler: topology -> the complete OpenFlow program of every bridge of a host.

Pure and deterministic: no I/O, no Ryu, no clocks; the same topology gives the same flows in the same
order. One function per table concern (as Neutron's br_tun.py does), grouped by bridge
(tunnel.py, integration.py) on a shared base of per-host facts and tables by name (facts.py); the
host's program is assembled from per-network pieces (pieces.py, host.py). Every flow is checked
against the declared pipeline (pipelines/*.yaml) before it is accepted.
"""

from .facts import flood_group_id, vid
from .host import HostCompiler, compile_all, compile_host
from .pieces import NetworkPiece, PieceMemo, finish
from .tunnel import HINT_MIN_S, LEARN_TABLE, PRIO_L2POP, PRIO_LEARNED

__all__ = ["HINT_MIN_S", "LEARN_TABLE", "PRIO_L2POP", "PRIO_LEARNED", "HostCompiler", "NetworkPiece", "PieceMemo",
           "compile_all", "compile_host", "finish", "flood_group_id", "vid"]
