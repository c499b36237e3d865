"""The live controller: `ryu-manager ovsflow.app --ovsflow-topology FILE`.

It compiles the topology with the same compiler `ovsflow render` uses, and keeps every switch it
knows (by datapath id: BridgeProgram.datapath_id) equal to that program:

- on connect it reads the switch's ovsflow flows (cookie-filtered) and groups, diffs them against
  the program (`reconcile.plan`) and sends only the difference, as one atomic, ordered bundle
  (OpenFlow 1.4; the ONF extension on 1.3) followed by a barrier. A switch that is already right
  gets no flow-mod at all, so a controller restart costs no traffic: bridges are fail_mode secure
  and keep their flows while it is away;
- on SIGHUP or when the topology file changes it reloads: an invalid file is rejected with one
  log line and the running program stays; a valid one is pushed, concurrently, to the connected
  switches whose program changed (the others get nothing). Only the networks the edit touched are
  compiled and encoded again, and a switch that confirmed its previous program on this
  connection gets the difference between the two programs without being read back;
- a VM that moved to another host is forgotten by learn() on the switches of its network (its
  learned entries are deleted in the same bundle), so traffic to it floods instead of going to
  the old VTEP until it is learned again;
- hosts no switch has asked for yet are compiled in the background, one at a time, so switches
  that reconnect after a controller restart find their program ready;
- with --ovsflow-audit-interval it reads every switch back now and then and repairs drift;
- it never touches flows without the ovsflow cookie, and keeps the flows learn() added (except
  those of a moved VM, as above).

The topology comes from `--ovsflow-topology` (or `ovsflow_topology` in a `--config-file`), else the
environment variable OVSFLOW_TOPOLOGY. Logs say, per switch, what happened and how long it took.
"""

from __future__ import annotations

import itertools
import logging
import os
import signal
import time
from dataclasses import dataclass, field, replace
from typing import Any

from . import ryu_compat

ryu_compat.install()  # no-op under ryu-manager with the .pth; covers imports in other processes

from ryu import cfg  # noqa: E402
from ryu.base import app_manager  # noqa: E402
from ryu.controller import ofp_event  # noqa: E402
from ryu.controller.handler import CONFIG_DISPATCHER, DEAD_DISPATCHER, HANDSHAKE_DISPATCHER, MAIN_DISPATCHER, set_ev_cls  # noqa: E402
from ryu.lib import hub  # noqa: E402
from ryu.ofproto import ofproto_protocol, ofproto_v1_3, ofproto_v1_4  # noqa: E402

from . import reconcile as RC  # noqa: E402
from . import ryu_encode as R  # noqa: E402
from .filewatch import DirWatch  # noqa: E402
from .compiler import LEARN_TABLE, PRIO_LEARNED, HostCompiler, PieceMemo, compile_host  # noqa: E402
from .graph import TopologyGraph  # noqa: E402
from .flow import Flow, GroupEntry  # noqa: E402
from .model import load_topology  # noqa: E402
from .program import COOKIE_BASE, COOKIE_LEARNED, COOKIE_MASK  # noqa: E402

ryu_compat.register_flags(cfg.CONF, cli=False)  # config-file/env use when the .pth did not run
R.install_lazy_flow_stats()  # flow-stats entries stay bytes until read (see ryu_encode)
LOG = logging.getLogger("ovsflow.app")
ENV_TOPOLOGY = "OVSFLOW_TOPOLOGY"
REQUEST_TIMEOUT = 60.0
SEND_CHUNK = 1 << 20  # bytes of serialized messages handed to Ryu's send queue at once
HANDSHAKE_WAIT = 10.0  # seconds: a switch longer in its handshake no longer holds background work
WARM_STEP = 250  # flows per step of background compiling (~10-40 ms here)
HUP_TICK = 0.01  # seconds: how often the watcher looks for SIGHUP (a flag the handler sets)


