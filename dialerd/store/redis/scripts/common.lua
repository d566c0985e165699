-- Prelude of every dialerd script: key names and the indexes of targets. No dialing rule
-- lives here: the placements come from dialerd.core.targets.
-- ARGV[1] is always the key prefix P; KEYS[1] the customer's tag 'P:{c:<customer>}' that
-- every key of the script starts with (key layout 3): all of them hash to one slot, so
-- the script runs on one node of a cluster, routed there by KEYS[1].
local P = ARGV[1]
local T = KEYS[1] or P

local function key(...)
  return T .. ':' .. table.concat({...}, ':')
end

local function conflict(message)
  return redis.error_reply('DIALERD_CONFLICT ' .. message)
end

-- max_try_count_0..4 of the outplan, passed as one argument: "3,0,0,0,0".
local function parse_max_counts(text)
  local counts = {}
  for count in string.gmatch(text, '-?%d+') do
    counts[#counts + 1] = tonumber(count)
  end
  return counts
end

-- A target written by a staged import (field p = its batch) stays invisible until that
-- batch is published.
local function target_visible(batch)
  return not batch or redis.call('EXISTS', key('imported', batch)) == 1
end

-- An unpublished batch whose import marker is gone was abandoned (its importer died).
local function batch_abandoned(batch)
  return redis.call('EXISTS', key('import', batch)) == 0
end

-- The index a target is in, by its queue letter (field k): 'r' ready (score: touched),
-- 'w' waiting (score: due; also in P:waiting_held:<outdial>:<held>, to count them by
-- why they wait), 'p' progressing, 'n' idle with nothing to dial, 'd' done and held
-- (P:done_held:<outdial>:<held>: done because of the do-not-call list), '' none.
local function index_target(letter, outdial, member, id, touched, due, held)
  if letter == 'r' then
    redis.call('ZADD', key('ready', outdial), touched, member)
  elseif letter == 'w' then
    redis.call('ZADD', key('waiting', outdial), due, member)
    if held and held ~= '' then
      redis.call('ZADD', key('waiting_held', outdial, held), due, member)
    end
  elseif letter == 'p' then
    redis.call('SADD', key('progressing', outdial), id)
  elseif letter == 'n' then
    redis.call('SADD', key('held', outdial), id)
  elseif letter == 'd' then
    redis.call('SADD', key('done_held', outdial, held), id)
  end
end

-- Whether the end of attempt `id` decides its target: the target is progressing (queue
-- letter `letter`) and not for another attempt that is live (field a: the campaigncall
-- id the claim, or restore_attempt.lua, wrote). After a failover the new primary may
-- have an older attempt of the target still active (its end lost) while a later one is
-- live: the older one's end must not move the target. A target claimed by a dialerd
-- that wrote no field a (`attempt` false), or a stale one (that attempt ended), is
-- decided by any attempt's end, as then.
local function progressing_for(letter, attempt, id)
  if letter ~= 'p' then
    return false
  end
  if not attempt or attempt == id then
    return true
  end
  local status = redis.call('HGET', key('campaigncall', attempt), 's')
  return status ~= 'dialing' and status ~= 'progressing'
end

local function unindex_target(letter, outdial, member, id, held)
  if letter == 'r' then
    redis.call('ZREM', key('ready', outdial), member)
  elseif letter == 'w' then
    redis.call('ZREM', key('waiting', outdial), member)
    if held and held ~= '' then
      redis.call('ZREM', key('waiting_held', outdial, held), member)
    end
  elseif letter == 'p' then
    redis.call('SREM', key('progressing', outdial), id)
  elseif letter == 'n' then
    redis.call('SREM', key('held', outdial), id)
  elseif letter == 'd' then
    redis.call('SREM', key('done_held', outdial, held or ''), id)
  end
end

-- Move at most `limit` waiting targets of the outdial whose due has come (score up to
-- `now`, microseconds) to the ready ones, at their touched; how many were moved.
local function promote_due(outdial, now, limit)
  local waiting, ready = key('waiting', outdial), key('ready', outdial)
  local come = redis.call('ZRANGE', waiting, '-inf', now, 'BYSCORE', 'LIMIT', 0, limit)
  for _, member in ipairs(come) do
    local target_key = key('target', string.sub(member, 17))
    local placed = redis.call('HMGET', target_key, 'pt', 'ph')
    unindex_target('w', outdial, member, nil, placed[2])
    redis.call('ZADD', ready, placed[1] or now, member)
    redis.call('HSET', target_key, 'k', 'r', 'ph', '')
  end
  return #come
end

-- Remove a target with all its index entries (a leftover of an abandoned import).
local function drop_target(target_key)
  local stored = redis.call('HMGET', target_key, 'o', 'm', 'k', 'l', 'ph')
  local outdial, member, queue, listed = stored[1], stored[2], stored[3], stored[4]
  if outdial then
    if listed and listed ~= '' then
      redis.call('ZREM', key('targets', outdial), listed)
    end
    unindex_target(queue, outdial, member, string.sub(target_key, #T + 9), stored[5])
  end
  redis.call('DEL', target_key)
end

-- A fenced write passes the lease it holds as three arguments from index i on (of ARGV,
-- or of the given table of a packed argument): campaign id, owner, token (owner '' when
-- the write is not fenced). It is refused unless that is the campaign's lease now; the
-- lease key exists only while the lease is valid.
local function fenced_off(campaign, i, args)
  args = args or ARGV
  local owner = args[i + 1]
  if owner == nil or owner == '' then
    return false
  end
  if args[i] ~= campaign then
    return true
  end
  local held = redis.call('HMGET', key('lease', campaign), 'owner', 'token')
  return held[1] ~= owner or held[2] ~= tostring(args[i + 2])
end

local function not_running(campaign)
  return redis.error_reply('DIALERD_NOT_RUNNING campaign ' .. campaign .. ' is not running')
end

local function lease_lost(campaign)
  return redis.error_reply('DIALERD_LEASE_LOST campaign ' .. campaign .. ': lease no longer held')
end

-- What a tick reads, in one step: a campaign and its outplan ({body or false, body or
-- false}): false for a campaign that is gone, and for an outplan that is gone or another
-- customer's (dialing.lua; start.lua when the tick's read is stale).
local function campaign_and_outplan(campaign_id)
  local campaign = redis.call('HMGET', key('campaign', campaign_id), 'b', 'c', 'x')
  if not campaign[1] or campaign[3] == '1' then
    return {false, false}
  end
  local outplan_id = cjson.decode(campaign[1]).outplan_id
  local outplan = redis.call('HMGET', key('outplan', outplan_id), 'b', 'c', 'x')
  if not outplan[1] or outplan[3] == '1' or outplan[2] ~= campaign[2] then
    return {campaign[1], false}
  end
  return {campaign[1], outplan[1]}
end
