-- Prelude of every dialerd script: key names and the slot rule of behaviour.md §4.
-- ARGV[1] is always the key prefix; keys are built here so one layout serves all scripts.
local P = ARGV[1]

local function key(...)
  return P .. ':' .. table.concat({...}, ':')
end

local function conflict(message)
  return redis.error_reply('DIALERD_CONFLICT ' .. message)
end

-- A slot counts only if its address has a non-empty target to dial.
local function has_destination(address)
  return type(address) == 'table' and type(address.target) == 'string' and address.target ~= ''
end

-- The first slot 0..4 with a destination and tries left under max_counts, or nil.
local function next_slot(target, max_counts)
  for n = 0, 4 do
    if has_destination(target['destination_' .. n])
        and (tonumber(target['try_count_' .. n]) or 0) < max_counts[n + 1] then
      return n
    end
  end
  return nil
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

-- Remove a target with all its index entries (a leftover of an abandoned import).
local function drop_target(target_key)
  local stored = redis.call('HMGET', target_key, 'o', 'm', 'k', 'l')
  local outdial, member, queue, listed = stored[1], stored[2], stored[3], stored[4]
  if outdial then
    if listed and listed ~= '' then
      redis.call('ZREM', key('targets', outdial), listed)
    end
    if queue == 'f' then
      redis.call('ZREM', key('fresh', outdial), member)
    elseif queue == 'r' then
      redis.call('ZREM', key('retry', outdial), member)
    elseif queue == 'p' then
      redis.call('SREM', key('progressing', outdial), string.sub(target_key, #P + 9))
    end
  end
  redis.call('DEL', target_key)
end

-- A fenced write passes the lease it holds as three arguments from index i on: campaign
-- id, owner, token (owner '' when the write is not fenced). It is refused unless that is
-- the campaign's lease now; the lease key exists only while the lease is valid.
local function fenced_off(campaign, i)
  local owner = ARGV[i + 1]
  if owner == nil or owner == '' then
    return false
  end
  if ARGV[i] ~= campaign then
    return true
  end
  local held = redis.call('HMGET', key('lease', campaign), 'owner', 'token')
  return held[1] ~= owner or held[2] ~= ARGV[i + 2]
end

local function not_running(campaign)
  return redis.error_reply('DIALERD_NOT_RUNNING campaign ' .. campaign .. ' is not running')
end

local function lease_lost(campaign)
  return redis.error_reply('DIALERD_LEASE_LOST campaign ' .. campaign .. ': lease no longer held')
end