@dataclass(frozen=True)
class Target:
    """What one datapath must hold (flows and groups in canonical form).

    `keys` maps each flow's wire bytes (`FastEncoder.flow_key`) to the flow, computed once per
    load, so reading back a switch that holds exactly these flows needs no decoding at all.
    """

    host: str
    bridge: str
    flows: tuple[Flow, ...]
    groups: tuple[GroupEntry, ...]
    keys: dict[bytes, Flow] = field(default_factory=dict, compare=False, repr=False)
    # id(flow) -> its ADD flow-mod without header, for flows of `flows` (kept alive by it)
    add_tails: dict[int, bytes] = field(default_factory=dict, compare=False, repr=False)
    # the compiled parts it was encoded from (see EncodedParts)
    parts: tuple = field(default=(), compare=False, repr=False)

    @property
    def label(self) -> str:
        return f"{self.host}/{self.bridge}"


def topology_path() -> str | None:
    return getattr(cfg.CONF, "ovsflow_topology", None) or os.environ.get(ENV_TOPOLOGY) or None


@dataclass(frozen=True)
class Encoded:
    """One compiled part, encoded: canonical flows, and by them their wire keys and ADD bytes."""

    flows: tuple[Flow, ...]
    keys: dict[bytes, Flow]  # wire key -> canonical flow
    tails: dict[int, bytes]  # id(canonical flow) -> ADD flow-mod without header

    @staticmethod
    def of(triples: list[tuple[Flow, bytes, bytes]]) -> "Encoded":
        return Encoded(tuple(f for f, _, _ in triples), {k: f for f, _, k in triples},
                       {id(f): t for f, t, _ in triples})


class EncodedParts:
    """Encoded parts (Encoded) per compiled part, reused across reloads.

    Keyed by the part object's id (program.BridgeProgram.parts): a network the edit did not touch
    comes back from the compiler's memo as the same tuple, so it is not encoded again. Entries hold
    their part, so an id cannot be reused while its entry lives; like compiler.PieceMemo, a new
    generation takes from the previous one and keeps only what is used."""

    def __init__(self, previous: "EncodedParts | None" = None) -> None:
        self._previous = previous._parts if previous is not None else {}
        self._parts: dict[int, tuple[tuple, Encoded]] = {}

    def get(self, part: tuple, fast: "R.FastEncoder") -> Encoded:
        for _ in self.get_steps(part, fast, len(part) or 1):
            pass
        return self._parts[id(part)][1]

    def get_steps(self, part: tuple, fast: "R.FastEncoder", every: int = 1000) -> Any:
        """Encode `part` unless this or the previous generation has it, in steps (a generator
        yielding after every `every` flows), so idle-time work can pause in between."""
        hit = self._parts.get(id(part)) or self._previous.get(id(part))
        if hit is None or hit[0] is not part:
            encoded: list = []
            for i in range(0, len(part), every):
                encoded += fast.encode_flows(part[i:i + every])
                yield
            hit = (part, Encoded.of(encoded))
        self._parts[id(part)] = hit

    def carry(self, parts: tuple) -> None:
        for part in parts:
            hit = self._previous.get(id(part))
            if hit is not None and hit[0] is part:
                self._parts[id(part)] = hit


def bridge_target(host: str, b: Any, fast: "R.FastEncoder", cache: EncodedParts | None = None) -> Target:
    """A compiled bridge in the form reconcile needs (canonical flows, wire keys, ADD bytes),
    merged from its parts' encodings (dict merges: no per-flow Python work for reused parts)."""
    flows: list[Flow] = []
    keys: dict[bytes, Flow] = {}
    tails: dict[int, bytes] = {}
    parts = b.parts or (b.flows,)
    for part in parts:
        enc = cache.get(part, fast) if cache is not None else Encoded.of(fast.encode_flows(part))
        flows += enc.flows
        keys.update(enc.keys)
        tails.update(enc.tails)
    return Target(host, b.name, tuple(flows), tuple(R.canonical_group(g) for g in b.groups), keys, tails, parts)


