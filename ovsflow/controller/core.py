"""The controller's decisions, without Ryu, sockets or threads: a core the shell drives.

It keeps, per connected switch, what that connection confirmed last; turns a reload into the
switches to update (and the VMs that moved); turns one reconcile into the bytes of one atomic,
ordered bundle; and decides when background compiling may run. Time comes from the `clock` it is
given; it never sends anything: it returns requests and bundles, and the shell sends them and
reports back (replies, success or failure).

A reconcile (`Job`) either reads the switch back (connect, audit, after a failure: the shell sends
`flows_request()` and `groups_request()`, the core compiles meanwhile, the replies go to `diff_replies`) or, when this
connection confirmed an earlier target, diffs the two targets without reading anything.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace

from .. import reconcile as RC
from ..compiler import LEARN_TABLE, PRIO_LEARNED, HostCompiler
from ..flow import Action, Flow, GroupEntry
from ..openflow import bundle as B
from ..openflow import decode as D
from ..openflow.encode import (
    OFP13,
    OFP14,
    EncodeError,
    Encoder,
    flow_stats_request,
    group_desc_request,
)
from ..program import COOKIE_BASE, COOKIE_LEARNED, COOKIE_MASK
from .programs import Programs, Target
from .stats import Stats, SwitchRow

LOG = logging.getLogger("ovsflow.app")
SEND_CHUNK = 1 << 20  # bytes of a bundle handed to the shell at once
HANDSHAKE_WAIT = 10.0  # seconds: a switch longer in its handshake no longer holds background work
WARM_STEP = 250  # flows per step of background compiling (~10-40 ms here)
DEFAULT_COMPILE_AHEAD = 200_000
Moves = tuple[tuple[tuple[int, int], ...], tuple[Flow, ...]]  # (forget (VLAN, MAC), hint flows)


def one_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return f"{type(exc).__name__}: " + ("; ".join(lines) if lines else repr(exc))


@dataclass
class Switch:
    dpid: int
    conn: Hashable  # the shell's connection object: a reconnect is a new one
    version: int
    confirmed: Target | None = None  # what this connection confirmed last (bundle + barrier, no error)
    pending_since: float | None = None  # clock() of the oldest change not yet confirmed (connect, reload)


@dataclass(frozen=True)
class Update:
    """A switch the reload changed: reconcile `conn` (with these moved VMs, if any)."""

    dpid: int
    conn: Hashable
    moves: Moves | None


class Core:
    def __init__(self, path: str | None, clock: Callable[[], float], compile_ahead: int = DEFAULT_COMPILE_AHEAD,
                 wall: Callable[[], float] = time.time) -> None:
        self.path = path
        self.clock = clock
        self.wall = wall  # only for the "last in sync" times the metrics show (Unix seconds)
        self.stats = Stats()
        self.compile_ahead_budget = compile_ahead
        self.programs: Programs | None = None
        self.switches: dict[int, Switch] = {}
        self.busy = 0  # reconciles in progress: background compiling waits for them
        self.handshakes: dict[Hashable, float] = {}  # connections between hello and MAIN (since)
        self._bundle_ids = 0
        self._encoders = {v: Encoder(v) for v in (OFP13, OFP14)}

    # --- switches --------------------------------------------------------------------------------
    def handshake(self, conn: Hashable, started: bool) -> None:
        if started:
            self.handshakes.setdefault(conn, self.clock())
        else:
            self.handshakes.pop(conn, None)

    def connected(self, dpid: int, conn: Hashable, version: int, ports: Mapping[str, int] | None = None) -> str:
        """Register a switch in MAIN state; the label the shell logs it with. `ports`: its OpenFlow
        ports (name -> number, from port-desc), which the numbering memory takes as they are
        (Programs.remember_ports): after a controller restart the flows use the numbers the
        switch already has instead of renumbering it."""
        self.switches[dpid] = Switch(dpid, conn, version, pending_since=self.clock())
        self.stats.connects += 1
        if ports and self.programs is not None and self.programs.remember_ports(dpid, ports):
            LOG.info("ovsflow: switch %016x: its port numbers differ from a fresh allocation: kept", dpid)
        known = self.programs is not None and dpid in self.programs.where
        return self.programs.label(dpid) if known and self.programs else "not in topology"

    def disconnected(self, dpid: int, conn: Hashable) -> bool:
        """Forget the switch if `conn` is still its connection; True if it was."""
        sw = self.switches.get(dpid)
        if sw is None or sw.conn is not conn:
            return False
        del self.switches[dpid]
        self.stats.disconnects += 1
        return True

    def switch_rows(self) -> list[SwitchRow]:
        """Every switch of the topology (and any connected one outside it), for per-switch gauges."""
        rows = []
        programs = self.programs
        known = programs.where if programs is not None else {}
        for dpid in sorted(set(known) | set(self.switches)):
            host, role = known.get(dpid, ("", ""))
            target = programs.cached(dpid) if programs is not None else None
            rows.append(SwitchRow(dpid, host, f"br-{role}" if role else "", dpid in self.switches,
                                  len(target.flows) if target else None, len(target.groups) if target else None,
                                  self.stats.last_sync.get(dpid)))
        return rows

    def idle(self) -> bool:
        """True when background work may run: no reconcile in progress, no handshake pending
        (one stuck there for HANDSHAKE_WAIT s no longer counts)."""
        now = self.clock()
        return not self.busy and not any(now - t < HANDSHAKE_WAIT for t in self.handshakes.values())

    # --- topology --------------------------------------------------------------------------------
    def reload(self, why: str) -> list[Update] | None:
        """Load the topology; None if it is refused (one log line, the running program stays),
        else the connected switches whose program changed or whose network had VMs move."""
        t0 = self.clock()
        old = self.programs
        try:
            if self.path is None:
                raise ValueError("no topology file given")
            new = Programs(self.path, old)
            changed = []
            for dpid in sorted(self.switches):
                old_target = old.cached(dpid) if old else None
                if new.target(dpid, old) != old_target:  # only hosts whose inputs changed compile
                    changed.append(dpid)
            moves = self._moves(old, new) if old is not None else {}
        except Exception as exc:
            self.stats.reloads_refused += 1
            LOG.error("ovsflow: topology %s rejected (%s), keeping the running program: %s",
                      self.path, why, one_line(exc), extra={"event": "reload_refused", "trigger": why})
            return None
        self.programs = new
        to_update = sorted(set(changed) | set(moves))
        self.stats.reloads_accepted += 1
        self.stats.observe_compile("reload", self.clock() - t0)
        for d in to_update:
            sw = self.switches[d]
            if sw.pending_since is None:  # an older change still pending keeps its time
                sw.pending_since = t0
        LOG.info("ovsflow: topology %s loaded (%s): %d hosts, %d bridges; %d connected switches "
                 "compiled in %.1f ms, %d to update (%d for moved VMs only)", self.path, why, len(new.topo.hosts),
                 len(new.where), len(self.switches), (self.clock() - t0) * 1000, len(to_update),
                 len(to_update) - len(changed),
                 extra={"event": "reload_accepted", "trigger": why, "changes": len(to_update),
                        "ms": round((self.clock() - t0) * 1000, 3)})
        return [Update(d, self.switches[d].conn, moves.get(d)) for d in to_update]

    def _moves(self, old: Programs, new: Programs) -> dict[int, Moves]:
        """Per connected br-tun of a network in which VMs moved to another host: the (local VLAN,
        MAC) entries learn() wrote for them, to delete, and (learn networks) entries pointing at
        their new VTEP (HostCompiler.tun_moved). learn() remembers the old VTEP, and OVS may even
        re-apply that from traffic it saw before the move, at its next revalidation (every 0.5 s):
        without them the VM was unreachable from the other hosts for up to a second after a move."""
        out: dict[int, tuple[set[tuple[int, int]], list[Flow]]] = {}
        compilers: dict[str, HostCompiler] = {}
        for net_name, moved in RC.moved_macs(old.topo, new.topo).items():
            self.stats.moved_vms += len(moved)
            net = new.topo.networks[net_name]
            for host in new.graph.hosts_of(net_name):
                dpid = new.graph.datapath_ids(host)[1]
                if dpid in self.switches:
                    if host not in compilers:
                        compilers[host] = HostCompiler(new.graph, host)
                    hc = compilers[host]
                    forget, hints = out.setdefault(dpid, (set(), []))
                    forget.update((hc.vlans[net_name], mac) for mac in moved)
                    hints.extend(hc.tun_moved(net, moved))
        return {dpid: (tuple(sorted(f)), tuple(h)) for dpid, (f, h) in out.items()}

    # --- reconcile -------------------------------------------------------------------------------
    def begin(self, dpid: int, conn: Hashable, why: str, moves: Moves | None = None) -> Job | None:
        """Start reconciling switch `dpid` on `conn`; None (and a log line) if it is not in the
        topology or no longer connected there. The caller must `end()` the job, also on failure."""
        sw = self.switches.get(dpid)
        if sw is None or sw.conn is not conn:
            return None
        if self.programs is None or dpid not in self.programs.where:
            LOG.warning("ovsflow: switch %016x is not in the topology: left untouched", dpid)
            return None
        confirmed, sw.confirmed = sw.confirmed, None  # until this one succeeds, read back next time
        self.busy += 1
        return Job(self, sw, self.programs, why, moves, None if why == "audit" else confirmed)

    def end(self, job: Job) -> None:
        self.busy -= 1

    def failed(self, dpid: int, why: str, exc: BaseException) -> None:
        """A reconcile the shell could not finish (the switch keeps what it had; read back next time)."""
        self.stats.reconcile_failures += 1
        LOG.error("ovsflow: switch %016x: reconcile (%s) failed: %s", dpid, why, one_line(exc),
                  extra={"event": "reconcile_failed", "dpid": f"{dpid:016x}", "trigger": why})

    def next_bundle_id(self) -> int:
        self._bundle_ids = (self._bundle_ids + 1) & 0xFFFFFFFF
        return self._bundle_ids

    def encoder(self, version: int) -> Encoder:
        return self._encoders[version]

    # --- compile ahead ---------------------------------------------------------------------------
    def compile_ahead(self) -> Iterator[None]:
        """Compile and encode, ahead, the network pieces of hosts no switch has asked for yet, so
        a switch that connects later (after a controller restart OVS reconnects in 1-8 s) only has
        its program assembled from them. Yields after each step of about WARM_STEP flows: the
        shell runs the next step only when `idle()` (a handshake waiting behind bigger steps made
        a 50k-flow bulk install 1.6x slower). Hosts in name order, until the budget of held flows;
        stops early when a reload replaced the topology (the shell starts it again)."""
        programs = self.programs
        if programs is None:
            return
        t0, n, held = self.clock(), 0, 0
        budget = self.compile_ahead_budget
        for host in programs.hosts_to_warm():
            if held + programs.n_flows >= budget:
                LOG.info("ovsflow: compile-ahead budget reached (%d flows, --ovsflow-compile-ahead %d): "
                         "other hosts compile when their switches connect", held + programs.n_flows, budget)
                break
            hc = HostCompiler(programs.graph, host, programs.memo)
            for net in hc.networks:
                steps = hc.piece_steps(net, WARM_STEP)  # from the memo, or built into it
                while True:
                    yield
                    if self.programs is not programs:
                        return
                    try:
                        next(steps)
                    except StopIteration as done:
                        piece = done.value
                        break
                for part in (piece.tun, piece.int):
                    held += len(part)
                    for _ in programs.encoded.get_steps(part, programs.encoder, WARM_STEP):
                        yield
                        if self.programs is not programs:
                            return
            n += 1
        if n:
            LOG.info("ovsflow: compiled %d hosts' networks (%d flows) ahead of their switches in %.1f ms",
                     n, held, (self.clock() - t0) * 1000)


class Job:
    """One reconcile of one switch; see Core.begin."""

    def __init__(self, core: Core, sw: Switch, programs: Programs, why: str, moves: Moves | None,
                 confirmed: Target | None) -> None:
        self.core, self.sw, self.programs, self.why, self.moves = core, sw, programs, why, moves
        self.confirmed = confirmed
        self.read = confirmed is None  # whether the switch must be read back first
        self.target: Target | None = None
        self.plan: RC.Plan | None = None
        self.n_read = self.n_decoded = 0
        self.n_changes = 0  # messages in the bundle (bundle() counts them)
        self.times = [core.clock()]  # start, compiled, read, diffed, sent

    def flows_request(self, xid: int) -> bytes:
        """Ask for the switch's ovsflow flows (by cookie: other flows are not ovsflow's business)."""
        return flow_stats_request(self.sw.version, xid, COOKIE_BASE, COOKIE_MASK)

    def groups_request(self, xid: int) -> bytes:
        return group_desc_request(self.sw.version, xid)

    def compile(self) -> Target:
        """The target (compiled now if it is not yet): the shell calls it while the switch dumps."""
        if self.target is None:
            target = self.programs.target(self.sw.dpid)
            assert target is not None  # begin() checked the switch is in this topology
            self.target = target
            self.times.append(self.core.clock())
            self.core.stats.observe_compile("switch", self.times[-1] - self.times[0])
        return self.target

    def diff(self, flow_replies: Sequence[bytes] = (), group_replies: Sequence[bytes] = ()) -> RC.Plan:
        """The plan: against the replies if the switch was read, else against what it confirmed."""
        target = self.compile()
        t_read = self.core.clock()
        if self.confirmed is not None:
            old = self.confirmed
            added = [f for k, f in target.keys.items() if k not in old.keys]
            removed = [f for k, f in old.keys.items() if k not in target.keys]
            plan = RC.plan(added, removed, target.groups, old.groups)
            plan = replace(plan, unchanged=len(target.keys) - len(added))
        else:
            plan = self._against_switch(target, flow_replies, group_replies)
        if self.moves:
            plan = replace(plan, forget=self.moves[0], hints=self.moves[1])
        self.plan = plan
        self.times += [t_read, self.core.clock()]
        return plan

    def _against_switch(self, target: Target, flow_replies: Sequence[bytes], group_replies: Sequence[bytes]) -> RC.Plan:
        # Entries whose bytes are exactly a desired flow's are unchanged; learned flows are
        # counted, never decoded; only the rest is decoded and diffed field by field.
        matched: set[bytes] = set()
        learned = 0
        rest: list[tuple[bytes, int]] = []
        for msg in flow_replies:
            for off in D.multipart(msg)[2]:
                self.n_read += 1
                cookie, k = D.entry_key(msg, off)
                if cookie == COOKIE_LEARNED:
                    learned += 1
                elif k in target.keys and k not in matched:
                    matched.add(k)
                else:
                    rest.append((msg, off))
        self.n_decoded = len(rest)
        try:
            cache: dict[bytes, Action] = {}
            actual = [D.flow_from_entry(m, off, cache) for m, off in rest]
            groups: list[GroupEntry] = [g for msg in group_replies for g in D.groups_from_reply(msg)]
        except (EncodeError, KeyError, IndexError) as exc:
            # An ovsflow-cookie flow we cannot read: someone wrote it by hand. Refuse rather than
            # guess: the switch keeps what it has and the operator learns why.
            raise RuntimeError(f"cannot read the switch's ovsflow flows: {exc}") from exc
        desired = [f for k, f in target.keys.items() if k not in matched] if matched else list(target.flows)
        plan = RC.plan(desired, actual, target.groups, groups)
        return replace(plan, unchanged=plan.unchanged + len(matched), kept_learned=plan.kept_learned + learned)

    def bundle(self, next_xid: Callable[[], int]) -> Iterator[bytes]:
        """The plan as one bundle (open, one add per change, commit), in chunks of about
        SEND_CHUNK bytes; nothing if the plan is empty. The shell sends a barrier after it."""
        plan, target = self.plan, self.compile()
        assert plan is not None, "diff() first"
        if plan.empty:
            return
        v = self.sw.version
        enc = self.core.encoder(v)
        bundle_id = self.core.next_bundle_id()
        changes = RC.ordered_changes(plan)
        self.n_changes = len(changes)
        LOG.info("ovsflow: switch %016x (%s): sending bundle %d with %d changes", self.sw.dpid, target.label,
                 bundle_id, len(changes))
        buf = bytearray(B.control(v, bundle_id, "open", next_xid()))
        tails = target.add_tails
        for kind, command, item in changes:
            xid = next_xid()
            if kind == "group":
                inner = enc.group_mod(item, command, xid)  # type: ignore[arg-type]
            elif kind == "learned":
                vlan, mac = item  # type: ignore[misc]
                inner = enc.with_header(enc.forget_tail(LEARN_TABLE, COOKIE_LEARNED, PRIO_LEARNED, vlan, mac), xid)
            else:
                tail = tails.get(id(item)) if command == "add" else None
                if tail is None:
                    tail = enc.flow_mod_tail(item, command, canonical=True)  # type: ignore[arg-type]
                inner = enc.with_header(tail, xid)
            buf += B.add(v, bundle_id, inner, xid)
            if len(buf) >= SEND_CHUNK:
                yield bytes(buf)
                buf = bytearray()
        buf += B.control(v, bundle_id, "commit", next_xid())
        stats = self.core.stats
        stats.bundles += 1
        stats.group_mods += sum(1 for kind, _, _ in changes if kind == "group")
        stats.flow_mods += sum(1 for kind, _, _ in changes if kind != "group")
        yield bytes(buf)

    def done(self) -> RC.Plan:
        """The switch confirmed the plan (barrier, no error): remember what it holds, log it."""
        plan, target = self.plan, self.compile()
        assert plan is not None
        if self.core.switches.get(self.sw.dpid) is self.sw:
            self.sw.confirmed = target
        tc, t0, t1, t2 = self.times[:4]
        t3 = self.core.clock()
        self._count(plan, t3)
        how = "against the switch's flows" if self.confirmed is None else "against the program this switch confirmed"
        LOG.info("ovsflow: switch %016x (%s) %s: %s %s flows=%d; program %.1f ms, read %.1f ms (%d entries, %d decoded), "
                 "diff %.1f ms, bundle %.1f ms, total %.1f ms; diffed %s", self.sw.dpid, target.label, self.why,
                 "in sync," if plan.empty else "updated,", plan.summary(), len(target.flows),
                 (t0 - tc) * 1000, (t1 - t0) * 1000, self.n_read, self.n_decoded, (t2 - t1) * 1000, (t3 - t2) * 1000,
                 (t3 - tc) * 1000, how,
                 extra={"event": "reconciled", "dpid": f"{self.sw.dpid:016x}", "switch": target.label, "trigger": self.why,
                        "changes": self.n_changes, "flows": len(target.flows), "ms": round((t3 - tc) * 1000, 3)})
        return plan

    def _count(self, plan: RC.Plan, now: float) -> None:
        """The metrics of a confirmed reconcile; drift found by an audit is a warning."""
        stats, sw = self.core.stats, self.sw
        stats.last_sync[sw.dpid] = self.core.wall()
        trigger = "audit" if self.why == "audit" else "connect" if self.why == "connect" else "reload"
        since = self.times[0] if trigger == "audit" or sw.pending_since is None else sw.pending_since
        if not plan.empty:
            stats.observe_latency(trigger, now - since)
        sw.pending_since = None
        if self.why == "audit":
            stats.audits += 1
            if not plan.empty:
                stats.audit_drift += 1
                stats.audit_drift_changes += self.n_changes
                label = self.compile().label
                LOG.warning("ovsflow: switch %016x (%s): audit found drift, repaired: %s", sw.dpid, label, plan.summary(),
                            extra={"event": "drift", "dpid": f"{sw.dpid:016x}", "switch": label,
                                   "changes": self.n_changes})
