-- write_back (after a failover): an attempt this instance has live, written again on a
-- primary that may have lost its claim (replication is asynchronous).
-- ARGV: prefix, the campaigncall body as claimed, its status now ('dialing' or
--   'progressing'), now (microseconds: the placement before, when the target has none)
-- When the primary has the campaigncall (active or ended) nothing changes: 'kept'.
-- Else it is written as the claim wrote it, in the active indexes, and its target is
-- taken out of the ready and waiting indexes into progressing (its try counted), so no
-- claim can take the target while the call is up, and progressing for this attempt
-- (field a: an older attempt still active there, whose end was lost, no longer decides
-- it): 'restored'. The placement the target
-- had is kept as the one before the claim (a try given back returns it there).
local campaigncall = cjson.decode(ARGV[2])
local status, now = ARGV[3], ARGV[4]
local id = campaigncall.id
local campaigncall_key = key('campaigncall', id)
if redis.call('EXISTS', campaigncall_key) == 1 then
  return 'kept'
end
local customer, campaign = campaigncall.customer_id, campaigncall.campaign_id
campaigncall.status = status
local body = cjson.encode(campaigncall)
local listed = campaigncall.tm_create .. '|' .. id
redis.call('HSET', campaigncall_key, 'b', body, 'c', customer, 'g', campaign, 's', status,
  'l', listed)
redis.call('ZADD', key('campaigncalls', customer), 0, listed)
redis.call('ZADD', key('campaigncalls', customer, campaign), 0, listed)
redis.call('SADD', key('active', campaign), id)
redis.call('SADD', key('active'), id)
if status == 'dialing' then
  redis.call('SADD', key('dialing', campaign), id)
end

local target_key = key('target', campaigncall.outdial_target_id)
local stored = redis.call('HMGET', target_key, 'b', 'k', 'm', 'o', 'ph', 'x',
  'pt', 'pd', 'pu', 'ps')
if not stored[1] or stored[6] == '1' then
  return 'restored'  -- the target is gone: the attempt alone is written back
end
local target = cjson.decode(stored[1])
local letter, member, outdial = stored[2] or '', stored[3], stored[4]
if letter ~= 'p' then
  unindex_target(letter, outdial, member, target.id, stored[5])
  redis.call('HSET', target_key, 'bt', stored[7] or now, 'bd', stored[8] or now,
    'bu', stored[9] or '', 'bs', stored[10] or -1, 'bh', stored[5] or '')
end
local slot = campaigncall.destination_index
local counted = tonumber(target['try_count_' .. slot]) or 0
if counted < campaigncall.try_count then
  target['try_count_' .. slot] = campaigncall.try_count
end
target.status = 'progressing'
redis.call('HSET', target_key, 'b', cjson.encode(target), 'k', 'p', 'a', id)
redis.call('HINCRBY', target_key, 'v', 1)
redis.call('SADD', key('progressing', outdial), target.id)
return 'restored'
