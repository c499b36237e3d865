"""OVSDB through the python-ovs IDL: make a host's bridges and ports what the compiler says.

Why the IDL and not `ovs-vsctl` subprocesses: one connection, one transaction per host, verified
against what the server holds (`verify` makes the commit fail rather than overwrite a concurrent
change), and no parsing of command output. `ensure_host` is idempotent: a second run commits
nothing, so it never disturbs a bridge that carries traffic.

It creates bridges with fail_mode=secure, the OpenFlow protocols bundles need, the deterministic
`other_config:datapath-id` the live app identifies switches by, and (optionally) the controller
target with its inactivity probe, all in the same transaction as the bridge, because adding the
first controller or changing fail_mode later clears a bridge's flows (docs/facts.md). On an existing
bridge it changes those settings only when they differ, and says so (the app then reprograms).

Ports: patch and tunnel ports exactly as the program lists them (type, options, ofport_request);
VM ports by name (the lab or the hypervisor creates the device). Stale patch/tunnel ports on an
ovsflow bridge are removed; other ports (e.g. ones an operator added) are left alone.

Numbering: br-int's `external_ids:ovsflow-allocation` holds the host's allocation (the same record
`render` writes); `ensure_from_topology` reads it before compiling, so an edit never moves an
existing port's ofport_request, and writes the new one in the same transaction.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ovs.db.idl
import ovs.poller

from .allocation import EXTERNAL_ID, Allocation
from .program import OPENFLOW_VERSIONS, TUNNEL_TYPES, BridgeProgram, HostProgram, PortConfig, flow_table_settings

SCHEMA = Path("/usr/share/openvswitch/vswitch.ovsschema")
PROTOCOLS = list(OPENFLOW_VERSIONS)
OVSFLOW_PORT_TYPES = {"patch", *TUNNEL_TYPES}
LOCAL = 65534  # OFPP_LOCAL: the bridge's own internal port
TABLES = {
    "Open_vSwitch": ["bridges", "next_cfg", "cur_cfg"],
    "Bridge": ["name", "ports", "datapath_type", "fail_mode", "protocols", "other_config", "controller", "external_ids",
               "flow_tables"],
    "Flow_Table": ["name", "flow_limit", "overflow_policy", "groups"],
    "Port": ["name", "interfaces"],
    "Interface": ["name", "type", "options", "ofport_request"],
    "Controller": ["target", "inactivity_probe", "connection_mode"],
}


class OvsdbError(RuntimeError):
    pass


@dataclass
class Changes:
    """What a transaction changed (empty: nothing was committed)."""

    lines: list[str] = field(default_factory=list)
    flows_cleared: list[str] = field(default_factory=list)  # bridges whose flows OVS will clear

    def __bool__(self) -> bool:
        return bool(self.lines)


def connect(remote: str, timeout: float = 10.0, schema: Path = SCHEMA) -> ovs.db.idl.Idl:
    """An IDL replica of the tables ovsflow uses, synced once (remote: unix:PATH or tcp:IP:PORT)."""
    helper = ovs.db.idl.SchemaHelper(str(schema))
    for table, columns in TABLES.items():
        helper.register_columns(table, columns)
    idl = ovs.db.idl.Idl(remote, helper)
    deadline = time.monotonic() + timeout
    seq = idl.change_seqno
    while True:
        idl.run()
        if idl.change_seqno != seq and idl.has_ever_connected():
            return idl
        if time.monotonic() > deadline:
            idl.close()
            raise OvsdbError(f"no OVSDB at {remote} within {timeout:.0f} s")
        poller = ovs.poller.Poller()
        idl.wait(poller)
        poller.timer_wait(100)
        poller.block()


def _one(idl: ovs.db.idl.Idl, table: str) -> Any:
    rows = list(idl.tables[table].rows.values())
    if len(rows) != 1:
        raise OvsdbError(f"expected one {table} row, found {len(rows)}")
    return rows[0]


def _opt(value: Any) -> Any:
    """python-ovs gives optional columns as [] or [value]."""
    if isinstance(value, list):
        return value[0] if value else None
    return value


class _Host:
    """One transaction that makes the server's bridges match a HostProgram."""

    def __init__(self, idl: ovs.db.idl.Idl, controller: str | None, probe_ms: int | None,
                 datapath_type: str | None, allocation: Allocation | None = None) -> None:
        self.idl = idl
        self.txn = ovs.db.idl.Transaction(idl)
        self.controller, self.probe_ms, self.datapath_type = controller, probe_ms, datapath_type
        self.allocation = allocation.encode() if allocation else None  # recorded on br-int
        self.changes = Changes()

    def bridge_by_name(self) -> dict[str, Any]:
        return {b.name: b for b in self.idl.tables["Bridge"].rows.values()}

    def new_interface_port(self, pc: PortConfig) -> Any:
        iface = self.txn.insert(self.idl.tables["Interface"])
        iface.name = pc.name
        self.set_interface(iface, pc, new=True)
        port = self.txn.insert(self.idl.tables["Port"])
        port.name = pc.name
        port.interfaces = [iface]
        return port

    def set_interface(self, iface: Any, pc: PortConfig, new: bool = False) -> None:
        """Type and options only for ports ovsflow defines fully (patch, tunnel, internal); a VM
        port's device is someone else's, ovsflow only asks for its OpenFlow port number."""
        said = [] if new else self.changes.lines
        # A row inserted in this transaction has no readable columns yet: just write them.
        if pc.type and (new or iface.type != pc.type):
            iface.type = pc.type
            said.append(f"interface {pc.name}: type -> {pc.type}")
        if pc.type and (new or dict(iface.options) != dict(pc.options)):
            iface.options = dict(pc.options)
            said.append(f"interface {pc.name}: options -> {dict(pc.options)}")
        if pc.ofport != LOCAL and (new or _opt(iface.ofport_request) != pc.ofport):
            iface.ofport_request = [pc.ofport]
            said.append(f"interface {pc.name}: ofport_request -> {pc.ofport}")

    def controller_row(self) -> Any:
        ctrl = self.txn.insert(self.idl.tables["Controller"])
        ctrl.target = self.controller
        ctrl.connection_mode = ["out-of-band"]
        if self.probe_ms is not None:
            ctrl.inactivity_probe = [self.probe_ms]
        return ctrl

    def new_flow_table(self, learn_limit: tuple[int, int]) -> tuple[int, Any]:
        table, limit, groups = flow_table_settings(learn_limit)
        row = self.txn.insert(self.idl.tables["Flow_Table"])
        row.name, row.flow_limit, row.overflow_policy, row.groups = ["learned"], [limit], ["evict"], list(groups)
        return table, row

    def ensure_flow_table(self, br: Any, name: str, learn_limit: tuple[int, int]) -> None:
        """The learned table's cap (Flow_Table flow_limit, overflow_policy=evict, groups)."""
        table, limit, groups = flow_table_settings(learn_limit)
        row = dict(br.flow_tables).get(table)
        if row is not None and (_opt(row.flow_limit), _opt(row.overflow_policy), sorted(row.groups)) == (limit, "evict", sorted(groups)):
            return
        _, new = self.new_flow_table(learn_limit)
        br.setkey("flow_tables", table, new)
        self.changes.lines.append(f"bridge {name}: table {table} capped at {limit - 1} learned entries (evict)")

    def ensure_bridge(self, bp: BridgeProgram) -> None:
        dpid = f"{bp.datapath_id:016x}"
        dtype = self.datapath_type or bp.datapath_type
        br = self.bridge_by_name().get(bp.name)
        if br is None:
            br = self.txn.insert(self.idl.tables["Bridge"])
            br.name = bp.name
            br.datapath_type = dtype
            br.fail_mode = ["secure"]
            br.protocols = PROTOCOLS
            br.other_config = {"datapath-id": dpid}
            if bp.role == "int" and self.allocation:
                br.external_ids = {EXTERNAL_ID: self.allocation}
            if self.controller:
                br.controller = [self.controller_row()]
            if bp.learn_limit is not None:
                table, row = self.new_flow_table(bp.learn_limit)
                br.flow_tables = {table: row}
            local = self.new_interface_port(PortConfig(bp.name, LOCAL, "internal"))
            br.ports = [local] + [self.new_interface_port(pc) for pc in bp.ports]
            root = _one(self.idl, "Open_vSwitch")
            root.verify("bridges")
            root.bridges = list(root.bridges) + [br]
            self.changes.lines.append(f"bridge {bp.name}: created (dpid {dpid}, {len(bp.ports)} ports)")
            return
        self.update_bridge(br, bp, dpid, dtype)

    def update_bridge(self, br: Any, bp: BridgeProgram, dpid: str, dtype: str) -> None:
        ch = self.changes.lines
        if br.datapath_type != dtype:
            br.datapath_type = dtype
            ch.append(f"bridge {bp.name}: datapath_type -> {dtype}")
        if set(br.protocols) != set(PROTOCOLS):
            br.protocols = PROTOCOLS
            ch.append(f"bridge {bp.name}: protocols -> {','.join(PROTOCOLS)}")
        if dict(br.other_config).get("datapath-id") != dpid:
            br.setkey("other_config", "datapath-id", dpid)
            ch.append(f"bridge {bp.name}: datapath-id -> {dpid}")
        if bp.role == "int" and self.allocation and dict(br.external_ids).get(EXTERNAL_ID) != self.allocation:
            br.setkey("external_ids", EXTERNAL_ID, self.allocation)
            ch.append(f"bridge {bp.name}: allocation recorded (external_ids:{EXTERNAL_ID})")
        if bp.learn_limit is not None:
            self.ensure_flow_table(br, bp.name, bp.learn_limit)
        if _opt(br.fail_mode) != "secure":
            br.fail_mode = ["secure"]
            ch.append(f"bridge {bp.name}: fail_mode -> secure")
            if not br.controller:
                self.changes.flows_cleared.append(bp.name)
        if self.controller:
            rows = list(br.controller)
            if [c.target for c in rows] != [self.controller]:
                if not rows:
                    self.changes.flows_cleared.append(bp.name)
                br.controller = [self.controller_row()]
                ch.append(f"bridge {bp.name}: controller -> {self.controller}")
            elif self.probe_ms is not None and _opt(rows[0].inactivity_probe) != self.probe_ms:
                rows[0].inactivity_probe = [self.probe_ms]
                ch.append(f"bridge {bp.name}: inactivity_probe -> {self.probe_ms} ms")
        have = {p.name: p for p in br.ports}
        want = {pc.name: pc for pc in bp.ports}
        ports = list(br.ports)
        for name, pc in want.items():
            port = have.get(name)
            if port is None:
                ports.append(self.new_interface_port(pc))
                ch.append(f"bridge {bp.name}: port {name} added")
                continue
            for iface in port.interfaces:
                if iface.name == name:
                    self.set_interface(iface, pc)
        for name, port in have.items():
            if name in want or name == bp.name:
                continue
            if any(i.type in OVSFLOW_PORT_TYPES for i in port.interfaces):
                ports.remove(port)
                ch.append(f"bridge {bp.name}: stale port {name} removed")
        if len(ports) != len(br.ports) or set(p.uuid for p in ports) != set(p.uuid for p in br.ports):
            br.verify("ports")
            br.ports = ports

    def commit(self, wait: float) -> Changes:
        """Commit; with wait > 0, also wait (like ovs-vsctl) until ovs-vswitchd has applied it,
        so the bridges' OpenFlow sockets exist when this returns."""
        if not self.changes:
            self.txn.abort()
            return self.changes
        root = _one(self.idl, "Open_vSwitch")
        if wait > 0:
            root.increment("next_cfg")
        status = self.txn.commit_block()
        if status not in (ovs.db.idl.Transaction.SUCCESS, ovs.db.idl.Transaction.UNCHANGED):
            raise OvsdbError(f"OVSDB transaction failed: {status} {self.txn.get_error()}")
        if wait > 0:
            target = self.txn.get_increment_new_value()
            deadline = time.monotonic() + wait
            while root.cur_cfg < target:
                if time.monotonic() > deadline:
                    raise OvsdbError(f"ovs-vswitchd did not apply the change within {wait:.0f} s "
                                     "(is it running?)")
                self.idl.run()
                poller = ovs.poller.Poller()
                self.idl.wait(poller)
                poller.timer_wait(100)
                poller.block()
        return self.changes


