-- Record create intents (docs/design.md#3-3) before the POSTs: ids[first..last] into
-- K.intents at now_ms (NX: an id already open keeps its time); counted in K.stats.
local function add_intents(now_ms, ids, first, last)
  for i = first, last do
    redis.call('ZADD', K.intents, 'NX', now_ms, ids[i])
  end
  if last >= first then stat('intents', last - first + 1) end
end
