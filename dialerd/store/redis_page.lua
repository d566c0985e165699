-- One newest-first page of a listing index, with the bodies, read in one consistent step.
-- ARGV: prefix, kind, listing key (without prefix), max bound ('+' or '(<token>'), limit
-- Returns {next page token or '', body, body, ...}. Targets of an unpublished import are
-- skipped; at most SCAN entries are looked at, so a page may come back short (even
-- empty) with a token to go on from.
local SCAN = 1000
local kind, listing, bound, limit = ARGV[2], P .. ':' .. ARGV[3], ARGV[4], tonumber(ARGV[5])
local page, last_item, scanned = {''}, nil, 0
while scanned < SCAN do
  local members = redis.call('ZRANGE', listing, bound, '-', 'BYLEX', 'REV', 'LIMIT', 0, limit + 1)
  if #members == 0 then
    return page
  end
  for _, member in ipairs(members) do
    local stored = redis.call('HMGET', key(kind, string.match(member, '|(.*)$')), 'b', 'p')
    if stored[1] and (kind ~= 'target' or target_visible(stored[2])) then
      if #page - 1 == limit then
        page[1] = last_item
        return page
      end
      page[#page + 1] = stored[1]
      last_item = member
    end
    scanned = scanned + 1
    bound = '(' .. member
  end
end
page[1] = string.sub(bound, 2)
return page
