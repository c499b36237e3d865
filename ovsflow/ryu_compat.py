"""Make Ryu 4.34 (last release, 2020) start on a current eventlet, without forking Ryu.

`ryu-manager` imports `ryu.app.wsgi` before it loads any app, and that module does
`from eventlet.wsgi import ALREADY_HANDLED`, a name eventlet removed in 0.30.3 (older eventlets do
not run on Python >= 3.10). Nothing in `ovsflow.app` can run early enough to help, so the install
puts a one-line `.pth` file into the environment (`PTH_LINE` below; `.ci/setup` writes it). Python
runs it at start-up; it only registers an import hook: nothing is imported until some code imports
`eventlet.wsgi`, and then the missing name is added right after eventlet's own module body ran.

Modern eventlet signals "the app already wrote the response" (websockets) through
`WSGI_LOCAL.already_handled`, and iterates whatever the app returned, so the value we provide is an
empty tuple: iterating it writes nothing, which is exactly what the old sentinel meant.

The same hook registers ovsflow's command-line options when `ryu.flags` (Ryu's home of its own apps'
options) is imported: ryu-manager parses the command line before it imports any app, so
`ryu-manager ovsflow.app --ovsflow-topology FILE` needs them known by then. Without the `.pth`,
`ovsflow.app` still registers them, usable from `--config-file` and the environment.
"""

from __future__ import annotations

import importlib.machinery
import sys
from types import ModuleType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from typing import Any

TARGET = "eventlet.wsgi"
FLAGS_MODULE = "ryu.flags"
PTH_NAME = "ovsflow_ryu_compat.pth"
# One line, executed by site.py at interpreter start-up; silent if ovsflow is not importable.
PTH_LINE = (
    'import sys; exec("try:\\n import ovsflow.ryu_compat as m; m.install()\\n'
    'except ImportError:\\n pass")'
)


def patch(module: ModuleType) -> None:
    """Give an already imported `eventlet.wsgi` the name Ryu 4.34 imports from it."""
    if not hasattr(module, "ALREADY_HANDLED"):
        module.ALREADY_HANDLED = ()  # type: ignore[attr-defined]


def _opts() -> list:
    from oslo_config import cfg

    return [
        cfg.StrOpt("ovsflow-topology", default=None,
                   help="ovsflow topology file (YAML/JSON); fallback: $OVSFLOW_TOPOLOGY"),
        cfg.FloatOpt("ovsflow-poll-interval", default=0.05,
                     help="seconds between polls of the topology file, the fallback where inotify "
                          "reports nothing; a change found by polling is loaded once the file has been "
                          "still for one interval (0: no polling; inotify and SIGHUP still reload)"),
        cfg.IntOpt("ovsflow-compile-ahead", default=200_000,
                   help="flows to compile, in the background, for hosts whose switches have not "
                        "connected (so they find their program ready after a controller restart); "
                        "hosts in name order until this many flows are held (0: never)"),
        cfg.FloatOpt("ovsflow-audit-interval", default=0.0,
                     help="seconds between full read-back checks of every connected switch (0: never). "
                          "Updates are sent as the difference from the program the switch last "
                          "confirmed; an audit also repairs flows changed behind ovsflow's back"),
        cfg.IntOpt("ovsflow-metrics-port", default=0,
                   help="serve Prometheus metrics over HTTP on this port (0: off); see ovsflow.metrics"),
        cfg.StrOpt("ovsflow-metrics-address", default="127.0.0.1",
                   help="address the metrics endpoint binds to (default loopback only)"),
        cfg.BoolOpt("ovsflow-log-json", default=False,
                    help="log one JSON object per event (journald/Loki) instead of human lines"),
    ]


def register_flags(conf: Any = None, cli: bool = True) -> None:
    """Register ovsflow's options on Ryu's CONF (idempotent; CLI only before parsing)."""
    if conf is None:
        from ryu import cfg

        conf = cfg.CONF
    if "ovsflow_topology" in conf:
        return
    if cli:
        conf.register_cli_opts(_opts())
    else:
        conf.register_opts(_opts())


def _after_flags(module: ModuleType) -> None:
    register_flags(getattr(module, "CONF", None))


_AFTER = {TARGET: patch, FLAGS_MODULE: _after_flags}


class _Finder:
    """Finds `eventlet.wsgi`/`ryu.flags` like the path finder does; runs our hook once executed.

    A plain class (sys.meta_path only needs `find_spec`): importing importlib.abc at every
    interpreter start would cost more than this whole module.
    """

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        after = _AFTER.get(fullname)
        if after is None:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path, target)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        loader = spec.loader
        original = loader.exec_module

        def exec_module(module: ModuleType) -> None:
            original(module)
            after(module)

        loader.exec_module = exec_module  # type: ignore[method-assign]  # per-spec loader object
        return spec


def install() -> None:
    """Idempotent: run each hook now for modules already loaded, else when first imported."""
    pending = False
    for name, after in _AFTER.items():
        loaded = sys.modules.get(name)
        if loaded is not None:
            after(loaded)
        else:
            pending = True
    if pending and not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.insert(0, _Finder())


def pth_line() -> str:
    """The content of the `.pth` file (for the installer and the tests)."""
    return PTH_LINE + "\n"
