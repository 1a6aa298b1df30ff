--[[
  expireUsers: users not seen for ttl_ms leave the active set (the policy stops counting
  them); their packed record stays, for the history TTL (forgetUsers). Maintenance that
  touches only Redis: any replica may run it; the throttle key makes concurrent calls cheap
  (docs/design.md#3-3). Bounded: at most max_count users per call.

  KEYS[1] users_active     zset    user -> class id * 1e13 + last seen ms
  KEYS[2] throttle_expire  string  ms this maintenance last ran

  ARGV[1] now_ms           integer, unix ms
  ARGV[2] ttl_ms           integer > 0: inactivity before a user expires
  ARGV[3] max_count        integer > 0
  ARGV[4] min_interval_ms  integer >= 0: skip when the last run is more recent

  Returns {code, expired}: OK | IGNORED (throttled) | ERR_BAD_ARG.
]]
--- @include "codes"
--- @include "util"

local now_ms = ms_arg(ARGV[1])
local ttl = int_arg(ARGV[2])
local max_count = int_arg(ARGV[3])
local min_interval = int_arg(ARGV[4])
if now_ms == nil or ttl == nil or ttl <= 0 or max_count == nil or max_count <= 0
  or min_interval == nil or min_interval < 0 then
  return {ERR_BAD_ARG, 0}
end
if not types_ok({[K.users_active] = 'zset', [K.throttle_expire] = 'string'}) then
  return {ERR_WRONG_TYPE, 0}
end
local last = tonumber(redis.call('GET', K.throttle_expire) or '-1')
if last >= 0 and now_ms >= last and now_ms - last < min_interval then return {IGNORED, 0} end
redis.call('SET', K.throttle_expire, now_ms)
local old = {}
-- class id by class id, from one occupied id to the next (one ZRANGE LIMIT 1 finds it, as
-- count_active does: empty ids cost nothing); each id's band holds scores id * CLASS + ms
local from = 0
while #old < max_count do
  local nxt = redis.call('ZRANGE', K.users_active, from, '+inf', 'BYSCORE', 'LIMIT', 0, 1,
    'WITHSCORES')
  if not nxt[2] then break end
  local _, id, first_ms = score_parts(tonumber(nxt[2]))
  if id >= PREMIUM_CLASS + N_CLASSES then break end  -- no class id (as before: not expired)
  local base = id * CLASS
  if now_ms - ttl >= 0 and first_ms < now_ms - ttl then  -- its oldest member is due
    local some = redis.call('ZRANGEBYSCORE', K.users_active, base, excl(base + now_ms - ttl),
      'LIMIT', 0, max_count - #old)
    for _, user in ipairs(some) do old[#old + 1] = user end
  end
  from = (id + 1) * CLASS
end
for i = 1, #old, 500 do
  redis.call('ZREM', K.users_active, unpack(old, i, math.min(#old, i + 499)))
end
return {OK, #old}
