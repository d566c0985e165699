-- The event sender's progress for one customer, under the customer's delivery lease
-- ('events:<customer>'): move its delivered position forward (never back) and count the
-- events moved past; or keep an event set aside as failed.
-- ARGV: prefix, customer, fence (lease name, owner, token), position ('' for none), how
--   many events the move passes, the failed record (JSON; '' when none) and its position
local customer, position, moved, failed, failed_at = ARGV[2], ARGV[6], ARGV[7], ARGV[8], ARGV[9]
local lease = 'events:' .. customer
if fenced_off(lease, 3) then
  return lease_lost(lease)
end
local function parts(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return tonumber(ms) or 0, tonumber(seq) or 0
end
local delivered = key('events_delivered')
local a1, a2 = parts(redis.call('HGET', delivered, customer) or '')
local b1, b2 = parts(position)
if b1 > a1 or (b1 == a1 and b2 > a2) then
  redis.call('HSET', delivered, customer, position)
  redis.call('HINCRBY', key('events_delivered_count'), customer, moved)
end
if failed ~= '' then
  redis.call('HSET', key('events_failed', customer), failed_at, failed)
end
return 1
