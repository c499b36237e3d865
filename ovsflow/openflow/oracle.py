"""TEST ORACLE ONLY: the same messages built as Ryu objects (temporary shim, see ryu_encode)."""
from ..ryu_encode import bundle_add, bundle_ctrl, flow_from_stats, flow_mod, group_mod  # noqa: F401
