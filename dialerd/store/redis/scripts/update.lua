-- Replace a not-deleted campaign, outplan or outdial, moving its index entries. A
-- campaign set running (or running on another outplan or outdial) must find its outplan
-- and outdial (its customer's, not deleted), else nothing is written and the caller
-- reads again (delete.lua's pair).
-- ARGV: prefix, kind, id, customer_id, listing member, status ('' if none), body,
--   fence (campaign id, owner, token; owner '' when unfenced), and the condition on the
--   stored resource's tm_update ('-': none; '=' and the value it must still have), and
--   why a campaign changed (its event's cause; '' when not said)
local kind, id, customer, member, status, body =
  ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7]
local resource = key(kind, id)
if fenced_off(id, 8) then
  return lease_lost(id)
end
local old = redis.call('HMGET', resource, 'b', 'c', 'l', 's', 'x')
if not old[1] or old[5] == '1' then
  return conflict(kind .. ' ' .. id .. ' does not exist or is deleted')
end
-- '-' for no condition, else '=' and the tm_update expected ('' when it is null).
local condition = ARGV[11]
if condition and condition ~= '-' then
  local stored = cjson.decode(old[1]).tm_update
  if type(stored) ~= 'string' then
    stored = ''
  end
  if stored ~= string.sub(condition, 2) then
    return redis.error_reply('DIALERD_CHANGED ' .. kind .. ' ' .. id .. ' changed since it was read')
  end
end
local function starts_using(stored, campaign)
  return old[4] ~= 'run' or stored.outplan_id ~= campaign.outplan_id
    or stored.outdial_id ~= campaign.outdial_id
end
local campaign = kind == 'campaign' and status == 'run' and cjson.decode(body)
if campaign and starts_using(cjson.decode(old[1]), campaign) then
  for _, used in ipairs({'outplan', 'outdial'}) do
    local found = redis.call('HMGET', key(used, campaign[used .. '_id']), 'c', 'x')
    if found[1] ~= customer or found[2] == '1' then
      return redis.error_reply('DIALERD_CHANGED campaign ' .. id .. ': its ' .. used .. ' is gone')
    end
  end
end
redis.call('ZREM', key(kind .. 's', old[2]), old[3])
redis.call('ZADD', key(kind .. 's', customer), 0, member)
if old[4] and old[4] ~= '' then
  redis.call('SREM', key('status', old[4]), id)
end
if status ~= '' then
  redis.call('SADD', key('status', status), id)
end
redis.call('HSET', resource, 'b', body, 'c', customer, 'l', member, 's', status)
if kind == 'campaign' then
  outbox_add(customer, id, 'campaign_updated', body, 'x', ARGV[12] or '')
end
return 1
