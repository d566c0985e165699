-- Write the placements dialerd.core.targets decided for ready targets a claim reached
-- (decide_claim found them spent, or held back by the calling rules), each only if it is
-- still the target the decision was made on.
-- ARGV: prefix, then per target: id, the version it was read at, its new body, queue
--   letter (see index_target), touched, due (microseconds), until (microseconds or ''),
--   slot, held
-- Returns how many were written (a target changed since it was read is left as it is).
local written = 0
for i = 2, #ARGV, 9 do
  local id, version, body, queue = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local touched, due, held = ARGV[i + 4], ARGV[i + 5], ARGV[i + 8]
  local target_key = key('target', id)
  local stored = redis.call('HMGET', target_key, 'v', 'k', 'm', 'o', 'x')
  if stored[4] and stored[2] == 'r' and (stored[1] or '') == version and stored[5] ~= '1' then
    unindex_target('r', stored[4], stored[3], id)
    index_target(queue, stored[4], stored[3], id, touched, due, held)
    redis.call('HSET', target_key, 'b', body, 'k', queue,
      'pt', touched, 'pd', due, 'pu', ARGV[i + 6], 'ps', ARGV[i + 7], 'ph', held)
    redis.call('HINCRBY', target_key, 'v', 1)
    written = written + 1
  end
end
return written
