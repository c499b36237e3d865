"""`lab up` / `lab down`: a topology brought to life on one machine.

Layout (names carry the lab's name as prefix, default `ofl`, so nothing collides with the machine):

  <lab>-underlay   netns with a Linux bridge `ulbr`: the "physical" network between hypervisors
  <lab>-<host>     netns per hypervisor: a private ovsdb-server + ovs-vswitchd (userspace datapath),
                   `br-phy` owning the VTEP IP over veth `phy0` (peer `ul-<host>` on ulbr),
                   br-int/br-tun programmed by ovsflow's rendered script
  <lab>-<port>     netns per VM port: `eth0` with the port's MAC/IP, MTU 1450; its peer, named
                   after Port.iface, sits on br-int in the host's namespace

Veth ends are born inside their namespaces, so names never pass through the root namespace.
Everything is recorded in a state file before it is created (see state.py), so `down` can remove
it all after any crash, and a new `up` first removes what an old, killed one left behind.
"""

from __future__ import annotations

import ipaddress
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from . import netns as ns
from .ovs import OvsInstance, kill_pidfile
from .state import LabState, base_dir

VM_MTU = 1450  # 1500 minus the 50 bytes VXLAN adds (outer Ethernet 14 + IP 20 + UDP 8 + VXLAN 8)
VM_DEV = "eth0"
PHY_DEV = "phy0"
UNDERLAY_BRIDGE = "ulbr"
DEFAULT_NAME = "ofl"

Log = Callable[[str], None]


def _quiet(msg: str) -> None:
    pass


def lab_dir(name: str) -> Path:
    return base_dir() / name


def load_state(name: str) -> LabState | None:
    return LabState.load(lab_dir(name))


def namespace_names(name: str, hosts: list[str], ports: list[str]) -> dict[str, str]:
    """Map ('host:'|'vm:')+name and 'underlay' to namespace names: `<lab>-<name>`, with kind
    prefixes only if a host and a port share a name."""
    plain = {f"host:{h}": f"{name}-{h}" for h in hosts}
    plain.update({f"vm:{p}": f"{name}-{p}" for p in ports})
    plain["underlay"] = f"{name}-underlay"
    if len(set(plain.values())) == len(plain):
        return plain
    out = {f"host:{h}": f"{name}-h-{h}" for h in hosts}
    out.update({f"vm:{p}": f"{name}-v-{p}" for p in ports})
    out["underlay"] = f"{name}-underlay"
    return out


def underlay_prefix(vteps: list[str]) -> int:
    """Prefix length for the VTEP addresses: /24 when they share one (the usual picture), else the
    smallest network holding them all, so every VTEP is on-link on the lab's flat underlay."""
    addrs = [ipaddress.ip_address(v) for v in vteps]
    if len({ipaddress.ip_network(f"{a}/24", strict=False) for a in addrs}) == 1:
        return 24
    for plen in range(24, 0, -1):
        if len({ipaddress.ip_network(f"{a}/{plen}", strict=False) for a in addrs}) == 1:
            return plen
    return 8


def _disable_ipv6(netns: str) -> None:
    """No IPv6 router solicitations/MLD in the lab: captures then show only what the learner caused."""
    ns.run(
        ["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"],
        netns=netns,
        check=False,
    )


def _add_netns(state: LabState, name: str) -> None:
    if ns.netns_exists(name):
        raise RuntimeError(
            f"network namespace {name} already exists but is not in this lab's state file; "
            f"remove it (`ip netns delete {name}`) or choose another lab name (--name)"
        )
    state.record_netns(name)
    ns.netns_add(name)
    _disable_ipv6(name)


def up(topo, name: str = DEFAULT_NAME, *, program: str = "render", log: Log = _quiet) -> LabState:
    """Build the lab for `topo` (an ovsflow.model.Topology). Removes a previous lab of that name first."""
    t0 = time.monotonic()
    old = load_state(name)
    if old is not None:
        log(f"lab {name}: removing what a previous `lab up` left ({old.status})")
        down(name, log=log)
    workdir = lab_dir(name)
    state = LabState(name=name, workdir=str(workdir), topology=str(Path(topo.source).resolve()))
    state.save()
    names = namespace_names(name, list(topo.hosts), list(topo.ports))
    plen = underlay_prefix([h.vtep for h in topo.hosts.values()])
    try:
        # underlay: one Linux bridge standing in for the physical network
        ul = names["underlay"]
        state.underlay = {"netns": ul, "bridge": UNDERLAY_BRIDGE, "prefixlen": str(plen)}
        _add_netns(state, ul)
        ns.bridge_add(UNDERLAY_BRIDGE, ul)
        for i, host in enumerate(topo.hosts.values()):
            _host_up(state, topo, host, i, names, plen, log)
        for port in topo.ports.values():
            _vm_up(state, topo, port, names, log)
        t_plumb = time.monotonic()
        if program == "render":
            for host in topo.hosts:
                program_host(state, topo, host, log)
        # after programming: creating tunnel ports flushes OVS's tunnel neighbour cache
        warm_underlay(state, log)
        state.timings["plumbing_s"] = round(t_plumb - t0, 3)
        state.timings["program_s"] = round(time.monotonic() - t_plumb, 3)
        state.timings["up_s"] = round(time.monotonic() - t0, 3)
        state.status = "up"
        state.save()
    except BaseException:
        state.status = "failed"
        state.save()
        raise
    return state


