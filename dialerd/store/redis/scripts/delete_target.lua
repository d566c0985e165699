-- Soft-delete a target of an outdial; a progressing target is refused.
-- ARGV: prefix, outdial_id, target_id, now
-- Returns the deleted target's body, or nil if there is no such target.
local outdial, id, now = ARGV[2], ARGV[3], ARGV[4]
local target_key = key('target', id)
local stored = redis.call('HMGET', target_key, 'b', 'o', 'x', 'p', 'k', 'm', 'ph')
if not stored[1] or stored[2] ~= outdial or stored[3] == '1' or not target_visible(stored[4]) then
  return nil
end
local target = cjson.decode(stored[1])
if target.status == 'progressing' then
  return conflict('target ' .. id .. ' is being dialed and cannot be deleted')
end
target.tm_update = now
target.tm_delete = now
local body = cjson.encode(target)
redis.call('HSET', target_key, 'b', body, 'x', '1', 'k', '')
redis.call('HINCRBY', target_key, 'v', 1)
redis.call('ZREM', key('targets', outdial), target.tm_create .. '|' .. id)
unindex_target(stored[5], outdial, stored[6], id, stored[7])
return body
