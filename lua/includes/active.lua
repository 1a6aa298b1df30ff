-- Active users per feature class and recency bucket, for the predictive policy's tick:
-- O((occupied class ids + 1) * buckets * log N), whatever the number of classes.
-- `bounds` = {0, edge1, edge2, ...}: ascending bucket edges of the time since last activity,
-- ms (the last bucket is open). Appends to `out` the active premium users (seen up to now),
-- then for each class below n_classes that has active users, in ascending order: the
-- class, then its counts per bucket (#bounds of them), both tiers together.
-- Needs K.users_active (scores (class + PREMIUM_CLASS * premium) * CLASS + last seen ms).
-- The next occupied class id and its oldest member are found by one ZRANGE BYSCORE LIMIT 1
-- from the current one's end (empty classes cost nothing). The oldest (open) bucket, where
-- users linger until they expire, is one ZCOUNT, skipped when that oldest member is
-- younger. The rest are recent: up to FETCH_RECENT + 1 of them are read (one ZRANGE
-- BYSCORE LIMIT WITHSCORES); FETCH_RECENT or fewer are put in their buckets here, which
-- costs less than a ZCOUNT per bucket (each call from Lua costs about a microsecond more
-- than its own work); more are counted bucket by bucket (their total, then newest first,
-- stopping once all are placed: the last is what remains). A class costs 2-3 calls, or
-- O(buckets) for a crowded one, never O(users).
local FETCH_RECENT = 12
-- ids .. CLASS_START is the string of the score id * CLASS (a class's first score).
local CLASS_START = '0000000000000'

-- The decimal digits of ms when it is a 13-digit integer (unix ms from 2001 to 2286), else
-- false. A class's score bound is then the string id .. digits: Redis parses a string
-- argument, but a number argument it first formats (fpconv), 0.3 us more a call here.
local function ms_digits(ms)
  if ms >= 1000000000000 and ms < CLASS and ms == math.floor(ms) then return tostring(ms) end
  return false
end

local function count_active(out, now_ms, n_classes, bounds)
  local premium, counts, order = 0, {}, {}
  local nb = #bounds
  -- now - bounds[j] kept inside a class's band [0, CLASS): false below it (a clock
  -- earlier than an edge: the bound would reach into the class before), CLASS - 1 above
  local ms, digits = {}, {}  -- once a tick
  for j = 1, nb do
    local m = now_ms - bounds[j]
    if m < 0 then m = false elseif m > CLASS - 1 then m = CLASS - 1 end
    ms[j] = m
    digits[j] = m and ms_digits(m)
  end
  -- score bound of class id (its string ids) at now - bounds[j]; exclusive with '('
  local function at(ids, id, j)
    if digits[j] then return ids .. digits[j] end
    if not ms[j] then return '(' .. ids .. CLASS_START end  -- nothing of the class
    return id * CLASS + ms[j]
  end
  local function after(ids, id, j)
    if digits[j] then return '(' .. ids .. digits[j] end
    if not ms[j] then return ids .. CLASS_START end  -- all of the class
    return excl(id * CLASS + ms[j])
  end
  local from = 0
  while true do
    -- the next occupied class id, and its oldest member (scores rise with last seen)
    local nxt = redis.call('ZRANGE', K.users_active, from, '+inf', 'BYSCORE', 'LIMIT', 0, 1,
      'WITHSCORES')
    if not nxt[2] then break end
    local class, id, first_ms = score_parts(tonumber(nxt[2]))
    if id >= PREMIUM_CLASS + PREMIUM_CLASS then break end
    if class >= n_classes then
      -- beyond the classes asked for: on to the premium tier, or done
      if id >= PREMIUM_CLASS then break end
      from = PREMIUM_CLASS .. CLASS_START
    else
      local ids = tostring(id)
      local lo, hi = ids .. CLASS_START, at(ids, id, 1)
      local row = counts[class]
      if not row then
        row = {}
        for j = 1, nb do row[j] = 0 end
        counts[class] = row
        order[#order + 1] = class
      end
      local total
      if nb == 1 then
        total = redis.call('ZCOUNT', K.users_active, lo, hi)
        row[1] = row[1] + total
      else
        -- the oldest (open) bucket, counted only when the class's oldest member is in it
        local old = 0
        if ms[nb] and first_ms <= ms[nb] then
          old = redis.call('ZCOUNT', K.users_active, lo, at(ids, id, nb))
          row[nb] = row[nb] + old
        end
        -- the recent users themselves, when there are few: age = now - seen is in
        -- [0, bounds[nb]); one more than FETCH_RECENT says there are more
        local got = redis.call('ZRANGE', K.users_active, after(ids, id, nb), hi, 'BYSCORE',
          'LIMIT', 0, FETCH_RECENT + 1, 'WITHSCORES')
        if #got <= 2 * FETCH_RECENT then
          local base = id * CLASS
          for i = 2, #got, 2 do
            local age = now_ms - (tonumber(got[i]) - base)
            local j = nb - 1
            while j > 1 and age < bounds[j] do j = j - 1 end
            row[j] = row[j] + 1
          end
          total = old + #got / 2
        else
          -- many: counted bucket by bucket, newest first, stopping once all are placed
          -- (the last is what remains)
          local left = redis.call('ZCOUNT', K.users_active, after(ids, id, nb), hi)
          total = old + left
          for j = 1, nb - 1 do
            local n = 0
            if j == nb - 1 then
              n = left
            elseif left > 0 then
              n = redis.call('ZCOUNT', K.users_active, after(ids, id, j + 1), at(ids, id, j))
            end
            left = left - n
            row[j] = row[j] + n
          end
        end
      end
      if id >= PREMIUM_CLASS then premium = premium + total end
      from = (id + 1) .. CLASS_START
    end
  end
  table.sort(order)
  out[#out + 1] = premium
  for _, class in ipairs(order) do
    out[#out + 1] = class
    for j = 1, #bounds do out[#out + 1] = counts[class][j] end
  end
  return out
end
