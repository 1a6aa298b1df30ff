--[[
  createIntents: the leader records its intent to create nodes before it POSTs
  (design-notes 3.3), so a crash between the two leaks nothing: an open intent that
  never gets its 202 is reconciled later. Fenced by the lease token.

  KEYS[1] leader    hash  holder, token, expires_ms
  KEYS[2] intents   zset  intent id -> ms recorded
  KEYS[3] stats     hash  counters

  ARGV[1] token     the caller's fencing token
  ARGV[2] now_ms    integer, unix ms
  ARGV[3..] intent ids (unique strings chosen by the caller, e.g. uuid4 hex)

  Returns {code, count}: OK | ERR_FENCED | ERR_BAD_ARG.
]]
--- @include "codes"
--- @include "util"
--- @include "fence"
--- @include "intents"

local token = ARGV[1]
local now_ms = ms_arg(ARGV[2])
if not token or now_ms == nil or #ARGV < 3 then return {ERR_BAD_ARG, 0} end
if not types_ok({[K.leader] = 'hash', [K.intents] = 'zset', [K.stats] = 'hash'}) then
  return {ERR_WRONG_TYPE, 0}
end
if not fence_ok(token, now_ms) then return {ERR_FENCED, 0} end
add_intents(now_ms, ARGV, 3, #ARGV)
return {OK, #ARGV - 2}
