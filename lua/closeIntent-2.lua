--[[
  closeIntent: a create intent ended without a node: the POST surely did not arrive or
  was refused (5xx after all retries), or reconcile gave up on it. Not fenced: it records
  a fact about a call already made.

  KEYS[1] intents   zset  intent id -> ms recorded
  KEYS[2] stats     hash  counters

  ARGV[1] intent_id string
  ARGV[2] reason    short word counted as stats field intents_<reason>

  Returns {code, removed}: OK | ERR_BAD_ARG.
]]
--- @include "codes"
--- @include "util"

local intent = ARGV[1]
local reason = ARGV[2]
if not intent or intent == '' or not reason or not string.match(reason, '^[%w_]+$') then
  return {ERR_BAD_ARG, 0}
end
if not types_ok({[K.intents] = 'zset', [K.stats] = 'hash'}) then return {ERR_WRONG_TYPE, 0} end
local removed = redis.call('ZREM', K.intents, intent)
if removed == 1 then stat('intents_' .. reason) end
return {OK, removed}