def ensure_host(remote: str, program: HostProgram, controller: str | None = None,
                probe_ms: int | None = None, datapath_type: str | None = None,
                timeout: float = 10.0, wait: float = 10.0) -> Changes:
    """Make the OVSDB at `remote` hold the program's bridges and ports, in one transaction
    (wait=0: do not wait for ovs-vswitchd to apply it, like `ovs-vsctl --no-wait`); br-int records
    the program's allocation."""
    idl = connect(remote, timeout)
    try:
        return _ensure(idl, program, controller, probe_ms, datapath_type, wait)
    finally:
        idl.close()


def _ensure(idl: ovs.db.idl.Idl, program: HostProgram, controller: str | None, probe_ms: int | None,
            datapath_type: str | None, wait: float) -> Changes:
    host = _Host(idl, controller, probe_ms, datapath_type, program.allocation)
    for bp in program.bridges:
        host.ensure_bridge(bp)
    return host.commit(wait)


def recorded_allocation(idl: ovs.db.idl.Idl, bridge: str) -> Allocation | None:
    """The allocation recorded on `bridge` (None: no bridge, no record, or not ovsflow's text,
    which then is numbered afresh and overwritten)."""
    br = next((b for b in idl.tables["Bridge"].rows.values() if b.name == bridge), None)
    text = dict(br.external_ids).get(EXTERNAL_ID) if br is not None else None
    try:
        return Allocation.decode(text) if text else None
    except ValueError:
        return None


def ensure_from_topology(topology: str, host: str, remote: str, controller: str | None = None,
                         probe_ms: int | None = None, datapath_type: str | None = None) -> Changes:
    """What an `ovsflow` command needs: compile `host` of the topology file with the numbers its
    br-int records, and ensure it."""
    from .compiler import compile_host
    from .model import load_topology

    topo = load_topology(topology)
    idl = connect(remote)
    try:
        memory = recorded_allocation(idl, topo.hosts[host].bridge_int)
        program = compile_host(topo, host, datapath_type, allocation=memory)
        return _ensure(idl, program, controller, probe_ms, datapath_type, 10.0)
    finally:
        idl.close()
