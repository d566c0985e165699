-- write_back (after a failover): re-assert a lease this instance holds, on a primary
-- that may have lost it.
-- ARGV: prefix, campaign_id, owner, token, ttl (milliseconds)
-- The token counter never goes back below a token handed out: it is raised to `token`
-- if the new primary lost the increments. Returns 1 when the lease is the owner's (kept
-- or written again), 0 when another owner holds it on this primary (the owner lost it).
local campaign, owner, token, ttl = ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5]
local lease = key('lease', campaign)
local counter, holder = key('lease_token', campaign), key('lease_holder', campaign)
if (tonumber(redis.call('GET', counter)) or 0) < token then
  redis.call('SET', counter, token)
end
local held = redis.call('HMGET', lease, 'owner', 'token')
if held[1] and (held[1] ~= owner or tonumber(held[2]) ~= token) then
  return 0
end
redis.call('HSET', lease, 'owner', owner, 'token', token)
redis.call('PEXPIRE', lease, ttl)
redis.call('SET', holder, owner)
return 1
