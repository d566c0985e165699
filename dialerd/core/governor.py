"""The abandonment governor: once configured (``[abandonment]``), it holds dialing, over
every pacing mode, to the legal cap (a predictive campaign: also to its own target).

Pure: measured windows and two candidate line counts in, one count out.

- ``floor``: what one line per free agent allows (the seed's rule at ``service_level``
  100): with that, a live answer finds an agent unless agents leave meanwhile.
- ``wanted``: what the campaign's own mode asks for (more than ``floor`` for
  ``service_level`` below 100 or for ``predictive``).

The worst window's rate sets a pressure from 0 (at or under ``near`` × cap) to 1 (at the
cap). The governor allows ``floor + (1 - pressure) · (wanted - floor)`` lines: a mode
backs off towards one line per free agent as the rate nears the cap, and at the cap
dials no more lines than there are free agents. It never adds lines: a mode that asks
for fewer than ``floor`` (``service_level`` above 100) keeps its own count.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Final

from dialerd.core.abandonment import WindowCount

# The pressure starts at this share of the cap: room for the spread of a day's rate.
NEAR: Final = 0.6


def pressure(windows: Sequence[WindowCount], cap: float, near: float = NEAR) -> float:
    """0 while every window is at or below ``near × cap``; 1 at or above ``cap``, and
    also while a window has no room for one more abandoned call (``cap × live -
    abandoned < 1``: the start of a day, when one abandoned call would end it above
    the cap)."""
    if any(cap * window.live - window.abandoned < 1 for window in windows):
        return 1.0
    worst = max((window.rate for window in windows), default=0.0)
    if cap <= 0:
        return 1.0 if worst > 0 else 0.0
    start = near * cap
    if worst <= start:
        return 0.0
    if worst >= cap:
        return 1.0
    return (worst - start) / (cap - start)


def why_held(windows: Sequence[WindowCount], cap: float, pressure: float) -> str:
    """What the operator reads when the governor held lines back (the state's detail)."""
    tight = [window for window in windows if cap * window.live - window.abandoned < 1]
    if tight:
        window = min(tight, key=lambda window: window.days)
        return (
            f"abandonment cap {cap:.1%}: {window.live} live answers in the {window.days}-day "
            "window leave no room for an abandoned call yet; one line per free agent"
        )
    if pressure > 0:
        worst = max(windows, key=lambda window: window.rate)
        return (
            f"abandonment nears the cap: {worst.rate:.1%} of {cap:.1%} over "
            f"{worst.days} day{'s' if worst.days > 1 else ''}"
        )
    return f"abandonment cap {cap:.1%}: no more lines than the windows' room can take"


def governed(wanted: int, floor: int, pressure: float) -> int:
    """Lines allowed between the mode's ``wanted`` and one per free agent (``floor``)."""
    if wanted <= floor:
        return wanted
    # (The epsilon keeps a float a hair under a whole number from losing a line.)
    return floor + math.floor((1.0 - min(1.0, max(0.0, pressure))) * (wanted - floor) + 1e-9)
