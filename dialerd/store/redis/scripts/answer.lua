-- mark_answered: dialing -> progressing; nil if the attempt is not dialing.
-- ARGV: prefix, campaigncall_id, now, fence (campaign id, owner, token)
local id, now = ARGV[2], ARGV[3]
local campaigncall_key = key('campaigncall', id)
local stored = redis.call('HMGET', campaigncall_key, 'b', 's', 'g')
if stored[2] ~= 'dialing' then
  return nil
end
if fenced_off(stored[3], 4) then
  return lease_lost(stored[3])
end
local campaigncall = cjson.decode(stored[1])
campaigncall.status = 'progressing'
campaigncall.tm_update = now
local body = cjson.encode(campaigncall)
redis.call('HSET', campaigncall_key, 'b', body, 's', 'progressing')
redis.call('SREM', key('dialing', stored[3]), id)
outbox_add(campaigncall.customer_id, stored[3], 'campaigncall_updated', body)
return body