class Programs:
    """One loaded topology: which datapath is which host's bridge, and what it must hold.

    Loading validates the whole file but compiles nothing; a host is compiled (both bridges) the
    first time one of its switches needs it, then cached (from network pieces the app may have
    compiled ahead into `memo` and `encoded`). Given the
    topology loaded before (`previous`), a host whose inputs did not change (graph.fingerprint)
    takes its old targets as they are, and a changed host is compiled through the previous
    compile's network pieces and encodings: an edit costs the networks it touches, not the hosts.
    """

    def __init__(self, path: str, previous: "Programs | None" = None) -> None:
        self.topo = load_topology(path)
        self.graph = graph = TopologyGraph(self.topo)
        self._fingerprints: dict[str, tuple] = {}
        self.where: dict[int, tuple[str, str]] = {}  # dpid -> (host, role)
        for host in sorted(self.topo.hosts):
            for role, dpid in zip(("int", "tun"), graph.datapath_ids(host)):
                if dpid in self.where:
                    other = self.where[dpid]
                    raise ValueError(f"datapath id {dpid:#x} used by {other[0]}/{other[1]} and {host}/{role}")
                self.where[dpid] = (host, role)
        self._targets: dict[int, Target] = {}
        self.n_flows = 0  # flows of the targets held
        self._fast = R.FastEncoder(ofproto_protocol.ProtocolDesc(ofproto_v1_4.OFP_VERSION))
        self.memo = PieceMemo(previous.memo if previous else None)
        self.encoded = EncodedParts(previous.encoded if previous else None)

    def label(self, dpid: int) -> str:
        host, role = self.where[dpid]
        return f"{host}/br-{role}"

    def cached(self, dpid: int) -> Target | None:
        return self._targets.get(dpid)

    def fingerprint(self, host: str) -> tuple:
        if host not in self._fingerprints:
            self._fingerprints[host] = self.graph.fingerprint(host)
        return self._fingerprints[host]

    def hosts_to_warm(self) -> list[str]:
        return [h for h in sorted(self.topo.hosts) if any(
            dpid not in self._targets for dpid in self.graph.datapath_ids(h))]

    def target(self, dpid: int, previous: "Programs | None" = None) -> Target | None:
        """What switch `dpid` must hold; None if unknown. Compiled on first need, unless
        `previous` (the topology loaded before) had the same inputs for this host
        (graph.fingerprint): then its compiled targets are reused as they are."""
        if dpid not in self.where:
            return None
        if dpid not in self._targets:
            self.compile(self.where[dpid][0], previous)
        return self._targets[dpid]

    def compile(self, host: str, previous: "Programs | None" = None) -> None:
        if previous is not None and host in previous.topo.hosts \
                and all(d in previous._targets for d in self.graph.datapath_ids(host)) \
                and previous.fingerprint(host) == self.fingerprint(host):
            self.memo.carry(host)
            for d in self.graph.datapath_ids(host):
                self._targets[d] = previous._targets[d]
                self.encoded.carry(self._targets[d].parts)
                self.n_flows += len(self._targets[d].flows)
            return
        program = compile_host(self.topo, host, graph=self.graph, memo=self.memo)
        for b in program.bridges:
            self._targets[b.datapath_id] = bridge_target(host, b, self._fast, self.encoded)
            self.n_flows += len(b.flows)


def one_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return f"{type(exc).__name__}: " + ("; ".join(lines) if lines else repr(exc))


class _Waiter:
    def __init__(self) -> None:
        self.event = hub.Event()
        self.body: list[Any] = []
        self.error: str | None = None


