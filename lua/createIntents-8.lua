--[[
  createIntents: the leader records its intent to create nodes before it POSTs
  (docs/design.md#3-3), so a crash between the two leaks nothing: an open intent that
  never gets its 202 is reconciled later. Fenced by the lease token. Under a cap, only
  the first max_nodes - counted ids are recorded (caps.lua: every node that costs).

  KEYS[1] leader             hash  holder, token, expires_ms
  KEYS[2] intents            zset  intent id -> ms recorded
  KEYS[3] stats              hash  counters
  KEYS[4] nodes_booting      zset  node -> created ms
  KEYS[5] nodes_ready        zset  node -> idle-since ms
  KEYS[6] nodes_allocated    zset  node -> allocated ms
  KEYS[7] nodes_terminating  zset  node -> ms termination was decided
  KEYS[8] nodes_unknown      zset  node -> ms first reported while unknown

  ARGV[1] token     the caller's fencing token
  ARGV[2] now_ms    integer, unix ms
  ARGV[3..] intent ids (unique strings chosen by the caller, e.g. uuid4 hex), optionally
            preceded by the pair 'max_nodes', n (integer >= 0): the cap (none without it,
            as callers that do not know it expect; so no id may be 'max_nodes')

  Returns {code, recorded, withheld}: OK | ERR_FENCED | ERR_BAD_ARG | ERR_WRONG_TYPE;
  recorded = the first ids recorded, withheld = the ids the cap refused.
]]
--- @include "codes"
--- @include "util"
--- @include "fence"
--- @include "intents"
--- @include "caps"

local token = ARGV[1]
local now_ms = ms_arg(ARGV[2])
local first = 3
local max_nodes = nil
if ARGV[3] == 'max_nodes' then
  max_nodes = int_arg(ARGV[4])
  if max_nodes == nil or max_nodes < 0 then return {ERR_BAD_ARG, 0, 0} end
  first = 5
end
if not token or now_ms == nil or #ARGV < first then return {ERR_BAD_ARG, 0, 0} end
if not types_ok({[K.leader] = 'hash', [K.intents] = 'zset', [K.stats] = 'hash',
  [K.nodes_booting] = 'zset', [K.nodes_ready] = 'zset', [K.nodes_allocated] = 'zset',
  [K.nodes_terminating] = 'zset', [K.nodes_unknown] = 'zset'}) then
  return {ERR_WRONG_TYPE, 0, 0}
end
if not fence_ok(token, now_ms) then return {ERR_FENCED, 0, 0} end
local last = #ARGV
local withheld = 0
if max_nodes ~= nil then
  local room = max_nodes - nodes_counted()
  if room < 0 then room = 0 end
  if last - first + 1 > room then
    withheld = last - first + 1 - room
    last = first + room - 1
  end
end
add_intents(now_ms, ARGV, first, last)
return {OK, last - first + 1, withheld}
