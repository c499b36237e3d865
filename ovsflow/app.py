"""The live controller: `ryu-manager ovsflow.app --ovsflow-topology FILE`.

It compiles the topology with the same compiler `ovsflow render` uses, and keeps every switch it
knows (by datapath id: BridgeProgram.datapath_id) equal to that program:

- on connect it reads the switch's ovsflow flows (cookie-filtered) and groups, diffs them against
  the program and sends only the difference, as one atomic, ordered bundle (OpenFlow 1.4; the ONF
  extension on 1.3) followed by a barrier. A switch that is already right gets no flow-mod at all,
  so a controller restart costs no traffic: bridges are fail_mode secure and keep their flows;
- on SIGHUP or when the topology file changes it reloads: an invalid file is rejected with one
  log line and the running program stays; a valid one is pushed, concurrently, to the connected
  switches whose program changed (the others get nothing). Only the networks the edit touched are
  compiled and encoded again, and a switch that confirmed its previous program on this connection
  gets the difference between the two programs without being read back;
- a VM that moved to another host is forgotten by learn() on the switches of its network (its
  learned entries are deleted in the same bundle) and, on learn networks, hinted: an entry with
  learn()'s cookie sends its frames to the new VTEP at once;
- hosts no switch has asked for yet are compiled in the background while the app is idle, so
  switches that reconnect after a controller restart find their program ready;
- with --ovsflow-audit-interval it reads every switch back now and then and repairs drift;
- it never touches flows without the ovsflow cookie, and keeps the flows learn() added (except
  those of a moved VM, as above).

This module is the Ryu shell: events, connections, requests and their replies, barriers, green
threads. What to send and when is decided by `ovsflow.controller.core`, which has no Ryu in it.
The topology comes from `--ovsflow-topology` (or `ovsflow_topology` in a `--config-file`), else the
environment variable OVSFLOW_TOPOLOGY.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from typing import Any

from . import ryu_compat

ryu_compat.install()  # no-op under ryu-manager with the .pth; covers imports in other processes

from ryu import cfg  # noqa: E402
from ryu.base import app_manager  # noqa: E402
from ryu.controller import ofp_event  # noqa: E402
from ryu.controller.handler import (  # noqa: E402
    CONFIG_DISPATCHER,
    DEAD_DISPATCHER,
    HANDSHAKE_DISPATCHER,
    MAIN_DISPATCHER,
    set_ev_cls,
)
from ryu.lib import hub  # noqa: E402
from ryu.ofproto import ofproto_v1_3, ofproto_v1_4  # noqa: E402

from .controller.core import DEFAULT_COMPILE_AHEAD, Core, Job, Moves  # noqa: E402
from .controller.tap import ReplyTap  # noqa: E402
from .controller.watch import TopologyWatch  # noqa: E402
from .filewatch import DirWatch  # noqa: E402
from .openflow.encode import barrier_request, echo_request  # noqa: E402

ryu_compat.register_flags(cfg.CONF, cli=False)  # config-file/env use when the .pth did not run
LOG = logging.getLogger("ovsflow.app")
ENV_TOPOLOGY = "OVSFLOW_TOPOLOGY"
REQUEST_TIMEOUT = 60.0
TICK = 0.01  # seconds: how often the watcher looks for SIGHUP (a flag the handler sets) and polls


def _port_name(name: bytes | str) -> str:
    return name.rstrip(b"\0").decode("utf-8", "replace") if isinstance(name, bytes) else name


def topology_path() -> str | None:
    return getattr(cfg.CONF, "ovsflow_topology", None) or os.environ.get(ENV_TOPOLOGY) or None


class _Waiter:
    """A request in flight: its reply messages (bytes), or an error."""

    def __init__(self) -> None:
        self.event = hub.Event()
        self.replies: list[bytes] = []
        self.error: str | None = None


class OvsflowApp(app_manager.RyuApp):
    """Programs br-int/br-tun of every host in the topology by diffing, in bundles."""

    OFP_VERSIONS = (ofproto_v1_3.OFP_VERSION, ofproto_v1_4.OFP_VERSION)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if getattr(cfg.CONF, "ovsflow_log_json", False):
            from .logjson import install

            install()
        path = topology_path()
        budget = getattr(cfg.CONF, "ovsflow_compile_ahead", DEFAULT_COMPILE_AHEAD)
        self.core = Core(path, time.monotonic, budget)
        self.datapaths: dict[int, Any] = {}
        self.locks: dict[int, Any] = {}
        self.waiters: dict[tuple[int, int], _Waiter] = {}
        self.taps: dict[int, ReplyTap] = {}
        self.async_errors: dict[int, list[str]] = {}
        self._warm_wakeup = hub.Event()
        self._wake = hub.Event()  # set by the inotify reader: the watcher acts at once
        self.watch: TopologyWatch | None = None
        self._notify: DirWatch | None = None
        if path is None:
            LOG.error("ovsflow: no topology: pass --ovsflow-topology FILE (or ovsflow_topology in a "
                      "--config-file, or $%s); switches will be left untouched", ENV_TOPOLOGY)
        else:
            interval = getattr(cfg.CONF, "ovsflow_poll_interval", 0.05) or 0.0
            self.watch = TopologyWatch(path, interval, time.monotonic)
            self._notify = self._file_notifier(path)  # before the first load: no edit slips between
            self.reload("start")
        try:
            signal.signal(signal.SIGHUP, self._on_hup)
        except ValueError:  # not the main thread (imported elsewhere): file watching still works
            pass

    def start(self) -> Any:
        thread = super().start()
        port = getattr(cfg.CONF, "ovsflow_metrics_port", 0) or 0
        if port:
            self.threads.append(self._serve_metrics(getattr(cfg.CONF, "ovsflow_metrics_address", "127.0.0.1"), port))
        if self.watch is not None:
            self.threads.append(hub.spawn(self._watch))
            self.threads.append(hub.spawn(self._warm))
            audit = getattr(cfg.CONF, "ovsflow_audit_interval", 0.0) or 0
            if audit > 0:
                self.threads.append(hub.spawn(self._audit, audit))
        return thread

    def _serve_metrics(self, address: str, port: int) -> Any:
        """Prometheus' text format at http://ADDRESS:PORT/metrics (any path), in a green thread."""
        import eventlet
        import eventlet.wsgi
        from prometheus_client import make_wsgi_app

        from .metrics import registry

        sock = eventlet.listen((address, port))
        LOG.info("ovsflow: metrics on http://%s:%d/metrics", address, sock.getsockname()[1])
        return hub.spawn(eventlet.wsgi.server, sock, make_wsgi_app(registry(self.core)), log_output=False)

    # --- topology -------------------------------------------------------------------------------
    def reload(self, why: str) -> bool:
        """Load the topology; on success reconcile the connected switches whose program changed."""
        assert self.watch is not None
        self.watch.loaded()
        updates = self.core.reload(why)
        if updates is None:
            return False
        for u in updates:
            hub.spawn(self._reconcile_safe, u.conn, why, u.moves)
        self._warm_wakeup.set()
        return True

    def _on_hup(self, signum: int, frame: Any) -> None:
        # Only a flag: the handler runs wherever the main thread is, possibly inside the event
        # loop's own bookkeeping (writing to a self-pipe from here wedged eventlet: a barrier reply
        # was never delivered). The watcher looks at the flag every TICK.
        if self.watch is not None:
            self.watch.hup = True

    def _file_notifier(self, path: str) -> DirWatch | None:
        """An inotify watch on the topology's directory (the file may be replaced by a rename),
        or None where inotify is not available (then polling alone finds changes)."""
        try:
            return DirWatch(os.path.dirname(os.path.abspath(path)))
        except (OSError, AttributeError) as exc:
            LOG.info("ovsflow: no inotify for %s (%s): polling only", path, exc)
            return None

    def _read_notify(self, notify: DirWatch) -> None:
        from eventlet.hubs import trampoline

        assert self.watch is not None
        while True:
            trampoline(notify.fileno(), read=True)
            self.watch.notified(notify.names())
            self._wake.set()

    def _watch(self) -> None:
        """SIGHUP within TICK; inotify at once; polling every --ovsflow-poll-interval (see watch)."""
        assert self.watch is not None
        if self._notify is not None:
            self.threads.append(hub.spawn(self._read_notify, self._notify))
        while True:
            self._wake.wait(timeout=TICK)
            self._wake.clear()
            why = self.watch.due()
            if why is not None:
                self.reload(why)

    def _warm(self) -> None:
        """Runs the core's compile-ahead steps while the app is idle (see Core.compile_ahead)."""
        while True:
            self._warm_wakeup.wait()
            self._warm_wakeup.clear()
            for _ in self.core.compile_ahead():
                hub.sleep(0)
                while not self.core.idle():
                    hub.sleep(0.005)

    def _audit(self, interval: float) -> None:
        """Read every connected switch back now and then, repairing what changed behind our back."""
        while True:
            hub.sleep(interval)
            for _, dp in sorted(self.datapaths.items()):
                self._reconcile_safe(dp, "audit")

    # --- switches --------------------------------------------------------------------------------
    @set_ev_cls(ofp_event.EventOFPStateChange, [HANDSHAKE_DISPATCHER, CONFIG_DISPATCHER, MAIN_DISPATCHER, DEAD_DISPATCHER])
    def _handshakes(self, ev: Any) -> None:
        """Switches between hello and MAIN: background compiling waits for them (Core.idle)."""
        self.core.handshake(ev.datapath, ev.state in (HANDSHAKE_DISPATCHER, CONFIG_DISPATCHER))

    @set_ev_cls(ofp_event.EventOFPStateChange, [MAIN_DISPATCHER, DEAD_DISPATCHER])
    def _state_change(self, ev: Any) -> None:
        dp = ev.datapath
        if dp.id is None:
            return
        if ev.state == MAIN_DISPATCHER:
            self.datapaths[dp.id] = dp
            ports = {_port_name(p.name): p.port_no for p in (dp.ports or {}).values()}  # port-desc, before MAIN
            label = self.core.connected(dp.id, dp, dp.ofproto.OFP_VERSION, ports)
            version = {ofproto_v1_3.OFP_VERSION: "1.3", ofproto_v1_4.OFP_VERSION: "1.4"}.get(dp.ofproto.OFP_VERSION)
            LOG.info("ovsflow: switch %016x (%s) connected from %s, OpenFlow %s", dp.id, label, dp.address, version,
                     extra={"event": "switch_connected", "dpid": f"{dp.id:016x}", "switch": label})
            if label != "not in topology":
                self._tap(dp)
            hub.spawn(self._reconcile_safe, dp, "connect")
        elif self.core.disconnected(dp.id, dp):  # the switch's current connection went down
            del self.datapaths[dp.id]
            self.taps.pop(dp.id, None)
            label = self._label(dp.id)
            LOG.warning("ovsflow: switch %016x disconnected (%s)", dp.id, label,
                        extra={"event": "switch_lost", "dpid": f"{dp.id:016x}", "switch": label})
            for (dpid, _), w in list(self.waiters.items()):
                if dpid == dp.id:
                    w.error = "switch disconnected"
                    w.event.set()

    def _label(self, dpid: int) -> str:
        programs = self.core.programs
        return programs.label(dpid) if programs is not None and dpid in programs.where else "not in topology"

    def _tap(self, dp: Any) -> None:
        """Read this connection's replies to ovsflow's own requests as bytes (controller.tap)."""
        def deliver(xid: int, msg: bytes) -> None:
            self._reply(dp.id, xid, msg)

        tap = ReplyTap(dp.socket, deliver)
        dp.socket = tap
        self.taps[dp.id] = tap
        dp.send(echo_request(dp.ofproto.OFP_VERSION, self._xid(dp), tap.marker))

    def _reply(self, dpid: int, xid: int, msg: bytes) -> None:
        w = self.waiters.get((dpid, xid))
        if w is not None:
            w.replies.append(msg)
            if not int.from_bytes(msg[10:12], "big") & 1:  # OFPMPF_REPLY_MORE clear: the last part
                w.event.set()

    @set_ev_cls([ofp_event.EventOFPFlowStatsReply, ofp_event.EventOFPGroupDescStatsReply], MAIN_DISPATCHER)
    def _multipart_reply(self, ev: Any) -> None:
        """Replies the tap did not take (it was not aligned yet): Ryu parsed them; use the bytes."""
        self._reply(ev.msg.datapath.id, ev.msg.xid, bytes(ev.msg.buf))

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

    # --- requests --------------------------------------------------------------------------------
    @staticmethod
    def _xid(dp: Any) -> int:
        dp.xid = (dp.xid + 1) & dp.ofproto.MAX_XID  # what Datapath.set_xid does
        return int(dp.xid)

    def _send_request(self, dp: Any, build: Any) -> tuple[int, _Waiter]:
        """Send the request `build(xid)` makes; its reply (all parts) is awaited with _await."""
        xid = self._xid(dp)
        w = self.waiters[(dp.id, xid)] = _Waiter()
        tap = self.taps.get(dp.id)
        if tap is not None:
            tap.wanted.add(xid)
        try:
            dp.send(build(xid))
        except BaseException:
            self._forget(dp, xid)
            raise
        return xid, w

    def _forget(self, dp: Any, xid: int) -> None:
        self.waiters.pop((dp.id, xid), None)
        tap = self.taps.get(dp.id)
        if tap is not None:
            tap.wanted.discard(xid)

    def _await(self, dp: Any, xid: int, w: _Waiter, what: str) -> list[bytes]:
        try:
            if not w.event.wait(timeout=REQUEST_TIMEOUT):
                raise TimeoutError(f"no reply to {what} within {REQUEST_TIMEOUT:.0f} s")
            if w.error:
                raise RuntimeError(w.error)
            return w.replies
        finally:
            self._forget(dp, xid)

    # --- reconcile -------------------------------------------------------------------------------
    def _reconcile_safe(self, dp: Any, why: str, moves: Moves | None = None) -> None:
        try:
            self.reconcile(dp, why, moves)
        except Exception as exc:
            self.core.failed(dp.id, why, exc)

    def reconcile(self, dp: Any, why: str, moves: Moves | None = None) -> None:
        """Make switch `dp` hold its target, one reconcile per switch at a time."""
        lock = self.locks.setdefault(dp.id, hub.BoundedSemaphore(1))
        with lock:
            job = self.core.begin(dp.id, dp, why, moves)
            if job is None:
                return
            try:
                self._run(dp, job)
            finally:
                self.core.end(job)

    def _run(self, dp: Any, job: Job) -> None:
        if job.read:
            # Ask for the switch's flows first: it dumps them while the core compiles (if it must).
            pending = []
            try:
                pending.append(self._send_request(dp, job.flows_request))
                pending.append(self._send_request(dp, job.groups_request))
                job.compile()
                flows, groups = [self._await(dp, xid, w, "a flow/group dump") for xid, w in pending]
            finally:  # a failed compile or read leaves no waiter behind
                for xid, _ in pending:
                    self._forget(dp, xid)
            job.diff(flows, groups)
        else:
            job.diff()
        self.async_errors.pop(dp.id, None)
        sent = False
        for chunk in job.bundle(lambda: self._xid(dp)):
            dp.send(chunk)
            sent = True
        if sent:
            xid, w = self._send_request(dp, lambda xid: barrier_request(dp.ofproto.OFP_VERSION, xid))
            self._await(dp, xid, w, "the barrier")
            errors = self.async_errors.pop(dp.id, [])
            if errors:
                raise RuntimeError(f"switch rejected the bundle (nothing applied): {'; '.join(errors[:3])}")
        job.done()