def _host_up(state: LabState, topo, host, index: int, names: dict[str, str], plen: int, log: Log) -> None:
    hns = names[f"host:{host.name}"]
    log(f"host {host.name}: netns {hns}, VTEP {host.vtep}/{plen}")
    _add_netns(state, hns)
    inst = OvsInstance(host.name, Path(state.workdir) / host.name, hns)
    state.ovs.append({"host": host.name, "workdir": str(inst.workdir), "netns": hns})
    ul_dev = f"ul-{host.name}" if len(f"ul-{host.name}") <= ns.IFNAMSIZ else f"ul{index}"
    state.hosts[host.name] = {
        "netns": hns,
        "vtep": host.vtep,
        "ovs_dir": str(inst.workdir),
        "underlay_dev": ul_dev,
        "bridge_int": host.bridge_int,
        "bridge_tun": host.bridge_tun,
    }
    state.save()
    inst.start()
    ul = state.underlay["netns"]
    ns.veth_add(PHY_DEV, hns, ul_dev, ul)
    for dev, where in ((PHY_DEV, hns), (ul_dev, ul)):
        ns.tx_offload_off(dev, where)  # docs/facts.md: checksums left to offload get dropped
        ns.link_up(dev, where)
    ns.link_master(ul_dev, UNDERLAY_BRIDGE, ul)
    # br-phy owns the VTEP IP: the userspace datapath sends tunnel packets through it (docs/facts.md)
    inst.add_bridge("br-phy")
    inst.vsctl("--may-exist", "add-port", "br-phy", PHY_DEV)
    ns.addr_add("br-phy", f"{host.vtep}/{plen}", hns)
    ns.link_up("br-phy", hns)
    net = ipaddress.ip_network(f"{host.vtep}/{plen}", strict=False)
    inst.appctl("ovs/route/add", str(net), "br-phy")


