"""Events out: what changed, as the customer's systems hear of it.

Every store step that changes a campaign, a campaigncall or a target also appends an
entry to the store's durable outbox (``dialerd.store.ports.Outbox``), in the same
transaction or script. ``dialerd.events.model`` turns an outbox entry into the JSON a
webhook receiver or a stream client gets; ``dialerd.events.sender`` delivers them.
"""
