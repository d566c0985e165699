"""The scheduler: one supervised loop per running campaign, and the attempts it starts.

Each loop ticks its campaign at absolute deadlines (``engine.tick_interval``) and at once
when one of its attempts ends. A tick reads the campaign and its outplan, asks the queue
adapter how many agents are free, lets ``pacing`` decide how many attempts to start,
claims targets through the store (which persists each attempt before it is originated),
and checks for exhaustion (``end_handle``, chaining). Backend events come back on one
stream and end attempts exactly once. The decisions themselves live in the pure package
``dialerd.core`` (pacing, targets, lifecycle, the governor, the flow interpreter).

- ``engine``: ``Engine``, the one entry point, wiring the parts below;
- ``supervisor``: the campaign loops and housekeeping;
- ``ownership``: campaign leases and reconciliation with the backend;
- ``tick``: one tick (read, decide, claim, originate; release when stopping);
- ``allowance``: how many attempts a tick may start;
- ``calls``: the attempts in flight, their timers and their end;
- ``measures``: what ended and connected calls count as (abandonment, history, totals);
- ``ending``: exhaustion, chaining, the stop of an invalid campaign;
- ``shared``: the ports and memory the parts share.
"""

from dialerd.scheduler.engine import Engine
from dialerd.scheduler.shared import EngineStats

__all__ = ["Engine", "EngineStats"]
