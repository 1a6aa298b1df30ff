-- Active users per feature class and recency bucket, for the predictive policy's tick:
-- O(classes * buckets * log N). `bounds` = {0, edge1, edge2, ...}: ascending bucket edges
-- of the time since last activity, ms (the last bucket is open). Appends to `out` the
-- active premium users, then counts[class * #bounds + bucket + 1].
-- Needs K.users_active (scores class * CLASS + last seen ms) and K.users_premium.
-- A class's buckets add up to its users seen up to now, so one ZCOUNT of that total comes
-- first and the buckets after it stop once the total is reached (an empty class costs one
-- call; the oldest bucket is what remains).
local function count_active(out, now_ms, n_classes, bounds)
  out[#out + 1] = redis.call('ZINTERCARD', 2, K.users_active, K.users_premium)
  for class = 0, n_classes - 1 do
    local base = class * CLASS
    local left = redis.call('ZCOUNT', K.users_active, base, base + now_ms)
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
  end
  return out
end
