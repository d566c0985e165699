"""The scheduler: one supervised loop per running campaign, and the attempts it starts.

Each loop ticks its campaign at absolute deadlines (``engine.tick_interval``) and at once
when one of its attempts ends. A tick reads the campaign and its outplan, asks the queue
adapter how many agents are free, lets ``pacing`` decide how many attempts to start,
claims targets through the store (which persists each attempt before it is originated),
and checks for exhaustion (``end_handle``, chaining). Backend events come back on one
stream and end attempts exactly once. The decisions themselves live in the pure package
``dialerd.core`` (pacing, targets, lifecycle, the governor, the flow interpreter).

- ``engine``: ``Engine``, the one entry point, wiring the parts below and answering
  for them (the insight answer);
- ``supervisor``: the campaign loops (it owns them) and housekeeping;
- ``ownership``: campaign leases (it owns them) and reconciliation with the backend;
- ``tick``: one tick (read, decide, claim, originate; release when stopping);
- ``allowance``: how many attempts a tick may start (it owns the pacing state);
- ``sharing``: the customers' quotas and shares of the ceilings (it owns the wants);
- ``calls``: the attempts' whole life, from start to end, and what they measure (it
  owns the attempts, the call history, the abandonment counts, the back-off);
- ``states``: what each campaign's latest tick found (it owns the dialing state);
- ``ending``: exhaustion, chaining, the stop of an invalid campaign;
- ``registry``: the leases held and the loops run, looked up by the other parts;
- ``shared``: the ports every part is given, and the back-off formula.

Each part changes only its own state; the others get a read-only view or a narrow
callable at construction (``Engine.__init__`` wires them).
"""

from dialerd.scheduler.engine import Engine
from dialerd.scheduler.shared import EngineStats

__all__ = ["Engine", "EngineStats"]
