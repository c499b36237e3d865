"""Bundles: messages applied all-or-nothing and in order (OFPBF_ATOMIC | OFPBF_ORDERED).

OpenFlow 1.4 has them natively (OFPT_BUNDLE_CONTROL / OFPT_BUNDLE_ADD_MESSAGE); on 1.3 OVS takes
the ONF extension 230 (experimenter messages with the same bodies).
"""

from __future__ import annotations

import struct

from .encode import HEADER, OFP13, OFP14, EncodeError

FLAGS = 3  # atomic | ordered
CONTROL_TYPES = {"open": 0, "close": 2, "commit": 4, "discard": 6}  # the *_REQUEST types
_CTRL = struct.Struct("!IHH")
_ADD = struct.Struct("!I2xH")
_ONF = struct.Struct("!II")
ONF_EXPERIMENTER = 0x4F4E4600
ONF_ET_BUNDLE_CONTROL, ONF_ET_BUNDLE_ADD = 2300, 2301
T_EXPERIMENTER, T_BUNDLE_CONTROL, T_BUNDLE_ADD = 4, 33, 34


def _wrap(version: int, of14_type: int, onf_type: int, body: bytes, xid: int) -> bytes:
    if version == OFP14:
        return HEADER.pack(OFP14, of14_type, 8 + len(body), xid) + body
    if version == OFP13:
        return HEADER.pack(OFP13, T_EXPERIMENTER, 16 + len(body), xid) + _ONF.pack(ONF_EXPERIMENTER, onf_type) + body
    raise EncodeError(f"bundles need OpenFlow 1.3 or 1.4, not wire version {version}")


def control(version: int, bundle_id: int, kind: str, xid: int) -> bytes:
    """A bundle control request: open | close | commit | discard."""
    return _wrap(version, T_BUNDLE_CONTROL, ONF_ET_BUNDLE_CONTROL,
                 _CTRL.pack(bundle_id, CONTROL_TYPES[kind], FLAGS), xid)


def add(version: int, bundle_id: int, inner: bytes, xid: int) -> bytes:
    """Wrap a serialized message (whose xid must be `xid`, as OVS checks) in a bundle-add."""
    return _wrap(version, T_BUNDLE_ADD, ONF_ET_BUNDLE_ADD, _ADD.pack(bundle_id, FLAGS) + inner, xid)
