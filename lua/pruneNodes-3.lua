--[[
  pruneNodes: forget nodes that ended more than retain_ms ago (their state and ordering
  records were kept so late or duplicated statuses are recognised). Any replica may run
  it; at most max_count nodes per call.

  KEYS[1] nodes_terminated  zset  node -> ms it ended
  KEYS[2] node_state        hash  node -> state
  KEYS[3] node_seq          hash  node -> last message id applied

  ARGV[1] now_ms     integer, unix ms
  ARGV[2] retain_ms  integer > 0
  ARGV[3] max_count  integer > 0

  Returns {code, pruned}: OK | ERR_BAD_ARG.
]]
--- @include "codes"
--- @include "util"

local now_ms = ms_arg(ARGV[1])
local retain = int_arg(ARGV[2])
local max_count = int_arg(ARGV[3])
if now_ms == nil or retain == nil or retain <= 0 or max_count == nil or max_count <= 0 then
  return {ERR_BAD_ARG, 0}
end
if not types_ok({[K.nodes_terminated] = 'zset', [K.node_state] = 'hash',
  [K.node_seq] = 'hash'}) then return {ERR_WRONG_TYPE, 0} end
local old = redis.call('ZRANGEBYSCORE', K.nodes_terminated, '-inf', excl(now_ms - retain),
  'LIMIT', 0, max_count)
for _, node in ipairs(old) do
  redis.call('ZREM', K.nodes_terminated, node)
  if redis.call('HGET', K.node_state, node) == 'terminated' then
    redis.call('HDEL', K.node_state, node)
    redis.call('HDEL', K.node_seq, node)
  end
end
return {OK, #old}
