-- start_attempts: claim ready targets and create their campaigncalls, one per plan, in
-- one step for as many plans as the short cut settles.
-- ARGV: prefix, the first plan's campaigncall body with placeholders for the target (it
--   names the campaign, customer, outdial and id, and tm_create = now), now
--   (microseconds), max_try_count_0..4 ("3,0,0,0,0"; '' when the short cut below must not
--   be taken: calling hours apply), the fence (campaign id, owner, token; owner '' when
--   unfenced), the calling rules' state to check ('1' when rules apply: a number's
--   lockout counts), the daily attempts per number ('' for no limit) and the UTC day
--   (YYYY-MM-DD), then either '' and four more '' (take the head of the ready queue) or
--   the claim dialerd.core.targets decided for the first plan's target: its id, slot, new
--   try count, the version it was read at, the E.164 readings of the slot's number as
--   the trunk dials it (JSON list: re-checked and counted) and the slots the decision
--   skipped as listed (JSON list); then the member of the ready index after which to go
--   on ('' from the head: see 'more'); then '1' to write each claimed campaigncall's
--   customer in P:where:<id> in the claim's own step (one Redis server: that key is on
--   no other node; '' on a cluster, where the caller writes it); then the campaign's and
--   its outplan's bodies as the caller read them last ('' and '' to claim on whatever
--   is stored: see 'reread'); then the next plans
--   (same campaign, outplan, now and fence), claimed in order after the first, each as
--   the three ids its campaigncall differs by from the first's body: "<id> <reference_id>
--   <activeflow_id>".
-- Returns {kind, heads, claims}: claims are the plans claimed, in order, each {campaigncall
--   body, then what finish_attempt decides from: the target's body and version after the
--   claim and its placement before (touched, due, until, slot, held)}; kind says what
--   the first plan not claimed met: 'done' (every plan was claimed), 'none' (no target
--   ready), 'decide' when the head's placement is not the short cut below: heads are the
--   head and up to BATCH - 1 ready targets right behind it that are not either, each {id,
--   body, version, touched, due, until, slot, held}, for the caller to decide in order;
--   'changed' when the decided target is no longer that ready target, or a reading of
--   its number is no longer clear (nothing claimed then); 'again' when the next plan's
--   campaigncall already exists (the caller asks again with it first: an error then);
--   'promote' when more waiting targets are due than one call moves (the caller moves
--   them all, promote.lua, and asks again); 'more' when STEP staged targets were
--   stepped over with nothing found (heads = {the last one}: the caller asks again from
--   there); 'reread' when the campaign or its outplan is no longer stored as the caller
--   read them (heads = {campaign body or false, outplan body or false} as stored now, as
--   campaign_and_outplan answers; nothing claimed, nothing else checked). An error when
--   the stored campaign is not running, or the first plan's campaigncall exists.
-- The only checks made here are the short cut of dialerd.core.targets (the placement's
-- slot still has a try left under this outplan, its `until` has not passed, and its
-- number is a tel number, E.164, which the trunk dials as written) and the re-check that
-- the number to dial is clear (not on the do-not-call list, and when rules apply not
-- locked and below the day's attempts) in the claim's own step.
local STEP = 1000
local BATCH = 100
local FIRST_NEXT = 21  -- ARGV index of the second plan's ids
local now_micros = tonumber(ARGV[3])
local max_counts = parse_max_counts(ARGV[4])
local with_rules, daily, day = ARGV[8] == '1', tonumber(ARGV[9]), ARGV[10]
local chosen_id = ARGV[11]
local resume = ARGV[17]
local write_where = ARGV[18] == '1'
local campaigncall = cjson.decode(ARGV[2])
local outdial, campaign, customer, now =
  campaigncall.outdial_id, campaigncall.campaign_id, campaigncall.customer_id,
  campaigncall.tm_create
-- A tick claiming on what it read last: a change stored since is read again first.
local campaign_read, outplan_read = ARGV[19], ARGV[20]
if campaign_read ~= '' then
  local stored = redis.call('HMGET', key('campaign', campaign), 'b', 'x')
  local outplan = redis.call('HMGET', key('outplan', campaigncall.outplan_id), 'b', 'c', 'x')
  if stored[1] ~= campaign_read or stored[2] == '1' or outplan[1] ~= outplan_read
      or outplan[2] ~= customer or outplan[3] == '1' then
    return {'reread', campaign_and_outplan(campaign), {}}
  end
end
if fenced_off(campaign, 5) then
  return lease_lost(campaign)
end
-- From the moment a stop is stored, nothing is claimed (not even by a tick under way).
local campaign_state = redis.call('HMGET', key('campaign', campaign), 's', 'x')
if campaign_state[1] ~= 'run' or campaign_state[2] == '1' then
  return not_running(campaign)
end
if redis.call('EXISTS', key('campaigncall', campaigncall.id)) == 1 then
  return conflict('campaigncall ' .. campaigncall.id .. ' already exists')
end

local ready = key('ready', outdial)
local dnc, locks = key('dnc', customer), key('locks', customer)
local attempts = key('attempts', customer, day)
local claims = {}

-- The atomic re-check of a claim's number, every reading of it: none listed, and (when
-- rules apply) none locked now nor at the day's attempts. Anything else the core
-- decides (or decides again).
local function numbers_clear(numbers)
  for _, number in ipairs(numbers) do
    if redis.call('SISMEMBER', dnc, number) == 1 then
      return false
    end
    if with_rules then
      if (tonumber(redis.call('HGET', locks, number)) or 0) > now_micros then
        return false
      end
      if daily and (tonumber(redis.call('HGET', attempts, number)) or 0) >= daily then
        return false
      end
    end
  end
  return true
