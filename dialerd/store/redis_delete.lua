-- Soft-delete a campaign, outplan, outdial or finished campaigncall of one customer.
-- The caller read the stored body and built the deleted one; if the stored body changed
-- in between, nothing is written and the caller reads again.
-- ARGV: prefix, kind, id, customer_id, expected body, deleted body
-- Returns 'gone', 'changed' or 'ok'.
local kind, id, customer, expected, deleted =
  ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local resource = key(kind, id)
local old = redis.call('HMGET', resource, 'b', 'c', 'l', 's', 'x', 'g')
if not old[1] or old[5] == '1' or old[2] ~= customer then
  return 'gone'
end
if old[1] ~= expected then
  return 'changed'
end
if kind == 'campaigncall' and old[4] ~= 'done' then
  return conflict('campaigncall ' .. id .. ' is active and cannot be deleted')
end
redis.call('HSET', resource, 'b', deleted, 'x', '1')
redis.call('ZREM', key(kind .. 's', customer), old[3])
if kind == 'campaign' and old[4] and old[4] ~= '' then
  redis.call('SREM', key('status', old[4]), id)
end
if kind == 'campaigncall' then
  redis.call('ZREM', key('campaigncalls', customer, old[6]), old[3])
end
return 'ok'
