--[[
  markTerminating: the leader decided to delete these nodes (reconcile: adopted nodes
  nobody asked for). Only booting or ready nodes are marked; allocated ones never are
  (invariant I2). Fenced by the lease token.

  KEYS[1] leader             hash  holder, token, expires_ms
  KEYS[2] node_state         hash  node -> state
  KEYS[3] nodes_booting      zset  node -> created ms
  KEYS[4] nodes_ready        zset  node -> idle-since ms
  KEYS[5] nodes_terminating  zset  node -> ms termination was decided

  ARGV[1] token    the caller's fencing token
  ARGV[2] now_ms   integer, unix ms
  ARGV[3..] node ids

  Returns {code, node ids marked...}: OK | ERR_FENCED | ERR_BAD_ARG.
]]
--- @include "codes"
--- @include "util"
--- @include "fence"
--- @include "terminate"

local token = ARGV[1]
local now_ms = ms_arg(ARGV[2])
if not token or now_ms == nil then return {ERR_BAD_ARG} end
if not types_ok({[K.leader] = 'hash', [K.node_state] = 'hash', [K.nodes_booting] = 'zset',
  [K.nodes_ready] = 'zset', [K.nodes_terminating] = 'zset'}) then return {ERR_WRONG_TYPE} end
if not fence_ok(token, now_ms) then return {ERR_FENCED} end
local out = {OK}
for i = 3, #ARGV do
  local node = ARGV[i]
  local state = redis.call('HGET', K.node_state, node)
  if state == 'booting' or state == 'ready' then
    mark_terminating(node, now_ms)
    out[#out + 1] = node
  end
end
return out