end

local function slot_address(target, slot)
  local address = target['destination_' .. slot]
  return type(address) == 'table' and address or {}
end

-- The waiting targets whose due has come join the ready ones at their touched; false
-- when more are due than one call moves.
local function promote()
  return promote_due(outdial, now_micros, STEP)
end

local function claim(target_key, member, target, slot, try_count, numbers, skipped)
  target['try_count_' .. slot] = try_count
  target.status = 'progressing'
  target.tm_update = now
  if #skipped > 0 then
    local entries = {}
    for i, index in ipairs(skipped) do
      entries[i] = {destination_index = index, reason = 'dnc'}
    end
    target.skipped_destinations = entries
  else
    target.skipped_destinations = nil
  end
  redis.call('ZREM', ready, member)
  -- The placement before the claim, so a try given back puts the target there again.
  local before = redis.call('HMGET', target_key, 'pt', 'pd', 'pu', 'ps', 'ph')
  local target_body = cjson.encode(target)
  before = {before[1] or ARGV[3], before[2] or ARGV[3], before[3] or '',
    before[4] or -1, before[5] or ''}
  redis.call('HSET', target_key, 'b', target_body, 'k', 'p', 'a', campaigncall.id,
    'bt', before[1], 'bd', before[2], 'bu', before[3], 'bs', before[4], 'bh', before[5])
  local version = redis.call('HINCRBY', target_key, 'v', 1)
  redis.call('HDEL', target_key, 'p')
  redis.call('SADD', key('progressing', outdial), target.id)
  if with_rules and daily then
    for _, number in ipairs(numbers) do
      redis.call('HINCRBY', attempts, number, 1)
    end
    redis.call('EXPIRE', attempts, 3 * 86400)
  end

  local campaigncall_id = campaigncall.id
  campaigncall.outdial_target_id = target.id
  campaigncall.destination = target['destination_' .. slot]
  campaigncall.destination_index = slot
  campaigncall.try_count = try_count
  local body = cjson.encode(campaigncall)
  local listed = now .. '|' .. campaigncall_id
  redis.call('HSET', key('campaigncall', campaigncall_id),
    'b', body, 'c', customer, 'g', campaign, 's', 'dialing', 'l', listed)
  redis.call('ZADD', key('campaigncalls', customer), 0, listed)
  redis.call('ZADD', key('campaigncalls', customer, campaign), 0, listed)
  redis.call('SADD', key('active', campaign), campaigncall_id)
  redis.call('SADD', key('dialing', campaign), campaigncall_id)
  redis.call('SADD', key('active'), campaigncall_id)
  if write_where then
    redis.call('SET', P .. ':where:' .. campaigncall_id, customer)
  end
  outbox_add(customer, campaign, 'campaigncall_created', body)
  claims[#claims + 1] = {body, target_body, tostring(version), before[1], before[2],
    before[3], tostring(before[4]), before[5]}
end

