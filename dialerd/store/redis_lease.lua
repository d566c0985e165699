-- acquire_lease: take the campaign's lease, or renew it for its owner.
-- ARGV: prefix, campaign_id, owner, ttl (milliseconds)
-- Returns the fencing token, or nil while another owner holds the lease. The token comes
-- from a counter that only grows, so every new holder's token is greater.
local campaign, owner, ttl = ARGV[2], ARGV[3], ARGV[4]
local lease = key('lease', campaign)
local held = redis.call('HMGET', lease, 'owner', 'token')
if held[1] == owner then
  redis.call('PEXPIRE', lease, ttl)
  return tonumber(held[2])
end
if held[1] then
  return nil
end
local token = redis.call('INCR', key('lease_token', campaign))
redis.call('HSET', lease, 'owner', owner, 'token', token)
redis.call('PEXPIRE', lease, ttl)
return token
