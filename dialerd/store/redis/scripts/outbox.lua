-- Events out (dialerd.events; dialerd/store/redis/outbox.py reads them), prelude of every
-- script after common.lua: a change appends its event to its customer's stream
-- P:events:<customer> in the same script. Fields: t type, c the campaign (events are kept
-- in order per campaign), b the stored body, and for a target q, d, h: its queue letter,
-- due and held (the API shows hold_reason and tm_next_try from them).
local function outbox_add(customer, campaign, event_type, body, ...)
  redis.call('XADD', key('events', customer), '*', 't', event_type, 'c', campaign, 'b', body, ...)
  redis.call('SADD', key('event_customers'), customer)
end
