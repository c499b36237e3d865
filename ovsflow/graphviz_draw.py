"""Pictures with Graphviz: the topology (hosts, the tunnel mesh per network, VMs, routers), the
declared pipeline (tables of br-int and br-tun, their gotos and purposes), and a traced path drawn
on the topology. The graphs are built here (pure); `render` runs Graphviz's `dot` and turns any
failure of it into one `DrawError` line."""

from __future__ import annotations

import textwrap
from itertools import combinations
from pathlib import Path

import graphviz  # type: ignore[import-untyped]  # no stubs or py.typed (0.21)

from .model import Topology
from .pipeline import Pipelines
from .trace import TraceResult

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")
FORMATS = ("svg", "png")
MAX_HOSTS, MAX_PORTS = 200, 2000  # beyond this a drawing is unreadable and dot takes minutes


class DrawError(Exception):
    """A picture that cannot be made: one line for the user (exit 2)."""


def nid(*parts: object) -> str:
    """A node id; ':' escaped (python-graphviz reads it in an edge's end as node:port)."""
    return "/".join(str(p).replace(":", "%3A") for p in parts)


def _color(topo: Topology, network: str) -> str:
    return PALETTE[sorted(topo.networks).index(network) % len(PALETTE)]


def topology_graph(topo: Topology, title: str = "") -> graphviz.Graph:
    """Hosts (VTEPs), their VMs, one tunnel edge per network between every two hosts it spans,
    routers joined to the hosts that route for them."""
    if len(topo.hosts) > MAX_HOSTS or len(topo.ports) > MAX_PORTS:
        raise DrawError(f"too large to draw ({len(topo.hosts)} hosts, {len(topo.ports)} ports; "
                        f"up to {MAX_HOSTS} hosts and {MAX_PORTS} ports)")
    g = graphviz.Graph("topology", graph_attr={"label": title, "labelloc": "t", "fontname": "Helvetica",
                                               "overlap": "false", "splines": "true"},
                       node_attr={"fontname": "Helvetica", "fontsize": "10"}, edge_attr={"fontname": "Helvetica",
                                                                                           "fontsize": "9"})
    for h in sorted(topo.hosts.values()):
        g.node(nid("host", h.name), f"{h.name}\nVTEP {h.vtep}", shape="box3d", style="filled", fillcolor="#eeeeee")
    for p in sorted(topo.ports.values()):
        color = _color(topo, p.network)
        label = f"{p.name}\n{p.network}" + (f"\n{p.ip}" if p.ip else "")
        g.node(nid("port", p.name), label, shape="ellipse", color=color, fontcolor=color)
        g.edge(nid("host", p.host), nid("port", p.name), color=color)
    for net in sorted(topo.networks.values()):
        hosts = sorted({p.host for p in topo.ports.values() if p.network == net.name})
        for a, b in combinations(hosts, 2):
            g.edge(nid("host", a), nid("host", b), label=f"{net.name} {net.tunnel} {net.vni}", color=_color(topo, net.name),
                   style="dashed", penwidth="1.5")
    for r in sorted(topo.routers.values()):
        g.node(nid("router", r.name), f"{r.name}\n{r.mode}\n{', '.join(r.networks)}", shape="octagon",
               style="filled", fillcolor="#fff3c4")
        routing = [r.host] if r.mode == "centralized" and r.host else sorted(
            {p.host for p in topo.ports.values() if p.network in r.networks})
        for name in routing:
            g.edge(nid("router", r.name), nid("host", name), style="dotted", label="routes here")
    return g


def pipeline_graph(pipelines: Pipelines | None = None) -> graphviz.Digraph:
    """Both bridges' declared tables, their gotos (solid), miss gotos (dashed), and the patch."""
    pl = pipelines or Pipelines.load()
    g = graphviz.Digraph("pipeline", graph_attr={"rankdir": "LR", "fontname": "Helvetica", "compound": "true"},
                         node_attr={"fontname": "Helvetica", "fontsize": "9", "shape": "box", "style": "rounded"},
                         edge_attr={"fontname": "Helvetica", "fontsize": "8"})
    for role in ("int", "tun"):
        p = pl[role]
        with g.subgraph(name=f"cluster_{role}") as c:
            c.attr(label=f"br-{role}: {p.description}", fontsize="11")
            for t in sorted(p.tables.values(), key=lambda t: t.id):
                purpose = "\n".join(textwrap.wrap(t.purpose, 48)[:4])
                c.node(nid(role, t.id), f"{t.id} {t.name}\n{purpose}", tooltip=t.purpose)
                for n in t.next:
                    c.edge(nid(role, t.id), nid(role, n))
                if t.miss_goto is not None:
                    c.edge(nid(role, t.id), nid(role, t.miss_goto), style="dashed", label="miss")
    # frames cross bridges through the patch ports: br-int outputs to br-tun's classify and back
    g.edge("int/10", "tun/0", label="patch-tun", style="dotted", color="#555555")
    g.edge("tun/10", "int/0", label="patch-int", style="dotted", color="#555555")
    return g


def trace_graph(topo: Topology, result: TraceResult) -> graphviz.Graph:
    """The topology with the traced frame's path: sender, tunnel legs (with keys), deliveries, drops."""
    g = topology_graph(topo, f"trace from {result.probe.port.name}: {result.probe.frame}")
    g.node(nid("port", result.probe.port.name), style="filled,bold", fillcolor="#ffe0b0")
    for s in result.legs:
        e = s.egress
        if e is None:
            continue
        dst = s.host if s.kind == "tunnel" else None
        label = f"{e.type} key {e.tun_id}" + ("" if dst else " LOST")
        g.edge(nid("host", e.host), nid("host", dst or e.host), label=label, color="#e4572e", penwidth="3", dir="forward")
    for host, name, _ in result.delivered:
        if name:
            g.edge(nid("host", host), nid("port", name), color="#2a9d8f", penwidth="3", dir="forward", label="delivered")
    for s, why in result.dropped:
        g.node(nid("drop", s.host, s.bridge, s.table), f"dropped\n{s.bridge} table {s.table}\n{why}", shape="note",
               color="#e4572e", fontcolor="#e4572e")
        g.edge(nid("host", s.host), nid("drop", s.host, s.bridge, s.table), color="#e4572e", style="bold")
    return g


def render(graph: graphviz.Graph | graphviz.Digraph, path: str) -> Path:
    """Write the picture; the format from the file's suffix (.svg, .png)."""
    target = Path(path)
    fmt = target.suffix.lstrip(".").lower()
    if fmt not in FORMATS:
        raise DrawError(f"{path}: the file must end in .svg or .png")
    try:
        data = graph.pipe(format=fmt, quiet=True)
    except graphviz.ExecutableNotFound:
        raise DrawError("Graphviz's dot was not found (install the graphviz package)") from None
    except graphviz.CalledProcessError as exc:
        err = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else str(exc.stderr or "")
        first = next((ln.strip() for ln in err.splitlines() if ln.strip()), f"exit {exc.returncode}")
        raise DrawError(f"dot failed: {first}") from None
    try:
        target.write_bytes(data)
    except OSError as exc:
        raise DrawError(f"{path}: {exc.strerror or exc}") from None
    return target


def draw_trace(topo: Topology, result: TraceResult, path: str) -> Path:
    return render(trace_graph(topo, result), path)
