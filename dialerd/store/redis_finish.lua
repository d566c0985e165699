-- finish_attempt: end an active attempt exactly once and settle its target.
-- ARGV: prefix, campaigncall_id, result, reason, max_try_count_0..4 ("3,0,0,0,0"),
--   now (timestamp string), now (microseconds), fence (campaign id, owner, token),
--   give back the try ('1': a stop ended the call before it was answered)
-- Returns {'none'}, or {'stale' | 'done', campaigncall body, target body or nil}.
local id, result, reason = ARGV[2], ARGV[3], ARGV[4]
local max_counts = parse_max_counts(ARGV[5])
local now, now_micros = ARGV[6], ARGV[7]
local give_back = ARGV[11] == '1' 
local campaigncall_key = key('campaigncall', id)
local stored = redis.call('HMGET', campaigncall_key, 'b', 's', 'g')
if not stored[1] then
  return {'none'}
end
if fenced_off(stored[3], 8) then
  return lease_lost(stored[3])
end
local campaigncall = cjson.decode(stored[1])
local target_key = key('target', campaigncall.outdial_target_id)

local function target_body()
  local target = redis.call('HMGET', target_key, 'b', 'x', 'p')
  if target[1] and target[2] ~= '1' and target_visible(target[3]) then
    return target[1]
  end
  return false
end

if stored[2] == 'done' then
  return {'stale', stored[1], target_body()}
end

campaigncall.status = 'done'
campaigncall.result = result
campaigncall.reason = reason
campaigncall.tm_update = now
local body = cjson.encode(campaigncall)
redis.call('HSET', campaigncall_key, 'b', body, 's', 'done')
redis.call('SREM', key('active', stored[3]), id)
redis.call('SREM', key('dialing', stored[3]), id)
redis.call('SREM', key('active'), id)

local stored_target = redis.call('HMGET', target_key, 'b', 'x', 'm', 'rq', 'rs')
if stored_target[1] and stored_target[2] ~= '1' then
  local target = cjson.decode(stored_target[1])
  if target.status == 'progressing' then
    redis.call('SREM', key('progressing', target.outdial_id), target.id)
    target.tm_update = now
    local queue = ''
    if give_back and result ~= 'success' then
      -- The try was never really made: undo it, back to the place it had when claimed.
      local count = 'try_count_' .. campaigncall.destination_index
      target[count] = math.max(0, (tonumber(target[count]) or 0) - 1)
      target.status = 'idle'
      queue = stored_target[4] or 'r'
      local name = queue == 'f' and 'fresh' or 'retry'
      redis.call('ZADD', key(name, target.outdial_id), stored_target[5] or now_micros,
        stored_target[3])
    elseif result ~= 'success' and next_slot(target, max_counts) then
      target.status = 'idle'
      queue = 'r'
      redis.call('ZADD', key('retry', target.outdial_id), now_micros, stored_target[3])
    else
      target.status = 'done'
    end
    redis.call('HSET', target_key, 'b', cjson.encode(target), 'k', queue)
  end
end
return {'done', body, target_body()}
