"""Every Redis key and channel name of a pool, built in one place.

All keys of one pool share the hash tag ``{<pool>}`` so that every Lua script touches
a single Redis Cluster slot (docs/design.md#5).  Scripts never build key names: they
receive all of them in ``KEYS``.  Per-node and per-user attributes are fields of
pool-wide hashes, because a script must declare every key it touches, yet the connect
script picks its node inside the script (docs/design.md#3-5).

Key schema (``P`` stands for ``prov:{<pool>}``; ``ms`` = unix milliseconds of the
caller's clock):

============================  ======  ==================================================
key                           type    content
============================  ======  ==================================================
``P:users:active``            zset    user -> (class + 40*premium)*1e13 + last seen ms
``P:hazard``                  hash    connects by feature class and recency bucket, "bg"
``P:user:info``               hash    user -> packed record ``seq|last|first|count|connects|``
                                      ``last_disc`` (base 36, lua/includes/userrec.lua)
``P:user:info:cursor``        string  where forgetUsers' walk over ``P:user:info`` stands
``P:user:seq:floor``          string  highest message id of user records forgetUsers deleted
``P:user:node``               hash    user -> node it holds (the allocations)
``P:users:waiting``           zset    user -> band*1e13 + since ms (FIFO per band)
``P:user:wait_since``         hash    user -> ms its current wait began
``P:users:premium``           set     users served first from the waitlist
``P:node:state``              hash    node -> booting|ready|allocated|terminating|terminated
``P:node:created``            hash    node -> ms the create intent was recorded (POST)
``P:node:ready_at``           hash    node -> ms it became ready
``P:node:user``               hash    node -> user holding it
``P:node:seq``                hash    node -> id of the last status message applied
``P:nodes:booting``           zset    node -> created ms
``P:nodes:ready``             zset    node -> idle-since ms (the warm pool)
``P:nodes:allocated``         zset    node -> allocated ms
``P:nodes:terminating``       zset    node -> ms termination was decided
``P:nodes:terminated``        zset    node -> ms it ended (kept one hour, for late messages)
``P:nodes:unknown``           zset    node -> ms a status arrived for a node we never created
``P:node:early``              hash    node -> status that arrived before its POST answered
``P:intents``                 zset    intent id -> ms recorded (create intents not yet answered)
``P:stats``                   hash    counters: connects, hits, misses, ... (docs/keys.md#stats)
``P:bad``                     hash    bad-input kind -> count
``P:boot``                    hash    learned boot time: n, mean_ms, var_ms2, last_ms
``P:policy``                  hash    last decision of the leader: target, lambda, ...
``P:decisions``               stream  capped log of scaling decisions with their inputs
``P:leader``                  hash    lease: ``holder``, ``instance``, ``token``, ``expires_ms``
``P:lease:token``             string  fencing token counter (monotonic)
``P:seq``                     string  shared sequence counter (markers)
``P:seq:last_ms``             string  ms of the last marker published
``P:seq:secret``              string  the pool's marker secret (markers carry a keyed hash)
``P:throttle:expire``         string  ms the user-expiry maintenance last ran
``P:replicas``                zset    replica id -> last heartbeat ms
============================  ======  ==================================================

Channels (the contract's names, optionally prefixed for a multi-pool deployment):
``user:activity``, ``user:connect``, ``user:disconnect``, ``node:status`` (inbound),
``user:assigned`` (outbound) and ``provisioner:{<pool>}:marker`` (the shared sequence).
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Channels", "PoolKeys", "validate_pool_name"]

_POOL_FORBIDDEN = set("{}:*?[] \t\r\n")


def validate_pool_name(pool: str) -> str:
    """Check that a pool name is safe inside a key's hash tag.

    Args:
        pool: the pool name, 1-64 characters, none of ``{ } : * ? [ ]`` or white space.

    Returns:
        The same name.

    Raises:
        ValueError: if the name is empty, too long or holds a forbidden character.
    """
    if not pool or len(pool) > 64 or any(c in _POOL_FORBIDDEN for c in pool):
        raise ValueError(
            f"invalid pool name {pool!r}: 1-64 characters, none of '{{}}:*?[]' or spaces"
        )
    return pool


@dataclass(frozen=True)
class Channels:
    """Pub/Sub channel names of one deployment.

    Attributes:
        prefix: prepended to every contract channel (empty by default, as in the contract).
        pool: the pool name, used in the marker channel.
    """

    prefix: str = ""
    pool: str = "default"

    @property
    def activity(self) -> str:
        """Inbound ``user:activity``."""
        return f"{self.prefix}user:activity"

    @property
    def connect(self) -> str:
        """Inbound ``user:connect``."""
        return f"{self.prefix}user:connect"

    @property
    def disconnect(self) -> str:
        """Inbound ``user:disconnect``."""
        return f"{self.prefix}user:disconnect"

    @property
    def node_status(self) -> str:
        """Inbound ``node:status``."""
        return f"{self.prefix}node:status"

    @property
    def assigned(self) -> str:
        """Outbound ``user:assigned``."""
        return f"{self.prefix}user:assigned"

    @property
    def marker(self) -> str:
        """The shared-sequence marker channel (docs/design.md#3-1)."""
        return f"{self.prefix}provisioner:{{{self.pool}}}:marker"

    def inbound(self) -> tuple[str, str, str, str, str]:
        """All channels a worker replica subscribes to, on one connection."""
        return (self.marker, self.activity, self.connect, self.disconnect, self.node_status)


@dataclass(frozen=True)
class PoolKeys:
    """The key names of one pool; see the module docstring for the schema.

    Attributes:
        pool: the pool name (validated; becomes the hash tag).
    """

    pool: str = "default"
    base: str = field(init=False)

    def __post_init__(self) -> None:
        validate_pool_name(self.pool)
        object.__setattr__(self, "base", f"prov:{{{self.pool}}}")

    def k(self, suffix: str) -> str:
        """The full name of ``P:<suffix>``."""
        return f"{self.base}:{suffix}"

    # users
    @property
    def users_active(self) -> str:
        return self.k("users:active")

    @property
    def hazard(self) -> str:
        return self.k("hazard")

    @property
    def user_info(self) -> str:
        return self.k("user:info")

    @property
    def forget_cursor(self) -> str:
        return self.k("user:info:cursor")

    @property
    def user_seq_floor(self) -> str:
        return self.k("user:seq:floor")

    @property
    def user_node(self) -> str:
        return self.k("user:node")

    @property
    def users_waiting(self) -> str:
        return self.k("users:waiting")

    @property
    def user_wait_since(self) -> str:
        return self.k("user:wait_since")

    @property
    def users_premium(self) -> str:
        return self.k("users:premium")

    # nodes
    @property
    def node_state(self) -> str:
        return self.k("node:state")

    @property
    def node_created(self) -> str:
        return self.k("node:created")

    @property
    def node_ready_at(self) -> str:
        return self.k("node:ready_at")

    @property
    def node_user(self) -> str:
        return self.k("node:user")

    @property
    def node_seq(self) -> str:
        return self.k("node:seq")

    @property
    def nodes_booting(self) -> str:
        return self.k("nodes:booting")

    @property
    def nodes_ready(self) -> str:
        return self.k("nodes:ready")

    @property
    def nodes_allocated(self) -> str:
        return self.k("nodes:allocated")

    @property
    def nodes_terminating(self) -> str:
        return self.k("nodes:terminating")

    @property
    def nodes_terminated(self) -> str:
        return self.k("nodes:terminated")

    @property
    def nodes_unknown(self) -> str:
        return self.k("nodes:unknown")

    @property
    def node_early(self) -> str:
        return self.k("node:early")

    @property
    def intents(self) -> str:
        return self.k("intents")

    # bookkeeping
    @property
    def stats(self) -> str:
        return self.k("stats")

    @property
    def bad(self) -> str:
        return self.k("bad")

    @property
    def boot(self) -> str:
        return self.k("boot")

    @property
    def policy(self) -> str:
        return self.k("policy")

    @property
    def decisions(self) -> str:
        return self.k("decisions")

    @property
    def leader(self) -> str:
        return self.k("leader")

    @property
    def lease_token(self) -> str:
        return self.k("lease:token")

    @property
    def seq(self) -> str:
        return self.k("seq")

    @property
    def seq_secret(self) -> str:
        return self.k("seq:secret")

    @property
    def seq_last_ms(self) -> str:
        return self.k("seq:last_ms")

    @property
    def throttle_expire(self) -> str:
        return self.k("throttle:expire")

    @property
    def replicas(self) -> str:
        return self.k("replicas")

    def all(self) -> list[str]:
        """Every key name of the pool (for inspection and for wiping a test pool)."""
        names = [
            n for n in dir(self) if not n.startswith("_") and n not in ("pool", "base", "k", "all")
        ]
        return sorted(str(getattr(self, n)) for n in names)
