-- Create a campaign, outplan or outdial with its listing (and status) index.
-- ARGV: prefix, kind, id, customer_id, listing member, status ('' if none), body
local kind, id, customer, member, status, body =
  ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7]
local resource = key(kind, id)
if redis.call('EXISTS', resource) == 1 then
  return conflict(kind .. ' ' .. id .. ' already exists')
end
redis.call('HSET', resource, 'b', body, 'c', customer, 'l', member, 's', status)
redis.call('ZADD', key(kind .. 's', customer), 0, member)
if status ~= '' then
  redis.call('SADD', key('status', status), id)
end
if kind == 'campaign' then
  outbox_add(customer, id, 'campaign_created', body)
end
return 1
