"""ovs-ofctl text for a bridge program: the file `replace-flows`, `diff-flows` and `bundle` read."""

from __future__ import annotations

from .pipeline import load_pipeline
from .problems import escape
from .program import COOKIE_STATIC, BridgeProgram

# What ovs-ofctl dump-flows prints for our static flows, so a script can leave everything else alone.
STATIC_COOKIE_TEXT = f"cookie={COOKIE_STATIC:#x}"


def flow_lines(bridge: BridgeProgram, comments: bool = True) -> list[str]:
    """The flows of a bridge, one per line, grouped by table with the table's purpose as a comment."""
    pipeline = load_pipeline(bridge.role)
    lines: list[str] = []
    current = None
    for f in bridge.flows:
        if comments and f.table != current:
            current = f.table
            t = pipeline.tables[f.table]
            lines.append(f"# table {t.id} ({t.name}): {t.purpose}")
        lines.append(f.ofctl())
    return lines


def group_lines(bridge: BridgeProgram) -> list[str]:
    """Groups as `ovs-ofctl dump-groups` prints them (OpenFlow 1.4), for add-groups and comparisons."""
    return [g.ofctl() for g in bridge.groups]


def flow_file(bridge: BridgeProgram, header: str = "") -> str:
    # one comment line per header line, whatever characters the header holds
    head = [f"# {escape(line)}" if line else "#" for line in header.split("\n")] if header else []
    return "\n".join(head + flow_lines(bridge)) + "\n"
