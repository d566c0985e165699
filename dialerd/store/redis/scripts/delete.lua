-- Soft-delete a campaign, outplan, outdial or finished campaigncall of one customer.
-- The caller read the stored body and built the deleted one; if the stored body changed
-- in between, nothing is written and the caller reads again. An outplan or outdial that
-- a 'run' or 'stopping' campaign of the customer uses is not deleted: the ids of those
-- campaigns are returned instead (update.lua refuses to set a campaign running whose
-- outplan or outdial is deleted, so one of the two steps always sees the other).
-- ARGV: prefix, kind, id, customer_id, expected body, deleted body
-- Returns 'gone', 'changed', 'ok' or the list of the campaigns using it.
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
if kind == 'outplan' or kind == 'outdial' then
  local field = kind .. '_id'
  local users = {}
  for _, status in ipairs({'run', 'stopping'}) do
    for _, campaign in ipairs(redis.call('SMEMBERS', key('status', status))) do
      local user = redis.call('HMGET', key('campaign', campaign), 'b', 'c', 'x')
      if user[1] and user[2] == customer and user[3] ~= '1'
        and cjson.decode(user[1])[field] == id then
        users[#users + 1] = campaign
      end
    end
  end
  if #users > 0 then
    table.sort(users)
    return users
  end
end
redis.call('HSET', resource, 'b', deleted, 'x', '1')
redis.call('ZREM', key(kind .. 's', customer), old[3])
if kind == 'campaign' and old[4] and old[4] ~= '' then
  redis.call('SREM', key('status', old[4]), id)
end
if kind == 'campaigncall' then
  redis.call('ZREM', key('campaigncalls', customer, old[6]), old[3])
end
if kind == 'campaign' then
  outbox_add(customer, id, 'campaign_deleted', deleted)
end
return 'ok'
