--[[
  setPremium: mark users premium (served first from the waitlist; the policy keeps a
  separate margin for them) or take the mark away.

  KEYS[1] users_premium  set  premium users

  ARGV[1] action   "add" | "remove"
  ARGV[2..] user ids (validated by the caller)

  Returns {code, changed}: OK | ERR_BAD_ARG.
]]
--- @include "codes"
--- @include "util"

local action = ARGV[1]
if (action ~= 'add' and action ~= 'remove') or #ARGV < 2 then return {ERR_BAD_ARG, 0} end
if not types_ok({[K.users_premium] = 'set'}) then return {ERR_WRONG_TYPE, 0} end
local changed = 0
for i = 2, #ARGV do
  if ARGV[i] == '' then return {ERR_BAD_ARG, 0} end
end
for i = 2, #ARGV do
  if action == 'add' then
    changed = changed + redis.call('SADD', K.users_premium, ARGV[i])
  else
    changed = changed + redis.call('SREM', K.users_premium, ARGV[i])
  end
end
return {OK, changed}
