--[[
  setPremium: mark users premium (served first from the waitlist; the policy keeps a
  separate margin for them) or take the mark away.

  KEYS[1] users_premium  set   premium users
  KEYS[2] users_active   zset  user -> class id * 1e13 + last seen ms: an active user's
                               class id moves to its new tier (codes.lua: PREMIUM_CLASS)

  ARGV[1] action   "add" | "remove"
  ARGV[2..] user ids (validated by the caller)

  Returns {code, changed}: OK | ERR_BAD_ARG.
]]
--- @include "codes"
--- @include "util"

local action = ARGV[1]
if (action ~= 'add' and action ~= 'remove') or #ARGV < 2 then return {ERR_BAD_ARG, 0} end
if not types_ok({[K.users_premium] = 'set', [K.users_active] = 'zset'}) then
  return {ERR_WRONG_TYPE, 0}
end
local changed = 0
for i = 2, #ARGV do
  if ARGV[i] == '' then return {ERR_BAD_ARG, 0} end
end
for i = 2, #ARGV do
  local user = ARGV[i]
  local n
  if action == 'add' then
    n = redis.call('SADD', K.users_premium, user)
  else
    n = redis.call('SREM', K.users_premium, user)
  end
  changed = changed + n
  local score = n == 1 and tonumber(redis.call('ZSCORE', K.users_active, user))
  if score then
    local class, _, seen = score_parts(score)
    if action == 'add' then class = class + PREMIUM_CLASS end
    redis.call('ZADD', K.users_active, class * CLASS + seen, user)
  end
end
return {OK, changed}
