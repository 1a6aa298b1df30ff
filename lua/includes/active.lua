-- Active users per feature class and recency bucket, for the predictive policy's tick:
-- O((occupied classes + 1) * buckets * log N), whatever the number of classes.
-- `bounds` = {0, edge1, edge2, ...}: ascending bucket edges of the time since last activity,
-- ms (the last bucket is open). Appends to `out` the active premium users, then for each
-- class below n_classes that has active users, in ascending order: the class, then its
-- counts per bucket (#bounds of them).
-- Needs K.users_active (scores class * CLASS + last seen ms) and K.users_premium.
-- The next occupied class is found by one ZRANGE BYSCORE LIMIT 1 from the current class's
-- end (empty classes cost nothing); a class's buckets add up to its users, so one ZCOUNT
-- of that total comes first and the buckets after it stop once the total is reached (the
-- oldest bucket is what remains).
local function count_active(out, now_ms, n_classes, bounds)
  out[#out + 1] = redis.call('ZINTERCARD', 2, K.users_active, K.users_premium)
  local from = 0
  while true do
    local nxt = redis.call('ZRANGE', K.users_active, from, '+inf', 'BYSCORE', 'LIMIT', 0, 1,
      'WITHSCORES')
    if not nxt[2] then break end
    local class = math.floor(tonumber(nxt[2]) / CLASS)
    if class >= n_classes then break end
    local base = class * CLASS
    local left = redis.call('ZCOUNT', K.users_active, base, base + now_ms)
    out[#out + 1] = class
    for j = 1, #bounds do
      local n = 0
      if j == #bounds then
        n = left
      elseif left > 0 then
        n = redis.call('ZCOUNT', K.users_active, '(' .. (base + now_ms - bounds[j + 1]),
          base + now_ms - bounds[j])
      end
      left = left - n
      out[#out + 1] = n
    end
    from = (class + 1) * CLASS
  end
  return out
end