-- The next plan's campaigncall, or the reply when there is none (or it cannot be made).
local next_plan = FIRST_NEXT
local function advance()
  if next_plan > #ARGV then
    return {'done', {}, claims}
  end
  -- The first plan's body with the next one's ids (claim sets every other field that
  -- differs between two claims).
  campaigncall.id, campaigncall.reference_id, campaigncall.activeflow_id =
    string.match(ARGV[next_plan], '^(%S+) (%S+) (%S+)$')
  next_plan = next_plan + 1
  if redis.call('EXISTS', key('campaigncall', campaigncall.id)) == 1 then
    return {'again', {}, claims}  -- asked again with this plan first, it is refused then
  end
  return nil
end

local moved = promote()
if moved == STEP then
  return {'promote', {}, claims}
end
if chosen_id ~= '' then
  -- The caller decided on this target as it read it: claim it if it is still that one.
  local target_key = key('target', chosen_id)
  local stored = redis.call('HMGET', target_key, 'b', 'p', 'v', 'k', 'm', 'o')
  if not stored[1] or stored[4] ~= 'r' or (stored[3] or '') ~= ARGV[14] or stored[6] ~= outdial
      or not target_visible(stored[2]) then
    return {'changed', {}, claims}
  end
  local target, slot = cjson.decode(stored[1]), tonumber(ARGV[12])
  local numbers = cjson.decode(ARGV[15])
  if not numbers_clear(numbers) then
    return {'changed', {}, claims}  -- listed, locked or counted meanwhile: decide again
  end
  claim(target_key, stored[5], target, slot, tonumber(ARGV[13]), numbers, cjson.decode(ARGV[16]))
  local stop = advance()
  if stop then
    return stop
  end
  moved = promote()
  if moved == STEP then
    return {'promote', {}, claims}
  end
end

-- Each plan takes the head when the short cut holds; else the head and the heads right
-- behind it that the short cut does not settle either (at most BATCH) go back to the
-- caller. The claimed head leaves the ready queue, so the next plan goes on from the same
-- offset: the staged targets before it are not stepped over again. A call that goes on
-- from where the last one stopped starts from the head again when targets joined.
local offset, stepped, heads, kept = 0, 0, {}, nil
if resume ~= '' and moved == 0 and chosen_id == '' then
  local rank = redis.call('ZRANK', ready, resume)
  if rank then
    offset = rank + 1
  end
end
while stepped < STEP and #heads < BATCH do
  local member = redis.call('ZRANGE', ready, offset, offset)[1]
  if not member then
    break
  end
  local target_key = key('target', string.sub(member, 17))
  local stored = redis.call('HMGET', target_key, 'b', 'p', 'v', 'pt', 'pd', 'pu', 'ps', 'ph')
  if not stored[1] then
    redis.call('ZREM', ready, member)  -- not expected: an index entry without its target
  elseif not target_visible(stored[2]) then
    if batch_abandoned(stored[2]) then
      drop_target(target_key)
    else
      offset = offset + 1  -- staged by an import not published yet
      kept = member
    end
    stepped = stepped + 1
  else
    local target = cjson.decode(stored[1])
    local slot = tonumber(stored[7]) or -1
    local until_ = tonumber(stored[6])
    local address = slot >= 0 and slot_address(target, slot) or {}
    local number = address.target or ''
    if slot >= 0 and (tonumber(target['try_count_' .. slot]) or 0) < (max_counts[slot + 1] or 0)
        and (until_ == nil or now_micros < until_) and address.type == 'tel'
        and string.sub(number, 1, 1) == '+' and numbers_clear({number}) then
      if #heads > 0 then
        break  -- the heads before it are decided first
      end
      claim(target_key, member, target, slot, (tonumber(target['try_count_' .. slot]) or 0) + 1,
        {number}, {})
      local stop = advance()
      if stop then
        return stop
      end
      moved = promote()
      if moved == STEP then
        return {'promote', {}, claims}
      end
      if moved > 0 then
        offset, stepped = 0, 0  -- targets joined the ready ones: from the head again
      end
    else
      heads[#heads + 1] = {string.sub(member, 17), stored[1], stored[3] or '', stored[4] or '',
        stored[5] or '', stored[6] or '', stored[7] or '', stored[8] or ''}
      offset = offset + 1
    end
  end
end
if #heads == 0 then
  if stepped >= STEP then
    return {'more', {kept or ''}, claims}
  end
  return {'none', {}, claims}
end
return {'decide', heads, claims}
