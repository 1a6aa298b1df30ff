--[[
  countActive: read-only. Active users per feature class and recency bucket, for the
  predictive policy's tick: O((occupied classes + 1) * buckets * log N), one round trip.

  KEYS[1] users_active   zset  user -> class id * 1e13 + last seen ms (premium users' ids
                               offset by PREMIUM_CLASS: counted from them)

  ARGV[1] now_ms     integer, unix ms
  ARGV[2] n_classes  integer > 0
  ARGV[3..] inner bucket edges of the time since last activity, integer ms, ascending

  Returns {code, premium_active, then per class with active users, ascending: class,
  counts per bucket (edges + 1 of them)}; OK | ERR_BAD_ARG.
]]
--- @include "codes"
--- @include "util"
--- @include "active"

local now_ms = ms_arg(ARGV[1])
local n_classes = int_arg(ARGV[2])
if now_ms == nil or n_classes == nil or n_classes <= 0 then return {ERR_BAD_ARG} end
local bounds = {0}
for i = 3, #ARGV do
  local e = int_arg(ARGV[i])  -- ms: an integer (the exclusive bounds are formatted %.0f)
  if e == nil or e < bounds[#bounds] then return {ERR_BAD_ARG} end
  bounds[#bounds + 1] = e
end
if not types_ok({[K.users_active] = 'zset'}) then
  return {ERR_WRONG_TYPE}
end
return count_active({OK}, now_ms, n_classes, bounds)
