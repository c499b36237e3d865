"""The field registry's facts in wire terms, as the codec looks them up.

Everything is derived from `ovsflow.fields` (NXM header numbers included: OVS's nx-match numbering,
class 0 for NXM_OF_*, 1 for NXM_NX_*).
"""

from __future__ import annotations

from collections.abc import Mapping

from ..fields import FIELD_ORDER, FIELDS, OFPVID_PRESENT, OXM_OPENFLOW_BASIC

__all__ = [
    "FIELD_BITS",
    "FIELD_ORDER",
    "MATCH_OXM",
    "NXM_BY_HEADER",
    "NXM_WIDTH",
    "OFPVID_PRESENT",
    "OXM_BASIC",
    "OXM_MATCH_NAME",
    "SET_NAME",
    "SET_OXM",
    "VLAN_VID",
    "nxm_header",
]

OXM_BASIC = OXM_OPENFLOW_BASIC
VLAN_VID = 6  # OXM field number of vlan_vid: dl_vlan and vlan_tci both travel as it

# match name -> (OXM class, field number, value bytes); dl_vlan/vlan_tci are mapped by the codec
# (OpenFlow-basic fields, and NXM_1 ones such as nw_ttl, which OVS takes inside an OXM match)
MATCH_OXM: Mapping[str, tuple[int, int, int]] = {
    f.name: f.oxm for f in FIELDS.values() if f.oxm is not None and f.match and f.name != "vlan_vid"}
# set_field spelling -> (OXM class, field number, value bytes)
SET_OXM: Mapping[str, tuple[int, int, int]] = {
    f.set_name: f.oxm for f in FIELDS.values() if f.set_name is not None and f.oxm is not None}
FIELD_BITS: Mapping[str, int] = {f.name: f.bits for f in FIELDS.values()}
NXM_CODES: Mapping[str, tuple[int, int]] = {f.nxm: f.nxm_code for f in FIELDS.values() if f.nxm and f.nxm_code}

# field name -> NXM width in bits, for the fields learn() and move may name (those with a known NXM header)
NXM_WIDTH: Mapping[str, int] = {f.name: f.nxm_width for f in FIELDS.values() if f.nxm in NXM_CODES}


def nxm_header(name: str) -> int:
    """The 32-bit NXM header (no mask) of field `name`, as learn() and move carry it."""
    f = FIELDS[name]
    cls, num = NXM_CODES[f.nxm]  # type: ignore[index]
    return (cls << 16) | (num << 9) | (f.nxm_width // 8)


# header (no mask) -> field name: NXM, and OXM too (a switch may answer in either spelling)
NXM_BY_HEADER: Mapping[int, str] = {
    **{(cls << 16) | (num << 9) | size: name for name, (cls, num, size) in MATCH_OXM.items()},
    **{nxm_header(name): name for name in NXM_WIDTH},
}
OXM_MATCH_NAME: Mapping[tuple[int, int], str] = {(cls, num): name for name, (cls, num, _) in MATCH_OXM.items()}
SET_NAME: Mapping[tuple[int, int], str] = {(cls, num): name for name, (cls, num, _) in SET_OXM.items()}
