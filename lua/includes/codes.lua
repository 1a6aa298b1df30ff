-- Status codes shared by every script; mirrored by provisioner.errors.Code.
-- >= 0: the transition ran (or was a harmless no-op); < 0: refused, nothing written.
local OK = 0
local HIT = 1           -- connect served from the warm pool (wait 0)
local MISS = 2          -- connect put on the waitlist
local DUPLICATE = 3     -- the state already says so (replayed or repeated message)
local STALE = 4         -- older than the last message applied to this user/node
local IGNORED = 5       -- out of order or not applicable (e.g. ready for a terminating node)
local UNKNOWN_NODE = 6  -- status for a node we never registered (parked, see node:early)
local UNKNOWN_USER = 7  -- disconnect of a user that neither holds a node nor waits
local HELD = 8          -- lease held by another replica
local ERR_FENCED = -1   -- fencing token does not match the live lease
local ERR_BAD_ARG = -2  -- an argument failed validation
local ERR_WRONG_TYPE = -3 -- a key holds the wrong Redis type

-- Band of a waitlist entry: score = band * BAND + since_ms (lower is served first).
local BAND = 10000000000000
local BAND_REPLACEMENT = 0
local BAND_PREMIUM = 1
local BAND_NORMAL = 2

-- Feature classes of active users (the predictive policy's hazard model), fixed at a user's
-- latest activity; a session is one stay in the active set (it starts at the activity that
-- (re)enters it: after a disconnect or an expiry).
--   cb: activity events in the session: 1 | 2-3 | 4-7 | 8+                       (0..3)
--   ab: time since the session's first activity: < SESSION_AGE_B * B | more      (0..1)
--       (with cb, the activity rate: 8 events in less than B is a fast browser)
--   rs: connects before and time since the last disconnect: never connected (0);
--       1-2 connects, last disconnect >= RETURN_GAP_B * B ago (1) or less (2);
--       3+ connects, likewise (3, 4)                                           (0..4)
-- class = (cb * 2 + ab) * 5 + rs. Mirrored by provisioner.predictive.user_class.
-- users:active scores are (class + PREMIUM_CLASS * premium) * CLASS + last-seen ms, so ZCOUNT
-- over a score range counts one class's users (of one tier) by recency, and the tick counts
-- active premium users from the class totals it reads anyway.
local CLASS = 10000000000000
local N_CLASSES = 40
local PREMIUM_CLASS = 40
local SESSION_AGE_B = 1
local RETURN_GAP_B = 4
-- B (ms) used to classify activity before any boot was observed (the coordinator's default).
local DEFAULT_BOOT_MS = 30000
-- Recency buckets, as multiples of the boot time B: [0, B/8) [B/8, B/4) [B/4, B/2)
-- [B/2, B) [B, 2B) [2B, 4B) [4B, inf). Mirrored by provisioner.policy.RECENCY_EDGES_B.
local RECENCY_EDGES_B = {0.125, 0.25, 0.5, 1, 2, 4}
