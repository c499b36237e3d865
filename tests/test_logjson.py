"""--ovsflow-log-json: one JSON object per log event, the human line kept as `message`."""

from __future__ import annotations

import io
import json
import logging

from ovsflow.logjson import JsonFormatter, install


def test_one_object_per_event_with_the_fields_the_code_gives() -> None:
    stream = io.StringIO()
    logger = logging.getLogger("ovsflow.test-logjson")
    logger.propagate = False
    logger.handlers = [logging.StreamHandler(stream)]
    logger.setLevel(logging.INFO)
    assert install(logger) == 1 and isinstance(logger.handlers[0].formatter, JsonFormatter)
    logger.warning("ovsflow: switch %016x disconnected (%s)", 0x30000002, "hv3/br-tun",
                   extra={"event": "switch_lost", "dpid": f"{0x30000002:016x}", "switch": "hv3/br-tun"})
    logger.info("plain\nline with \"quotes\" and ünïcode")
    try:
        raise ValueError("boom")
    except ValueError:
        logger.exception("reconcile failed")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 3  # one line each, even with a newline in the message or a traceback
    lost, plain, failed = (json.loads(ln) for ln in lines)
    assert lost["level"] == "WARNING" and lost["logger"] == "ovsflow.test-logjson"
    assert lost["message"] == "ovsflow: switch 0000000030000002 disconnected (hv3/br-tun)"
    assert (lost["event"], lost["dpid"], lost["switch"]) == ("switch_lost", "0000000030000002", "hv3/br-tun")
    assert lost["time"].endswith("Z") and lost["time"][10] == "T"
    assert plain["message"] == "plain\nline with \"quotes\" and ünïcode" and "event" not in plain
    assert failed["level"] == "ERROR" and "ValueError: boom" in failed["exception"]
