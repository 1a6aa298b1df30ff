--[[
  countBadInput: count one rejected inbound message by kind (docs/design.md#3-8).
  Counted once per message: every replica sees the same message ids in the same order,
  so a call counts only when its id is above the last id counted ("_last").

  KEYS[1] bad   hash  kind -> count, and "_last" -> highest message id counted

  ARGV[1] kind    short word ([a-z_]+)
  ARGV[2] msg_id  integer, seq * 1e6 + position (0 = count unconditionally)

  Returns {code}: OK | DUPLICATE | ERR_BAD_ARG.
]]
--- @include "codes"
--- @include "util"

local kind = ARGV[1]
local msg_id = int_arg(ARGV[2])
if not kind or not string.match(kind, '^[a-z_]+$') or msg_id == nil then return {ERR_BAD_ARG} end
if not types_ok({[K.bad] = 'hash'}) then return {ERR_WRONG_TYPE} end
if msg_id ~= 0 then
  if msg_id <= tonumber(redis.call('HGET', K.bad, '_last') or '-1') then return {DUPLICATE} end
  redis.call('HSET', K.bad, '_last', msg_id)
end
redis.call('HINCRBY', K.bad, kind, 1)
return {OK}
