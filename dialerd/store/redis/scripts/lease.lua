-- acquire_lease: take the campaign's lease, or renew it for its owner.
-- ARGV: prefix, campaign_id, owner, ttl (milliseconds)
-- Returns the fencing token, or nil while another owner holds the lease. The lease key
-- exists only while the lease is valid (PEXPIRE: the server's clock). Tokens come from a
-- counter that only grows, taken when the lease changes hands: lease_holder remembers the
-- last holder, so an owner that re-takes its own lapsed lease (nobody held it meanwhile)
-- keeps its token and every other owner gets a greater one.
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
local counter, holder = key('lease_token', campaign), key('lease_holder', campaign)
local token = redis.call('GET', counter)
if not token or redis.call('GET', holder) ~= owner then
  token = redis.call('INCR', counter)
  redis.call('SET', holder, owner)
end
redis.call('HSET', lease, 'owner', owner, 'token', token)
redis.call('PEXPIRE', lease, ttl)
return tonumber(token)
