--[[
  registerNode: the Node API answered 202 to our POST with a node id. Closes the create
  intent and records the node as booting since the intent's time. If a status for this
  node arrived before the answer (parked in node:early), it is applied now.
  Not fenced: it records a fact (the node exists), whoever holds the lease now.

  KEYS[1]  intents            zset  intent id -> ms recorded
  KEYS[2]  node_state         hash  node -> state
  KEYS[3]  node_created       hash  node -> ms its create intent was recorded
  KEYS[4]  node_ready_at      hash  node -> ms it became ready
  KEYS[5]  node_user          hash  node -> user
  KEYS[6]  nodes_booting      zset  node -> created ms
  KEYS[7]  nodes_ready        zset  node -> idle-since ms
  KEYS[8]  nodes_allocated    zset  node -> allocated ms
  KEYS[9]  nodes_terminating  zset  node -> ms termination was decided
  KEYS[10] nodes_terminated   zset  node -> ms it ended
  KEYS[11] nodes_unknown      zset  node -> ms first reported while unknown
  KEYS[12] node_early         hash  node -> "status|ms" reported while unknown
  KEYS[13] user_node          hash  user -> node
  KEYS[14] users_waiting      zset  user -> band * 1e13 + since ms
  KEYS[15] user_wait_since    hash  user -> ms its wait began
  KEYS[16] boot               hash  learned boot time
  KEYS[17] stats              hash  counters

  ARGV[1] intent_id    string (the id createIntents recorded), or '' for a seeded node
  ARGV[2] node_id      string, as the API returned it
  ARGV[3] now_ms       integer, unix ms
  ARGV[4] channel      the user:assigned channel name
  ARGV[5] alpha_min    number in (0, 1]: floor of the boot-time EWMA weight

  Returns {code, applied_early_status_or_false}: OK | DUPLICATE | ERR_BAD_ARG.
]]
--- @include "codes"
--- @include "util"
--- @include "assign"
--- @include "nodes"

local intent = ARGV[1]
local node = ARGV[2]
local now_ms = ms_arg(ARGV[3])
local channel = ARGV[4]
local alpha_min = tonumber(ARGV[5])
if intent == nil or node == nil or node == '' or now_ms == nil or not channel
  or alpha_min == nil or alpha_min <= 0 or alpha_min > 1 then
  return {ERR_BAD_ARG, false}
end
local want = {}
for i = 1, #KEYS do want[KEYS[i]] = 'hash' end
for _, z in ipairs({K.intents, K.nodes_booting, K.nodes_ready, K.nodes_allocated,
  K.nodes_terminating, K.nodes_terminated, K.nodes_unknown, K.users_waiting}) do
  want[z] = 'zset'
end
if not types_ok(want) then return {ERR_WRONG_TYPE, false} end
if redis.call('HGET', K.node_state, node) then return {DUPLICATE, false} end

local created = now_ms
if intent ~= '' then
  created = tonumber(redis.call('ZSCORE', K.intents, intent) or now_ms)
  redis.call('ZREM', K.intents, intent)
end
redis.call('HSET', K.node_state, node, 'booting')
redis.call('HSET', K.node_created, node, created)
redis.call('ZADD', K.nodes_booting, created, node)
stat('nodes_created')

local early = redis.call('HGET', K.node_early, node)
if not early then return {OK, false} end
redis.call('HDEL', K.node_early, node)
redis.call('ZREM', K.nodes_unknown, node)
local status, at = string.match(early, '^(%a+)|(%d+)$')
at = tonumber(at) or now_ms
if status == 'ready' then
  on_ready(node, 'booting', at, channel, alpha_min)
elseif status == 'terminated' then
  on_terminated(node, 'booting', at, channel)
end
stat('status_early_applied')
return {OK, status or false}
