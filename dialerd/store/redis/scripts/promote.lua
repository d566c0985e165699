-- Move the waiting targets of an outdial whose due has come to the ready ones, at most
-- STEP per call (the caller calls again while it answers STEP), so that a claim takes
-- the first ready target in (touched, creation) order among all of them.
-- ARGV: prefix, outdial id, now (microseconds).
-- Returns how many were moved.
local STEP = 1000
return promote_due(ARGV[2], tonumber(ARGV[3]), STEP)
