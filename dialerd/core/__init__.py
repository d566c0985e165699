"""The dialing rules as pure functions: no I/O, no clock, no anyio.

Every rule of behaviour.md §4-§6 is written here once. The stores keep and index what
these functions decide; the scheduler asks them what to do. Nothing in this package
imports from the rest of dialerd except ``dialerd.model`` and ``dialerd.ports``' plain
data types.
"""
