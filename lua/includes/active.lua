-- Active users per feature class and recency bucket, for the predictive policy's tick:
-- O((occupied class ids + 1) * buckets * log N), whatever the number of classes.
-- `bounds` = {0, edge1, edge2, ...}: ascending bucket edges of the time since last activity,
-- ms (the last bucket is open). Appends to `out` the active premium users (seen up to now),
-- then for each class below n_classes that has active users, in ascending order: the
-- class, then its counts per bucket (#bounds of them), both tiers together.
-- Needs K.users_active (scores (class + PREMIUM_CLASS * premium) * CLASS + last seen ms).
-- The next occupied class id is found by one ZRANGE BYSCORE LIMIT 1 from the current
-- one's end (empty classes cost nothing). A class's buckets add up to its users, so one
-- ZCOUNT of that total comes first, then the oldest (open) bucket, where users linger
-- until they expire; the buckets between, newest first, stop once the total is reached,
-- and the last of them is what remains: a class of long-idle users costs 3 calls.
local function count_active(out, now_ms, n_classes, bounds)
  local premium, counts, order = 0, {}, {}
  local from = 0
  while true do
    local nxt = redis.call('ZRANGE', K.users_active, from, '+inf', 'BYSCORE', 'LIMIT', 0, 1,
      'WITHSCORES')
    if not nxt[2] then break end
    local class, id = score_parts(tonumber(nxt[2]))
    if id >= PREMIUM_CLASS + PREMIUM_CLASS then break end
    if class >= n_classes then
      -- beyond the classes asked for: on to the premium tier, or done
      if id >= PREMIUM_CLASS then break end
      from = PREMIUM_CLASS * CLASS
    else
      local base = id * CLASS
      local left = redis.call('ZCOUNT', K.users_active, base, base + now_ms)
      if id >= PREMIUM_CLASS then premium = premium + left end
      local row = counts[class]
      if not row then
        row = {}
        for j = 1, #bounds do row[j] = 0 end
        counts[class] = row
        order[#order + 1] = class
      end
      local nb = #bounds
      if nb > 1 and left > 0 then
        local old = redis.call('ZCOUNT', K.users_active, base, base + now_ms - bounds[nb])
        row[nb] = row[nb] + old
        left = left - old
      end
      for j = 1, nb - 1 do
        local n = 0
        if j == nb - 1 then
          n = left
        elseif left > 0 then
          n = redis.call('ZCOUNT', K.users_active, excl(base + now_ms - bounds[j + 1]),
            base + now_ms - bounds[j])
        end
        left = left - n
        row[j] = row[j] + n
      end
      if nb == 1 then row[1] = row[1] + left end
      from = (id + 1) * CLASS
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
