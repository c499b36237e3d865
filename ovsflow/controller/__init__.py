"""The live controller without Ryu: what each switch must hold, what to send it, and when.

- `programs`: a loaded topology, compiled per host on demand and encoded per network piece;
- `core`: switches, reloads, diffs, moved VMs, compile-ahead policy; returns bytes, never sends;
- `tap`: reads ovsflow's own multipart replies off a switch connection, before Ryu parses them;
- `watch`: when the topology file must be read again (inotify, polling, SIGHUP).

`ovsflow.app` is the Ryu shell around them: events, connections, barriers, green threads.
"""
