"""The queue registry: which queues each customer may name, and their backend names.

A campaign's ``queue_id`` is an id of this registry (configured under ``[[queues]]``);
the queue adapter is asked about the queue by the name its backend knows it by (an
Asterisk queue, a Redis hash, a simulated queue). A campaign may only name a queue of
its own customer.
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from dialerd.config import QueueEntry


class QueueRef(msgspec.Struct, frozen=True, kw_only=True):
    """One registered queue: our id, its customer, and the backend's name for it."""

    id: str
    customer_id: str
    name: str


class QueueRegistry:
    """The registered queues, looked up by id (and customer, for a tenant's request)."""

    def __init__(self, queues: Iterable[QueueRef] = ()) -> None:
        self._by_id: dict[str, QueueRef] = {}
        self.replace(queues)

    def replace(self, queues: Iterable[QueueRef]) -> None:
        """Swap in a new set of queues (a reload); lookups see all old or all new."""
        self._by_id = {queue.id: queue for queue in queues}

    def get(self, customer_id: str | None, queue_id: str) -> QueueRef | None:
        """The queue, if registered (for ``customer_id``, unless that is None)."""
        queue = self._by_id.get(queue_id)
        if queue is None or (customer_id is not None and queue.customer_id != customer_id):
            return None
        return queue

    def of_customer(self, customer_id: str) -> list[QueueRef]:
        """The customer's registered queues, by id."""
        return sorted(
            (queue for queue in self._by_id.values() if queue.customer_id == customer_id),
            key=lambda queue: queue.id,
        )


def registry_entries(entries: Iterable[QueueEntry]) -> list[QueueRef]:
    """The ``[[queues]]`` of a config as registry entries."""
    return [QueueRef(id=e.id, customer_id=e.customer_id, name=e.name) for e in entries]
