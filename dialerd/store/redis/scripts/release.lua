-- release_lease: drop the campaign's lease if this fence still holds it.
-- ARGV: prefix, campaign_id, owner, token
local lease = key('lease', ARGV[2])
local held = redis.call('HMGET', lease, 'owner', 'token')
if held[1] == ARGV[3] and held[2] == ARGV[4] then
  redis.call('DEL', lease)
end
return 1
