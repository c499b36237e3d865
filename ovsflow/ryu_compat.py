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
"""

from __future__ import annotations

import importlib.machinery
import sys
from types import ModuleType

TARGET = "eventlet.wsgi"
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


class _Finder:
    """Finds `eventlet.wsgi` like the normal path finder does and patches it once executed.

    A plain class (sys.meta_path only needs `find_spec`): importing importlib.abc at every
    interpreter start would cost more than this whole module.
    """

    def find_spec(self, fullname, path, target=None):  # type: ignore[no-untyped-def]
        if fullname != TARGET:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path, target)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        loader = spec.loader
        original = loader.exec_module

        def exec_module(module: ModuleType) -> None:
            original(module)
            patch(module)

        loader.exec_module = exec_module  # type: ignore[method-assign]  # per-spec loader object
        return spec


def install() -> None:
    """Idempotent: patch `eventlet.wsgi` now if loaded, else when it first gets imported."""
    loaded = sys.modules.get(TARGET)
    if loaded is not None:
        patch(loaded)
        return
    if not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.insert(0, _Finder())


def pth_line() -> str:
    """The content of the `.pth` file (for the installer and the tests)."""
    return PTH_LINE + "\n"
