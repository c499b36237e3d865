"""br-int's table functions: a VM's frames tagged with its network's local VLAN (only untagged,
only its own MAC), switching between local VMs, and the patch to br-tun for everything remote."""

from __future__ import annotations

from collections.abc import Iterable

from .. import flow as F
from ..fields import mac
from ..flow import Flow
from ..graph import PATCH_OFPORT
from ..model import Network
from .facts import HostFacts, vid
from .pieces import make
from .tunnel import MULTICAST

NO_VLAN = (0x0000, 0x1FFF)  # vlan_tci=0x0000/0x1fff: no VLAN header


class IntTables(HostFacts):
    """br-int's flows of one host."""


    # -- br-int: per network -----------------------------------------------------------------------
    def int_classify(self, net: Network) -> Iterable[Flow]:
        """A VM's frames are tagged with its network's local VLAN (only untagged, only its own MAC)
        and go to antispoof (antispoof.py); frames from br-tun already carry the VLAN."""
        for port in self.local_ports.get(net.name, ()):
            yield make(
                self.int["classify"], 1, {"in_port": self.vm_ofports[port.name], "dl_src": mac(port.mac), "vlan_tci": NO_VLAN},
                [F.PushVlan(), F.SetField("vlan_vid", vid(self.vlans[net.name])), self.int["antispoof"].goto()],
            )
        if self.has_senders(net):
            yield make(self.int["classify"], 1, {"in_port": PATCH_OFPORT, "dl_vlan": self.vlans[net.name]}, [self.int["to_vm"].goto()])

    def int_from_vm(self, net: Network) -> Iterable[Flow]:
        vlan = self.vlans[net.name]
        remotes = self.has_senders(net)
        to_tun = [F.Output(PATCH_OFPORT)] if remotes else []
        yield make(self.int["from_vm"], 2, {"dl_vlan": vlan, "dl_dst": MULTICAST}, [*to_tun, self.int["to_vm"].goto()])
        if remotes:
            yield make(self.int["from_vm"], 1, {"dl_vlan": vlan}, to_tun)
        for port in self.local_ports.get(net.name, ()):
            yield make(self.int["from_vm"], 3, {"dl_vlan": vlan, "dl_dst": mac(port.mac)}, [self.int["to_vm"].goto()])

    def int_to_vm(self, net: Network) -> Iterable[Flow]:
        vlan = self.vlans[net.name]
        ofports = []
        for port in self.local_ports.get(net.name, ()):
            ofport = self.vm_ofports[port.name]
            ofports.append(ofport)
            yield make(self.int["to_vm"], 2, {"dl_vlan": vlan, "dl_dst": mac(port.mac)}, [F.PopVlan(), F.Output(ofport)])
        yield make(self.int["to_vm"], 1, {"dl_vlan": vlan, "dl_dst": MULTICAST}, [F.PopVlan(), *(F.Output(p) for p in sorted(ofports))])
