-- Layout 1 -> 2, for one outdial and at most `chunk` targets per call (call again until it
-- returns 0). Layout 1 kept the idle targets in P:fresh:<outdial> (score: tm_create) and
-- P:retry:<outdial> (score: end of the last attempt), queue letters 'f' / 'r', and the
-- place of a progressing target in fields rq / rs. Layout 2 keeps them in P:ready (score:
-- touched) and P:waiting (score: due) with their placement beside them (pt, pd, pu, ps,
-- ph, version v; before a claim bt, bd, bu, bs, bh). The slot is left unknown (-1): the
-- first claim that reaches such a target asks dialerd.core.targets for it.
-- ARGV: prefix, outdial_id, retry interval (microseconds: due = touched + it), chunk
-- Returns how many targets are left to move.
local outdial, interval, chunk = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local fresh, retry = key('fresh', outdial), key('retry', outdial)
local budget = chunk
for _, source in ipairs({fresh, retry}) do
  if budget > 0 then
    local found = redis.call('ZRANGE', source, 0, budget - 1, 'WITHSCORES')
    for i = 1, #found, 2 do
      local member, touched = found[i], tonumber(found[i + 1])
      local target_key = key('target', string.sub(member, 17))
      local due = touched
      local letter = 'r'
      if source == retry then
        due = touched + interval
        letter = 'w'
        index_target('w', outdial, member, nil, touched, due, 'retry_interval')
      else
        redis.call('ZADD', key('ready', outdial), touched, member)
      end
      redis.call('HSET', target_key, 'k', letter, 'pt', string.format('%d', touched),
        'pd', string.format('%d', due), 'pu', '', 'ps', -1,
        'ph', letter == 'w' and 'retry_interval' or '')
      redis.call('HSETNX', target_key, 'v', 1)
      redis.call('ZREM', source, member)
      budget = budget - 1
    end
  end
end
if budget > 0 then
  -- Progressing targets: where they stood when claimed (a try given back goes there).
  for _, id in ipairs(redis.call('SMEMBERS', key('progressing', outdial))) do
    local target_key = key('target', id)
    local stored = redis.call('HMGET', target_key, 'rq', 'rs', 'bt')
    if not stored[3] then
      local touched = tonumber(stored[2]) or 0
      local due = touched
      if stored[1] == 'r' then
        due = touched + interval
      end
      redis.call('HSET', target_key, 'bt', string.format('%d', touched),
        'bd', string.format('%d', due), 'bu', '', 'bs', -1, 'bh', '')
      redis.call('HSETNX', target_key, 'v', 1)
      redis.call('HDEL', target_key, 'rq', 'rs')
    end
  end
end
return redis.call('ZCARD', fresh) + redis.call('ZCARD', retry)