class OvsflowApp(app_manager.RyuApp):
    """Programs br-int/br-tun of every host in the topology by diffing, in bundles."""

    OFP_VERSIONS = [ofproto_v1_3.OFP_VERSION, ofproto_v1_4.OFP_VERSION]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.path = topology_path()
        self.programs: Programs | None = None
        self.datapaths: dict[int, Any] = {}
        self.locks: dict[int, Any] = {}
        self.waiters: dict[tuple[int, int], _Waiter] = {}
        self.async_errors: dict[int, list[str]] = {}
        self.bundle_ids = itertools.count(1)
        # dpid -> (connection, target) the switch confirmed last (bundle + barrier, no error):
        # updates on that same connection are sent as the difference from it, without reading back
        self.synced: dict[int, tuple[Any, Target]] = {}
        self._warm_wakeup = hub.Event()
        self._busy = 0  # reconciles in progress: background compiling waits for them
        self._connecting: dict[Any, float] = {}  # datapaths in their handshake (since): likewise
        self._stamp: tuple | None = None
        self._hup = False
        self._file_event = False
        self._wake = hub.Event()  # set by the inotify reader: _watch acts at once
        self._notify = self._file_notifier() if self.path is not None else None  # before the first load
        if self.path is None:
            LOG.error("ovsflow: no topology: pass --ovsflow-topology FILE (or ovsflow_topology in a "
                      "--config-file, or $%s); switches will be left untouched", ENV_TOPOLOGY)
        else:
            self.reload("start")
        try:
            signal.signal(signal.SIGHUP, self._on_hup)
        except ValueError:  # not the main thread (imported elsewhere): file polling still works
            pass

    def start(self) -> Any:
        thread = super().start()
        interval = getattr(cfg.CONF, "ovsflow_poll_interval", 0.05) or 0
        if self.path is not None:
            self.threads.append(hub.spawn(self._watch, max(interval, 0.0)))
            self.threads.append(hub.spawn(self._warm))
            audit = getattr(cfg.CONF, "ovsflow_audit_interval", 0.0) or 0
            if audit > 0:
                self.threads.append(hub.spawn(self._audit, audit))
        return thread

    def _warm(self) -> None:
        """Compile and encode, ahead, the network pieces of hosts no switch has asked for yet, so
        a switch that connects later (after a controller restart OVS reconnects in 1-8 s) only
        has its program assembled from them. Idle work: steps of about WARM_STEP flows, and
        none while a switch is connecting or being served (a handshake waiting behind bigger
        steps made a 50k-flow bulk install 1.6x slower in the benchmark); up to
        --ovsflow-compile-ahead flows, hosts in name order."""
        while True:
            self._warm_wakeup.wait()
            self._warm_wakeup.clear()
            programs = self.programs
            t0, n, held = time.monotonic(), 0, 0
            budget = getattr(cfg.CONF, "ovsflow_compile_ahead", 200_000)
            for host in programs.hosts_to_warm() if programs is not None else ():
                if held + programs.n_flows >= budget:
                    LOG.info("ovsflow: compile-ahead budget reached (%d flows, --ovsflow-compile-ahead %d): "
                             "other hosts compile when their switches connect", held + programs.n_flows, budget)
                    break
                done = self._warm_host(programs, host)
                if done is None:
                    break  # reloaded meanwhile: start over with the new topology
                held += done
                n += 1
            if n:
                LOG.info("ovsflow: compiled %d hosts' networks (%d flows) ahead of their switches in %.1f ms",
                         n, held, (time.monotonic() - t0) * 1000)

    def _warm_host(self, programs: "Programs", host: str) -> int | None:
        """Compile and encode `host`'s network pieces into the memos in small steps, pausing at
        each (see _idle). The flows prepared, or None if the topology was reloaded meanwhile."""
        hc = HostCompiler(programs.graph, host, programs.memo)
        flows = 0
        for net in hc.networks:
            steps = hc.piece_steps(net, WARM_STEP)  # from the memo, or built into it
            while True:
                if not self._idle(programs):
                    return None
                try:
                    next(steps)
                except StopIteration as done:
                    piece = done.value
                    break
            for part in (piece.tun, piece.int):
                flows += len(part)
                for _ in programs.encoded.get_steps(part, programs._fast, WARM_STEP):
                    if not self._idle(programs):
                        return None
        return flows if self._idle(programs) else None

    def _idle(self, programs: "Programs") -> bool:
        """Yield to everything else, then wait while a switch is being served or is in its
        handshake (one stuck there for HANDSHAKE_WAIT s no longer counts). False if the topology
        was reloaded meanwhile (the work in hand is for an old one)."""
        hub.sleep(0)
        while self._busy or any(time.monotonic() - t < HANDSHAKE_WAIT for t in self._connecting.values()):
            hub.sleep(0.005)
        return self.programs is programs

    def _audit(self, interval: float) -> None:
        """Read every connected switch back now and then, repairing what changed behind our back."""
        while True:
            hub.sleep(interval)
            for dpid, dp in sorted(self.datapaths.items()):
                self._reconcile_safe(dp, "audit")

    # --- topology -------------------------------------------------------------------------------
    def _file_stamp(self) -> tuple | None:
        try:
            st = os.stat(self.path)  # type: ignore[arg-type]
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def _on_hup(self, signum: int, frame: Any) -> None:
        # Only a flag: the handler runs wherever the main thread is, possibly inside the event
        # loop's own bookkeeping (writing to a self-pipe from here wedged eventlet: a barrier reply
        # was never delivered). _watch looks at the flag every HUP_TICK.
        self._hup = True

    def _on_readable(self, fd: int, handle: Any) -> None:
        from eventlet.hubs import trampoline

        while True:
            trampoline(fd, read=True)
            handle()
            self._wake.set()

    def _file_notifier(self) -> Any:
        """An inotify watch on the topology's directory (the file may be replaced by a rename),
        or None where inotify is not available (then polling alone finds changes)."""
        try:
            return DirWatch(os.path.dirname(os.path.abspath(self.path)))  # type: ignore[arg-type]
        except (OSError, AttributeError) as exc:
            LOG.info("ovsflow: no inotify for %s (%s): polling only", self.path, exc)
            return None

    def _watch(self, interval: float) -> None:
        """SIGHUP reloads within HUP_TICK; the file closed after a write or renamed into place
        reloads at once (inotify: both mean the writer is done). Polling every `interval` is the
        fallback: a change found that way loads once the file has been still for one interval,
        so an editor's half-written file is not read (and rejected) on the way."""
        name = os.path.basename(self.path)  # type: ignore[arg-type]

        def read_notify() -> None:
            if name in notify.names():
                self._file_event = True

        notify = self._notify
        if notify is not None:
            self.threads.append(hub.spawn(self._on_readable, notify.fileno(), read_notify))
            self._file_event = True  # look once: events before this thread started were queued or missed
        seen = self._stamp
        next_poll = time.monotonic() + interval
        while True:
            self._wake.wait(timeout=HUP_TICK)
            self._wake.clear()
            if self._hup:
                self._hup = False
                self._file_event = False
                self.reload("SIGHUP")
                seen = self._stamp
            elif self._file_event:
                self._file_event = False
                if self._file_stamp() != self._stamp:
                    self.reload("file change")
                seen = self._stamp
            elif interval and time.monotonic() >= next_poll:
                next_poll = time.monotonic() + interval
                now = self._file_stamp()
                if now != self._stamp and now == seen:
                    self.reload("file change")
                seen = now

    def reload(self, why: str) -> bool:
        """Load the topology; on success push it to the connected switches whose program changed."""
        t0 = time.monotonic()
        self._stamp = self._file_stamp()
        old = self.programs
        try:
            new = Programs(self.path, old)  # type: ignore[arg-type]
            changed = []
            for dpid in sorted(self.datapaths):
                old_target = old.cached(dpid) if old else None
                new_target = new.target(dpid, old)  # only hosts whose inputs changed compile
                if new_target != old_target:
                    changed.append(dpid)
            moves = self._moves(old, new) if old is not None else {}
        except Exception as exc:  # noqa: BLE001 - any failure keeps the running program
            LOG.error("ovsflow: topology %s rejected (%s), keeping the running program: %s",
                      self.path, why, one_line(exc))
            return False
        self.programs = new
        to_update = sorted(set(changed) | set(moves))
        LOG.info("ovsflow: topology %s loaded (%s): %d hosts, %d bridges; %d connected switches "
                 "compiled in %.1f ms, %d to update (%d for moved VMs only)", self.path, why, len(new.topo.hosts),
                 len(new.where), len(self.datapaths), (time.monotonic() - t0) * 1000, len(to_update),
                 len(to_update) - len(changed))
        for dpid in to_update:
            hub.spawn(self._reconcile_safe, self.datapaths[dpid], why, moves.get(dpid))
        self._warm_wakeup.set()
        return True

    def _moves(self, old: Programs, new: Programs) -> dict[int, tuple[tuple[tuple[int, int], ...], tuple[Flow, ...]]]:
        """Per connected br-tun of a network in which VMs moved to another host: the (local VLAN,
        MAC) entries learn() wrote for them, to delete, and (learn networks) entries pointing at
        their new VTEP (HostCompiler.tun_moved). learn() remembers the old VTEP, and OVS may even
        re-apply that from traffic it saw before the move, at its next revalidation (every 0.5 s):
        the VM was unreachable from the other hosts for up to a second after each move."""
        out: dict[int, tuple[set, list]] = {}
        compilers: dict[str, HostCompiler] = {}
        for net_name, moved in RC.moved_macs(old.topo, new.topo).items():
            net = new.topo.networks[net_name]
            for host in new.graph.hosts_of(net_name):
                dpid = new.graph.datapath_ids(host)[1]
                if dpid in self.datapaths:
                    if host not in compilers:
                        compilers[host] = HostCompiler(new.graph, host)
                    hc = compilers[host]
                    forget, hints = out.setdefault(dpid, (set(), []))
                    forget.update((hc.vlans[net_name], mac) for mac in moved)
                    hints.extend(hc.tun_moved(net, moved))
        return {dpid: (tuple(sorted(f)), tuple(h)) for dpid, (f, h) in out.items()}

    # --- switches --------------------------------------------------------------------------------
    @set_ev_cls(ofp_event.EventOFPStateChange, [HANDSHAKE_DISPATCHER, CONFIG_DISPATCHER, MAIN_DISPATCHER, DEAD_DISPATCHER])
    def _handshakes(self, ev: Any) -> None:
        """Switches between hello and MAIN: background compiling waits for them (see _idle)."""
        if ev.state in (HANDSHAKE_DISPATCHER, CONFIG_DISPATCHER):
            self._connecting.setdefault(ev.datapath, time.monotonic())
        else:
            self._connecting.pop(ev.datapath, None)

    @set_ev_cls(ofp_event.EventOFPStateChange, [MAIN_DISPATCHER, DEAD_DISPATCHER])
    def _state_change(self, ev: Any) -> None:
        dp = ev.datapath
        if dp.id is None:
            return
        if ev.state == MAIN_DISPATCHER:
            self.datapaths[dp.id] = dp
            known = self.programs is not None and dp.id in self.programs.where
            version = {ofproto_v1_3.OFP_VERSION: "1.3", ofproto_v1_4.OFP_VERSION: "1.4"}.get(dp.ofproto.OFP_VERSION)
            LOG.info("ovsflow: switch %016x (%s) connected from %s, OpenFlow %s", dp.id,
                     self.programs.label(dp.id) if known else "not in topology", dp.address, version)  # type: ignore[union-attr]
            hub.spawn(self._reconcile_safe, dp, "connect")
        elif self.datapaths.get(dp.id) is dp:
            del self.datapaths[dp.id]
            self.synced.pop(dp.id, None)
            LOG.info("ovsflow: switch %016x disconnected", dp.id)
            for (dpid, _), w in list(self.waiters.items()):
                if dpid == dp.id:
                    w.error = "switch disconnected"
                    w.event.set()

    @set_ev_cls([ofp_event.EventOFPFlowStatsReply, ofp_event.EventOFPGroupDescStatsReply], MAIN_DISPATCHER)
    def _multipart_reply(self, ev: Any) -> None:
        msg = ev.msg
        w = self.waiters.get((msg.datapath.id, msg.xid))
        if w is not None:
            w.body.extend(msg.body)
            if not msg.flags & msg.datapath.ofproto.OFPMPF_REPLY_MORE:
                w.event.set()

    @set_ev_cls(ofp_event.EventOFPBarrierReply, MAIN_DISPATCHER)
    def _barrier_reply(self, ev: Any) -> None:
        w = self.waiters.get((ev.msg.datapath.id, ev.msg.xid))
        if w is not None:
            w.event.set()

    @set_ev_cls(ofp_event.EventOFPErrorMsg, [CONFIG_DISPATCHER, MAIN_DISPATCHER])
    def _error(self, ev: Any) -> None:
        msg = ev.msg
        text = f"OpenFlow error type={msg.type} code={msg.code} xid={msg.xid}"
        w = self.waiters.get((msg.datapath.id, msg.xid))
        if w is not None:
            w.error = text
            w.event.set()
        else:
            self.async_errors.setdefault(msg.datapath.id, []).append(text)

    def _request(self, dp: Any, msg: Any) -> list[Any]:
        """Send a request and wait for its (complete, multipart) reply or barrier reply."""
        return self._await(dp, msg, self._send_request(dp, msg))

    def _send_request(self, dp: Any, msg: Any) -> _Waiter:
        dp.set_xid(msg)
        w = _Waiter()
        self.waiters[(dp.id, msg.xid)] = w
        try:
            dp.send_msg(msg)
        except BaseException:
            self.waiters.pop((dp.id, msg.xid), None)
            raise
        return w

    def _await(self, dp: Any, msg: Any, w: _Waiter) -> list[Any]:
        try:
            if not w.event.wait(timeout=REQUEST_TIMEOUT):
                raise TimeoutError(f"no reply to {type(msg).__name__} within {REQUEST_TIMEOUT:.0f} s")
            if w.error:
                raise RuntimeError(w.error)
            return w.body
        finally:
            self.waiters.pop((dp.id, msg.xid), None)

    # --- reconcile -------------------------------------------------------------------------------
    def _reconcile_safe(self, dp: Any, why: str, moves: tuple | None = None) -> None:
        try:
            self.reconcile(dp, why, moves)
        except Exception as exc:  # noqa: BLE001 - one switch's failure must not stop the others
            LOG.error("ovsflow: switch %016x: reconcile (%s) failed: %s", dp.id, why, one_line(exc))

    def reconcile(self, dp: Any, why: str, moves: tuple | None = None) -> RC.Plan | None:
        """Make switch `dp` hold its target. If this connection last confirmed an earlier target,
        send the difference between the two (an update: nothing to read); otherwise (connect,
        audit, an earlier failure) read the switch's flows and groups back and diff against them."""
        lock = self.locks.setdefault(dp.id, hub.BoundedSemaphore(1))
        self._busy += 1
        try:
            with lock:
                return self._reconcile_locked(dp, why, moves)
        finally:
            self._busy -= 1

    def _reconcile_locked(self, dp: Any, why: str, moves: tuple | None) -> RC.Plan | None:
        tc = time.monotonic()
        if self.programs is None or dp.id not in self.programs.where:
            LOG.warning("ovsflow: switch %016x is not in the topology: left untouched", dp.id)
            return None
        confirmed = self.synced.pop(dp.id, None)
        if confirmed is not None and confirmed[0] is dp and why != "audit":
            target = self.programs.target(dp.id)
            t0 = t1 = time.monotonic()
            plan, how = self._delta(confirmed[1], target), "against the program this switch confirmed"
            n_read = n_decoded = 0
        else:
            # Ask for the switch's flows first: it dumps them while we compile (if we must).
            pending = self._ask_flows_and_groups(dp)
            try:
                target = self.programs.target(dp.id)
                t0 = time.monotonic()
                plan, n_read, n_decoded, t1 = self._read_and_diff(dp, target, pending)
            finally:  # a failed compile or read leaves no waiter behind
                for m, _ in pending:
                    self.waiters.pop((dp.id, m.xid), None)
            how = "against the switch's flows"
        if moves:
            plan = replace(plan, forget=moves[0], hints=moves[1])
        t2 = time.monotonic()
        if not plan.empty:
            self._apply(dp, plan, target)
        t3 = time.monotonic()
        if self.datapaths.get(dp.id) is dp:
            self.synced[dp.id] = (dp, target)
        LOG.info("ovsflow: switch %016x (%s) %s: %s %s flows=%d; program %.1f ms, read %.1f ms (%d entries, %d decoded), "
                 "diff %.1f ms, bundle %.1f ms, total %.1f ms; diffed %s", dp.id, target.label, why,
                 "in sync," if plan.empty else "updated,", plan.summary(), len(target.flows),
                 (t0 - tc) * 1000, (t1 - t0) * 1000, n_read, n_decoded, (t2 - t1) * 1000, (t3 - t2) * 1000,
                 (t3 - tc) * 1000, how)
        return plan

    @staticmethod
    def _delta(old: Target, new: Target) -> RC.Plan:
        """The plan that turns `old` (what the switch confirmed) into `new`, by wire keys."""
        added = [f for k, f in new.keys.items() if k not in old.keys]
        removed = [f for k, f in old.keys.items() if k not in new.keys]
        plan = RC.plan(added, removed, new.groups, old.groups)
        return replace(plan, unchanged=len(new.keys) - len(added))

    def _ask_flows_and_groups(self, dp: Any) -> list[tuple[Any, _Waiter]]:
        ofp, parser = dp.ofproto, dp.ofproto_parser
        msgs = [parser.OFPFlowStatsRequest(dp, 0, ofp.OFPTT_ALL, ofp.OFPP_ANY, ofp.OFPG_ANY, COOKIE_BASE, COOKIE_MASK),
                parser.OFPGroupDescStatsRequest(dp, 0)]
        return [(m, self._send_request(dp, m)) for m in msgs]

    def _read_and_diff(self, dp: Any, target: Target, pending: list[tuple[Any, _Waiter]]) -> tuple[RC.Plan, int, int, float]:
        ofp, parser = dp.ofproto, dp.ofproto_parser
        stats, gdesc = [self._await(dp, m, w) for m, w in pending]
        t_read = time.monotonic()
        # Entries whose bytes are exactly a desired flow's are unchanged; learned flows are
        # counted, never decoded; only the rest is decoded and diffed field by field.
        matched: set[bytes] = set()
        learned = 0
        rest = []
        for e in stats:
            if isinstance(e, R.LazyFlowStats):
                cookie, k = R.raw_entry_key(e.buf, e.offset)
                if cookie == COOKIE_LEARNED:
                    learned += 1
                    continue
                if k in target.keys and k not in matched:
                    matched.add(k)
                    continue
            rest.append(e)
        try:
            actual = R.flows_from_stats(ofp, parser, rest)
        except (R.EncodeError, KeyError) as exc:
            # An ovsflow-cookie flow we cannot read: someone wrote it by hand. Refuse rather
            # than guess: the switch keeps what it has and the operator learns why.
            raise RuntimeError(f"cannot read the switch's ovsflow flows: {exc}") from exc
        desired = [f for k, f in target.keys.items() if k not in matched] if matched else target.flows
        groups = [R.group_from_desc(ofp, g) for g in gdesc]
        plan = RC.plan(desired, actual, target.groups, groups)
        plan = replace(plan, unchanged=plan.unchanged + len(matched), kept_learned=plan.kept_learned + learned)
        return plan, len(stats), len(rest), t_read

    def _apply(self, dp: Any, plan: RC.Plan, target: Target) -> None:
        """Send the plan as one bundle, then a barrier; raise if the switch rejected it."""
        bundle_id = next(self.bundle_ids) & 0xFFFFFFFF
        fast = R.FastEncoder(dp)  # flow-mods: same bytes as Ryu's objects, ~10x cheaper
        self.async_errors.pop(dp.id, None)
        buf = bytearray()

        def put(data: bytes | bytearray) -> None:
            nonlocal buf
            buf += data
            if len(buf) >= SEND_CHUNK:
                dp.send(bytes(buf))
                buf = bytearray()

        def put_msg(msg: Any) -> None:
            dp.set_xid(msg)
            msg.serialize()
            put(msg.buf)

        tails = target.add_tails
        changes = RC.ordered_changes(plan)
        LOG.info("ovsflow: switch %016x (%s): sending bundle %d with %d changes", dp.id, target.label,
                 bundle_id, len(changes))
        put_msg(R.bundle_ctrl(dp, bundle_id, "open"))
        for kind, command, item in changes:
            if kind == "learned":
                vlan, mac = item  # type: ignore[misc]
                dp.xid = xid = (dp.xid + 1) & dp.ofproto.MAX_XID
                tail = fast.forget_tail(LEARN_TABLE, COOKIE_LEARNED, PRIO_LEARNED, vlan, mac)
                put(fast.bundle_add(bundle_id, fast.with_header(tail, xid), xid))
            elif kind == "flow":
                dp.xid = xid = (dp.xid + 1) & dp.ofproto.MAX_XID  # what Datapath.set_xid does
                tail = tails.get(id(item)) if command == "add" else None
                if tail is None:
                    tail = fast.flow_mod_tail(item, command, canonical=True)  # type: ignore[arg-type]
                put(fast.bundle_add(bundle_id, fast.with_header(tail, xid), xid))
            else:
                put_msg(R.bundle_add(dp, bundle_id, R.group_mod(dp, item, command)))  # type: ignore[arg-type]
        put_msg(R.bundle_ctrl(dp, bundle_id, "commit"))
        if buf:
            dp.send(bytes(buf))
        self._request(dp, dp.ofproto_parser.OFPBarrierRequest(dp))
        errors = self.async_errors.pop(dp.id, [])
        if errors:
            raise RuntimeError(f"switch rejected the bundle (nothing applied): {'; '.join(errors[:3])}")
