"""The abandonment governor: once configured (``[abandonment]``), it holds dialing, over
every pacing mode, to the legal cap (a predictive campaign: also to its own target).

Pure: measured windows and candidate line counts in, one count out (``pacing.decide``).

- ``floor``: what one line per free agent allows (the seed's rule at ``service_level``
  100): with that, a live answer finds an agent unless agents leave meanwhile.
- ``wanted``: what the campaign's own mode asks for (more than ``floor`` for
  ``service_level`` below 100 or for ``predictive``).
- the room: the abandoned calls the tightest window may still take (``cap × live -
  abandoned``). While it is under one (the start of a day: one abandoned call would
  put the day above the cap) the governor allows the floor only. Beyond it, the lines
  the campaign's model says the room takes with the odds of ``predictive.Z_SAFE``
  (``predictive.lines_within_headroom``, which counts the lines already ringing);
  without a model of the campaign, the floor.

The count moves with the room and with the lines ringing, a line at a time: there is no
threshold at which the governor switches from the mode's count to the floor. It never
adds lines: a mode that asks for fewer than ``floor`` (``service_level`` above 100)
keeps its own count.
"""

from __future__ import annotations

from collections.abc import Sequence

from dialerd.core.abandonment import WindowCount


def room(windows: Sequence[WindowCount], cap: float) -> float:
    """The abandoned calls the tightest window may still take within the cap (0 without
    a window)."""
    return min((cap * window.live - window.abandoned for window in windows), default=0.0)


def no_room(windows: Sequence[WindowCount], cap: float) -> bool:
    """Whether a window has no room for one more abandoned call (``cap × live -
    abandoned < 1``): one more would put it above the cap."""
    return any(cap * window.live - window.abandoned < 1 for window in windows)


def why_held(windows: Sequence[WindowCount], cap: float, pressure: float) -> str:
    """What the operator reads when the governor held lines back (the state's detail)."""
    tight = [window for window in windows if cap * window.live - window.abandoned < 1]
    if tight:
        window = min(tight, key=lambda window: window.days)
        return (
            f"abandonment cap {cap:.1%}: {window.live} live answers in the {window.days}-day "
            "window leave no room for an abandoned call yet; one line per free agent"
        )
    if windows and pressure > 0:
        worst = max(windows, key=lambda window: window.rate)
        return (
            f"abandonment cap {cap:.1%}: {worst.rate:.1%} over {worst.days} "
            f"day{'s' if worst.days > 1 else ''}; no more lines than the windows' room can take"
        )
    return f"abandonment cap {cap:.1%}: no more lines than the windows' room can take"
