"""The lab's record of everything it created, kept on disk so `lab down` works after a crash.

The rule that makes clean-up reliable: a resource is written to the state file *before* it is
created. A kill at any moment then leaves at worst an entry for something that never came to be,
which `down` skips (every removal is idempotent). Nothing created is ever missing from the file.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

DEFAULT_BASE = Path("/run/ovsflow/lab")
STATE_FILE = "state.json"


def base_dir() -> Path:
    """Where labs keep their state: $OVSFLOW_LAB_DIR, else /run/ovsflow/lab (gone on reboot,
    like the namespaces it describes)."""
    return Path(os.environ.get("OVSFLOW_LAB_DIR", DEFAULT_BASE))


@dataclass
class LabState:
    name: str
    workdir: str
    topology: str = ""
    status: str = "building"  # building -> up -> (removed on down)
    started: float = field(default_factory=time.time)
    netns: list[str] = field(default_factory=list)  # in creation order
    ovs: list[dict[str, str]] = field(default_factory=list)  # {"host", "workdir", "netns"}
    hosts: dict[str, dict[str, str]] = field(default_factory=dict)  # host -> {"netns", "vtep", ...}
    vms: dict[str, dict[str, str]] = field(default_factory=dict)  # port -> {"netns", "dev", ...}
    underlay: dict[str, str] = field(default_factory=dict)  # {"netns", "bridge"}
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def path(self) -> Path:
        return Path(self.workdir) / STATE_FILE

    def save(self) -> None:
        """Write atomically (rename), so a kill mid-write never leaves half a file."""
        Path(self.workdir).mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2, sort_keys=True) + "\n")
        os.replace(tmp, self.path)

    @classmethod
    def load(cls, workdir: Path) -> LabState | None:
        path = Path(workdir) / STATE_FILE
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})

    def record_netns(self, name: str) -> None:
        if name not in self.netns:
            self.netns.append(name)
        self.save()
