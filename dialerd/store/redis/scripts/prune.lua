-- prune_locks: delete a customer's number locks that have ended (housekeeping).
-- ARGV: prefix, customer id, now (microseconds), then the numbers whose lock was read as
--   ended: each is deleted only if its lock is still not later than now.
-- Returns how many were deleted.
local locks = key('locks', ARGV[2])
local now = tonumber(ARGV[3])
local deleted = 0
for i = 4, #ARGV do
  local until_ = tonumber(redis.call('HGET', locks, ARGV[i]))
  if until_ and until_ <= now then
    redis.call('HDEL', locks, ARGV[i])
    deleted = deleted + 1
  end
end
return deleted