def warm_underlay(state: LabState, log: Log) -> None:
    """Every VTEP pings every other once, as hosts on a real, busy underlay would have: OVS's
    tunnel neighbour cache (`ovs-appctl tnl/neigh/show`) and br-phy's MAC table are then filled,
    and the first tunnelled frame of an exercise is not lost to neighbour resolution."""
    import subprocess

    procs = []
    for host, info in state.hosts.items():
        for other, oinfo in state.hosts.items():
            if other != host:
                procs.append(subprocess.Popen(
                    ["ip", "netns", "exec", info["netns"], "ping", "-n", "-q", "-c", "1", "-W", "2", oinfo["vtep"]],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    failed = sum(1 for p in procs if p.wait(timeout=10) != 0)
    if failed:
        log(f"warning: {failed} of {len(procs)} VTEP-to-VTEP pings on the underlay failed")
    # Snooping fills the cache only for ARP that OVS happens to see in its slow path, and route or
    # port changes flush it; a cache miss drops the packet being tunnelled. So set the entries.
    macs = {h: _link_mac("br-phy", info["netns"]) for h, info in state.hosts.items()}
    for host, info in state.hosts.items():
        inst = OvsInstance(host, Path(info["ovs_dir"]), info["netns"])
        for other, oinfo in state.hosts.items():
            mac = macs[other]
            if other != host and mac:
                inst.appctl("tnl/neigh/set", "br-phy", oinfo["vtep"], mac)


def _link_mac(dev: str, netns: str) -> str | None:
    out = ns.run(["ip", "-br", "link", "show", "dev", dev], netns=netns, check=False).stdout.split()
    return out[2] if len(out) > 2 and out[2].count(":") == 5 else None


def _vm_up(state: LabState, topo, port, names: dict[str, str], log: Log) -> None:
    hns = names[f"host:{port.host}"]
    vns = names[f"vm:{port.name}"]
    network = topo.networks[port.network]
    ip = None
    if port.ip:
        plen = ipaddress.ip_network(network.subnet).prefixlen if network.subnet else 24
        ip = f"{str(port.ip).split('/')[0]}/{plen}"
    log(f"  vm {port.name}: netns {vns}, {port.mac} {ip or '(no IP)'} on {port.host}/{port.iface} ({port.network})")
    _add_netns(state, vns)
    state.vms[port.name] = {
        "netns": vns,
        "dev": VM_DEV,
        "host": port.host,
        "host_netns": hns,
        "iface": port.iface,
        "network": port.network,
        "mac": port.mac,
        "ip": (ip or "").split("/")[0],
    }
    state.save()
    ns.veth_add(port.iface, hns, VM_DEV, vns)
    ns.link_set_mac(VM_DEV, port.mac, vns)
    ns.tx_offload_off(VM_DEV, vns)
    ns.tx_offload_off(port.iface, hns)
    ns.link_up(VM_DEV, vns, mtu=VM_MTU)
    ns.link_up(port.iface, hns)
    if ip:
        ns.addr_add(VM_DEV, ip, vns)
        if network.gateway:
            ns.run(["ip", "route", "replace", "default", "via", str(network.gateway)], netns=vns, check=False)


def program_host(state: LabState, topo, host: str, log: Log) -> None:
    """Run ovsflow's rendered script for `host` against its private OVS, as an operator would."""
    from ovsflow.render import render_script  # the lead's module; imported late on purpose

    info = state.hosts[host]
    inst = OvsInstance(host, Path(info["ovs_dir"]), info["netns"])
    script = render_script(topo, host, datapath_type="netdev")
    path = Path(info["ovs_dir"]) / "program.sh"
    path.write_text(script)
    t = time.monotonic()
    ns.run(["sh", "-e", str(path)], netns=info["netns"], env=inst.env, timeout=120)
    log(f"host {host}: programmed br-int/br-tun from {path.name} in {time.monotonic() - t:.2f}s")


def down(name: str = DEFAULT_NAME, *, log: Log = _quiet) -> bool:
    """Remove everything lab `name` created (per its state file). Idempotent; False if no lab."""
    state = load_state(name)
    if state is None:
        return False
    state.status = "removing"
    state.save()
    for entry in state.ovs:
        OvsInstance(entry["host"], Path(entry["workdir"]), entry["netns"]).stop()
    for netns_name in reversed(state.netns):
        for pid in ns.netns_pids(netns_name):  # tcpdump, probes, anything a learner started
            _kill(pid)
        ns.netns_delete(netns_name)
    # daemons whose namespace was already gone: their pidfiles still name them
    for entry in state.ovs:
        for pidfile, prog in (("ovs-vswitchd.pid", "ovs-vswitchd"), ("ovsdb-server.pid", "ovsdb-server")):
            kill_pidfile(Path(entry["workdir"]) / pidfile, prog)
    shutil.rmtree(state.workdir, ignore_errors=True)
    log(f"lab {name}: removed {len(state.netns)} namespaces and {len(state.ovs)} OVS instances")
    return True


def host_ovs(state: LabState, host: str) -> OvsInstance:
    """The private OVS of `host` in a lab that is up (for dump_flows, ofctl, appctl)."""
    info = state.hosts[host]
    return OvsInstance(host, Path(info["ovs_dir"]), info["netns"])


def vm_run(state: LabState, port: str, cmd: list[str], *, check: bool = True):
    """Run `cmd` inside VM `port`'s namespace; returns the CompletedProcess."""
    return ns.run(cmd, netns=state.vms[port]["netns"], check=check)


def ping(state: LabState, src: str, dst_ip: str, count: int = 3) -> bool:
    """True if VM `src` gets at least one echo reply from `dst_ip`."""
    cmd = ["ping", "-n", "-q", "-c", str(count), "-i", "0.2", "-W", "1", dst_ip]
    return vm_run(state, src, cmd, check=False).returncode == 0


def _kill(pid: int) -> None:
    import os
    import signal

    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def status(name: str = DEFAULT_NAME) -> dict:
    """What the state file says, plus what is actually alive, for `lab status`."""
    state = load_state(name)
    if state is None:
        return {"name": name, "status": "absent"}
    hosts = {}
    for entry in state.ovs:
        inst = OvsInstance(entry["host"], Path(entry["workdir"]), entry["netns"])
        hosts[entry["host"]] = {
            **state.hosts.get(entry["host"], {}),
            "netns_alive": ns.netns_exists(entry["netns"]),
            "ovs_running": inst.running(),
        }
    vms = {p: {**v, "netns_alive": ns.netns_exists(v["netns"])} for p, v in state.vms.items()}
    return {
        "name": name,
        "status": state.status,
        "topology": state.topology,
        "workdir": state.workdir,
        "underlay": state.underlay,
        "hosts": hosts,
        "vms": vms,
        "timings": state.timings,
    }
