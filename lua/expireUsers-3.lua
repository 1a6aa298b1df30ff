--[[
  expireUsers: users not seen for the user TTL leave the active set (the policy stops
  counting them): ttl_ms, or ttl_b boot times (the learned mean, else default_boot_ms);
  their packed record stays, for the history TTL (forgetUsers). Maintenance that
  touches only Redis: any replica may run it; the throttle key makes concurrent calls cheap
  (docs/design.md#3-3). Bounded: at most max_count users per call.

  KEYS[1] users_active     zset    user -> class id * 1e13 + last seen ms
  KEYS[2] throttle_expire  string  ms this maintenance last ran
  KEYS[3] boot             hash    learned boot time (mean_ms)

  ARGV[1] now_ms           integer, unix ms
  ARGV[2] ttl_ms           integer >= 0: inactivity before a user expires; 0: ttl_b B
  ARGV[3] max_count        integer > 0
  ARGV[4] min_interval_ms  integer >= 0: skip when the last run is more recent
  ARGV[5] ttl_b            optional number > 0 (default 20): the TTL in boot times when
                           ttl_ms is 0
  ARGV[6] default_boot_ms  optional integer in [1000, 86400000]: B before a boot is
                           observed; absent: 30 s

  Returns {code, expired}: OK | IGNORED (throttled) | ERR_BAD_ARG.
]]
--- @include "codes"
--- @include "util"

local now_ms = ms_arg(ARGV[1])
local ttl = int_arg(ARGV[2])
local max_count = int_arg(ARGV[3])
local min_interval = int_arg(ARGV[4])
local ttl_b = tonumber(ARGV[5] or '20')
local default_ms = default_boot_arg(ARGV[6])
if now_ms == nil or ttl == nil or ttl < 0 or max_count == nil or max_count <= 0
  or min_interval == nil or min_interval < 0 or ttl_b == nil or ttl_b ~= ttl_b or ttl_b <= 0
  or ttl_b == math.huge or not default_ms then
  return {ERR_BAD_ARG, 0}
end
if not types_ok({[K.users_active] = 'zset', [K.throttle_expire] = 'string',
    [K.boot] = 'hash'}) then
  return {ERR_WRONG_TYPE, 0}
end
if ttl == 0 then ttl = math.floor(ttl_b * boot_ms_now(default_ms)) end
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
