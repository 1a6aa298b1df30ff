--[[
  dropUnknown: the leader gives up on nodes that reported a status while unknown to us and
  match no open create intent: they are recorded as terminated (so their later statuses are
  recognised and ignored) without ever entering the pool, and the leader DELETEs them.
  Fenced by the lease token.

  KEYS[1] leader            hash  holder, token, expires_ms
  KEYS[2] nodes_unknown     zset  node -> ms first reported while unknown
  KEYS[3] node_early        hash  node -> "status|ms" reported while unknown
  KEYS[4] nodes_terminated  zset  node -> ms it ended
  KEYS[5] node_state        hash  node -> state

  ARGV[1] token    the caller's fencing token
  ARGV[2] now_ms   integer, unix ms
  ARGV[3..] node ids

  Returns {code, node ids dropped...}: OK | ERR_FENCED | ERR_BAD_ARG. Nodes that are
  known by now (their 202 was recorded meanwhile) are left alone.
]]
--- @include "codes"
--- @include "util"
--- @include "fence"

local token = ARGV[1]
local now_ms = ms_arg(ARGV[2])
if not token or now_ms == nil then return {ERR_BAD_ARG} end
if not types_ok({[K.leader] = 'hash', [K.nodes_unknown] = 'zset', [K.node_early] = 'hash',
  [K.nodes_terminated] = 'zset', [K.node_state] = 'hash'}) then return {ERR_WRONG_TYPE} end
if not fence_ok(token, now_ms) then return {ERR_FENCED} end
local out = {OK}
for i = 3, #ARGV do
  local node = ARGV[i]
  redis.call('ZREM', K.nodes_unknown, node)
  redis.call('HDEL', K.node_early, node)
  if not redis.call('HGET', K.node_state, node) then
    redis.call('HSET', K.node_state, node, 'terminated')
    redis.call('ZADD', K.nodes_terminated, now_ms, node)
    out[#out + 1] = node
  end
end
return out
