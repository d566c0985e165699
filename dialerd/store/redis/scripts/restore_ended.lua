-- write_back (after a failover): an attempt this instance ended lately, written again
-- when the new primary lost it whole (its claim and its end), or told apart when the
-- new primary lost its end alone.
-- ARGV: prefix, the campaigncall body as it ended (status 'done')
-- When the primary has the campaigncall ended, nothing changes: 'kept'. When it has it
-- active (its end was lost), nothing changes either: 'active', and the caller writes
-- the end again as it was made (finish.lua: the result, the lock, and the target's
-- placement only while the target is progressing for this attempt, not for a later
-- one written back before).
-- Else it is written ended, in the listings, and its target's try on that slot is
-- counted (the target stays where it was placed: the call is over, a retry may follow
-- under the outplan's rules): 'restored'.
local campaigncall = cjson.decode(ARGV[2])
local id = campaigncall.id
local campaigncall_key = key('campaigncall', id)
local stored = redis.call('HMGET', campaigncall_key, 'b', 's')
if stored[1] then
  return stored[2] == 'done' and 'kept' or 'active'
end
local customer, campaign = campaigncall.customer_id, campaigncall.campaign_id
local listed = campaigncall.tm_create .. '|' .. id
redis.call('HSET', campaigncall_key, 'b', ARGV[2], 'c', customer, 'g', campaign, 's', 'done',
  'l', listed)
redis.call('ZADD', key('campaigncalls', customer), 0, listed)
redis.call('ZADD', key('campaigncalls', customer, campaign), 0, listed)

local target_key = key('target', campaigncall.outdial_target_id)
local stored = redis.call('HMGET', target_key, 'b', 'x')
if not stored[1] or stored[2] == '1' then
  return 'restored'
end
local target = cjson.decode(stored[1])
local slot = campaigncall.destination_index
if (tonumber(target['try_count_' .. slot]) or 0) < campaigncall.try_count then
  target['try_count_' .. slot] = campaigncall.try_count
  redis.call('HSET', target_key, 'b', cjson.encode(target))
  redis.call('HINCRBY', target_key, 'v', 1)
end
return 'restored'
