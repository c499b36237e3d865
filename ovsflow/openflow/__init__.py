"""The OpenFlow 1.3/1.4 codec of the live controller: `Flow` values <-> wire bytes, without Ryu.

- `encode`: flow-mods, group-mods, requests, and the canonical form both sides of a diff use;
- `decode`: flow-stats and group-desc replies (and flow-mods, for tests) back to `Flow` values;
- `bundle`: atomic, ordered bundles (OpenFlow 1.4, or the ONF extension on 1.3);
- `wire`: the field facts in wire terms.

Writing bytes directly instead of building Ryu message objects is about ten times cheaper per
flow (`python -m bench codec` measures both); the tests check the bytes equal Ryu's, field by field.
"""
