-- Do-not-call numbers of one customer: add, remove, publish and move a staged import.
-- ARGV: prefix, op, then per op:
--   add: entry bodies (DncNumber JSON) -> the stored body of each entry's number
--   remove: customer, number -> the removed body, or nil
--   publish: batch -> 1 (the staged list is kept until moved, and no longer expires)
--   move: batch, count -> how many staged entries are left after moving up to count
-- A number already listed keeps its entry. The set P:dnc:<customer> is what a claim
-- checks (SISMEMBER); the hash P:dnc_entries:<customer> holds the bodies, and the
-- listing P:dnc_listing:<customer> the members '<tm_create>|<number>'.
local op = ARGV[2]

local function add(body)
  local entry = cjson.decode(body)
  local customer, number = entry.customer_id, entry.number
  if redis.call('SADD', key('dnc', customer), number) == 1 then
    redis.call('HSET', key('dnc_entries', customer), number, body)
    redis.call('ZADD', key('dnc_listing', customer), 0, entry.tm_create .. '|' .. number)
  end
  return customer, number
end

if op == 'add' then
  local stored = {}
  for i = 3, #ARGV do
    local customer, number = add(ARGV[i])
    stored[#stored + 1] = redis.call('HGET', key('dnc_entries', customer), number)
  end
  return stored
elseif op == 'remove' then
  local customer, number = ARGV[3], ARGV[4]
  local body = redis.call('HGET', key('dnc_entries', customer), number)
  if not body then
    return nil
  end
  local entry = cjson.decode(body)
  redis.call('SREM', key('dnc', customer), number)
  redis.call('HDEL', key('dnc_entries', customer), number)
  redis.call('ZREM', key('dnc_listing', customer), entry.tm_create .. '|' .. number)
  return body
elseif op == 'publish' then
  redis.call('PERSIST', key('dnc_staged', ARGV[3]))
  redis.call('SADD', key('dnc_publishing'), ARGV[3])
  return 1
elseif op == 'move' then
  local staged = key('dnc_staged', ARGV[3])
  local bodies = redis.call('LPOP', staged, tonumber(ARGV[4]))
  if bodies then
    for _, body in ipairs(bodies) do
      add(body)
    end
  end
  local left = redis.call('LLEN', staged)
  if left == 0 then
    redis.call('SREM', key('dnc_publishing'), ARGV[3])
  end
  return left
end
return redis.error_reply('unknown op ' .. tostring(op))
