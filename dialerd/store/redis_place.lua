-- Write the placement dialerd.core.targets decided for a ready target a claim reached
-- (decide_claim found it spent under the claim's outplan), if it is still that target.
-- ARGV: prefix, target id, the version it was read at, its new body, queue letter (see
--   index_target), touched, due (microseconds), until (microseconds or ''), slot, held
-- Returns 1 when written, 0 when the target changed since it was read (nothing written).
local id, version, body, queue = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local target_key = key('target', id)
local stored = redis.call('HMGET', target_key, 'v', 'k', 'm', 'o', 'x')
if not stored[4] or stored[2] ~= 'r' or (stored[1] or '') ~= version or stored[5] == '1' then
  return 0
end
unindex_target('r', stored[4], stored[3], id)
index_target(queue, stored[4], stored[3], id, ARGV[6], ARGV[7], ARGV[10])
redis.call('HSET', target_key, 'b', body, 'k', queue,
  'pt', ARGV[6], 'pd', ARGV[7], 'pu', ARGV[8], 'ps', ARGV[9], 'ph', ARGV[10])
redis.call('HINCRBY', target_key, 'v', 1)
return 1
