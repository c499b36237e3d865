"""Benchmark: the OpenFlow codec against Ryu's message objects, per flow, in the same run.

The live controller writes flow-mods with `ovsflow.openflow` instead of building Ryu objects
(`OFPFlowMod` + match + instructions, then `serialize()`), and reads flow-stats replies as bytes
instead of through Ryu's parser. This measures both ways on the same compiled flows (one host of a
synthetic l2pop topology: unicast, ARP/ND responder, flood and classify flows), interleaved,
median of the repetitions:

- encode: Ryu objects (`openflow.oracle.flow_mod` + serialize), the codec one flow at a time
  (`Encoder.flow_mod`), and the codec's batch (`Encoder.encode_flows`: ADD bytes and wire key, what
  the controller computes once per load);
- decode: Ryu's parser on a flow-stats reply, the codec's decoder (`decode.flows_from_reply`), and
  the identity key alone (`decode.entry_key`: all a no-op resync needs per entry).

  python -m bench codec [--quick]
"""

from __future__ import annotations

import statistics
import struct
import time
from collections.abc import Callable
from typing import Any

from bench.synth import synthetic


def _flows(quick: bool) -> list[Any]:
    from ovsflow.compiler import compile_host
    from ovsflow.model import load_topology_data

    size = (10, 20, 200) if quick else (100, 400, 10_000)
    topo = load_topology_data(synthetic(*size, mode="l2pop", ips=True), "synthetic")
    program = compile_host(topo, "hv0")
    return [f for b in program.bridges for f in b.flows]


def _replies(flows: list[Any], version: int) -> list[bytes]:
    """Flow-stats replies (<= 64 KiB each) holding `flows`, as a switch writes them."""
    from ovsflow.openflow import encode as E

    enc = E.Encoder(version)
    out, body = [], b""
    for f in flows:
        rest = enc.flow_mod_tail(f, "add")[40:]
        body += struct.pack("!HBxIIHHHH4xQQQ", 48 + len(rest), f.table, 0, 0, f.priority, f.idle_timeout,
                            f.hard_timeout, 0, f.cookie, 0, 0) + rest
        if len(body) > 60_000:
            out.append(E.header(version, 19, struct.pack("!HH4x", 1, 1) + body, 1))
            body = b""
    out.append(E.header(version, 19, struct.pack("!HH4x", 1, 0) + body, 1))
    return out


def _time(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def run(quick: bool = False) -> list[dict]:
    from ryu.ofproto import ofproto_parser, ofproto_protocol, ofproto_v1_4

    from ovsflow.openflow import decode as D
    from ovsflow.openflow import encode as E
    from ovsflow.openflow import oracle as O

    flows = _flows(quick)
    n = len(flows)
    dp = ofproto_protocol.ProtocolDesc(ofproto_v1_4.OFP_VERSION)
    replies = _replies(flows, ofproto_v1_4.OFP_VERSION)

    def ryu_encode() -> None:
        for f in flows:
            m = O.flow_mod(dp, f)
            m.set_xid(1)
            m.serialize()

    def codec_encode() -> None:
        enc = E.Encoder(ofproto_v1_4.OFP_VERSION)  # fresh: no action cache carried between runs
        for f in flows:
            enc.flow_mod(f, "add", 1)

    def codec_batch() -> None:
        E.Encoder(ofproto_v1_4.OFP_VERSION).encode_flows(flows)

    def ryu_decode() -> None:
        for r in replies:
            msg = ofproto_parser.msg(dp, *ofproto_parser.header(r), r)
            [O.flow_from_stats(dp.ofproto, s) for s in msg.body]

    def ryu_parse() -> None:
        for r in replies:
            ofproto_parser.msg(dp, *ofproto_parser.header(r), r)

    def codec_decode() -> None:
        cache: dict[bytes, Any] = {}
        for r in replies:
            D.flows_from_reply(r, cache)

    def codec_keys() -> None:
        for r in replies:
            for off in D.multipart(r)[2]:
                D.entry_key(r, off)

    cases = {"encode: Ryu objects + serialize": ryu_encode, "encode: codec, one flow at a time": codec_encode,
             "encode: codec batch (ADD bytes + wire key)": codec_batch,
             "decode: Ryu parser + object decoder": ryu_decode, "decode: Ryu parser alone": ryu_parse,
             "decode: codec": codec_decode, "decode: codec identity keys only": codec_keys}
    times: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(3 if quick else 5):
        for name, fn in cases.items():
            times[name].append(_time(fn) / n * 1e6)
    med = {k: statistics.median(v) for k, v in times.items()}
    figures: dict[str, object] = {f"{k} (us/flow, median [min-max])": [med[k], min(times[k]), max(times[k])]
                                  for k in cases}
    figures["Ryu objects / codec, encoding one flow at a time (x)"] = med["encode: Ryu objects + serialize"] / med[
        "encode: codec, one flow at a time"]
    figures["Ryu parser / codec decoder (x)"] = med["decode: Ryu parser alone"] / med["decode: codec"]
    return [{"benchmark": "codec", "case": f"{n} flows of one host (synthetic l2pop topology), OpenFlow 1.4",
             "figures": figures, "goal": "", "raw": {k: v for k, v in times.items()}}]
