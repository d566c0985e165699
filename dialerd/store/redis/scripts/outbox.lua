-- Events out (dialerd.events; dialerd/store/redis/outbox.py reads them), prelude of every
-- script after common.lua: a change appends its event to its customer's stream
-- T:events:<customer> in the same script (the customers with events are those of the
-- registry P:customers, written before any of their data). Fields: t type, c the campaign (events are kept
-- in order per campaign), b the stored body, and for a target q, d, h: its queue letter,
-- due and held (the API shows hold_reason and tm_next_try from them).
local function outbox_add(customer, campaign, event_type, body, ...)
  redis.call('XADD', key('events', customer), '*', 't', event_type, 'c', campaign, 'b', body, ...)
end
