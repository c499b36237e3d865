"""`--ovsflow-log-json`: one JSON object per log event, for journald, Loki and friends.

The human lines stay the default. With the flag, the app gives every handler of the root logger
(Ryu's stderr, its --log-file, a --log-config-file's handlers) this formatter, so the events go
where they went before, one object per line:

    {"time": "2026-11-29T08:31:02.123Z", "level": "WARNING", "logger": "ovsflow.app",
     "message": "ovsflow: switch 0000000300000002 disconnected (hv3/br-tun)",
     "event": "switch_lost", "dpid": "0000000300000002", "switch": "hv3/br-tun"}

The structured fields (`event`, `dpid`, `switch`, `trigger`, `changes`, `flows`, `ms`) come from
the `extra=` of the log call, where the code gives them; `message` is always the human line.
Events: switch_connected, switch_lost, reconciled, reconcile_failed, reload_accepted,
reload_refused, drift. Refused reloads, lost switches and drift are WARNING or higher.
"""

from __future__ import annotations

import json
import logging
import time

FIELDS = ("event", "dpid", "switch", "trigger", "changes", "flows", "ms")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"
        out: dict[str, object] = {"time": stamp, "level": record.levelname, "logger": record.name,
                                  "message": record.getMessage()}
        for key in FIELDS:
            if key in record.__dict__:
                out[key] = record.__dict__[key]
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, ensure_ascii=False)


def install(logger: logging.Logger | None = None) -> int:
    """Give every handler of `logger` (default: the root logger) the JSON formatter; how many.
    A logger without handlers gets one on stderr."""
    logger = logger or logging.getLogger()
    if not logger.handlers:
        logger.addHandler(logging.StreamHandler())
    for h in logger.handlers:
        h.setFormatter(JsonFormatter())
    return len(logger.handlers)
