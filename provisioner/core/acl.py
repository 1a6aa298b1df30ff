"""A least-privilege Redis ACL for the service (docs/reliability.md#security).

The service needs its pool's keys (``prov:{<pool>}:*``, :class:`provisioner.core.keys.PoolKeys`),
its channels (the contract's four inbound ones, ``user:assigned`` and the pool's marker
channel, each with the deployment's channel prefix), reading and writing commands,
scripting (``EVALSHA``, ``SCRIPT LOAD``), Pub/Sub, connection commands (``AUTH``,
``PING``, ``CLIENT SETNAME``) and ``MULTI``/``EXEC`` for its read snapshots.  Nothing
else: no other keys or channels, no admin or dangerous commands (``FLUSHALL``, ``KEYS``,
``CONFIG``, ``DEBUG``, ...).  ``INFO`` is allowed for the health endpoint's diagnostics.
"""

from __future__ import annotations

from provisioner.core.keys import Channels, PoolKeys

__all__ = ["acl_rules", "acl_setuser"]


def acl_rules(pool: str = "default", channel_prefix: str = "") -> list[str]:
    """The ACL rules (the arguments of ``ACL SETUSER <user>`` after the user name,
    without ``on`` and the password) that let a replica, ``status``, ``check``,
    ``explain``, ``seed`` and ``premium`` do their work for one pool and nothing else.

    Returns:
        Rule tokens, e.g. ``["resetkeys", "~prov:{default}:*", "resetchannels", ...]``.
    """
    ch = Channels(prefix=channel_prefix, pool=pool)
    channels = [ch.activity, ch.connect, ch.disconnect, ch.node_status, ch.assigned, ch.marker]
    return [
        "resetkeys", f"~{PoolKeys(pool).base}:*",
        "resetchannels", *[f"&{c}" for c in channels],
        "-@all", "+@read", "+@write", "+@scripting", "+@pubsub", "+@connection",
        "+@transaction", "-@dangerous", "+script|load", "+info",
    ]  # fmt: skip


def acl_setuser(
    user: str = "provisioner", password: str = "CHANGE-ME", pool: str = "default",
    channel_prefix: str = "",
) -> list[str]:  # fmt: skip
    """The whole ``ACL SETUSER`` command, as argument tokens (send it with
    ``execute_command(*tokens)`` or print it for ``redis-cli``).

    Raises:
        ValueError: an empty user or password, or one with whitespace.
    """
    for what, v in (("user", user), ("password", password)):
        if not v or any(c.isspace() for c in v):
            raise ValueError(f"{what} must be non-empty and without whitespace")
    return ["ACL", "SETUSER", user, "reset", "on", f">{password}", *acl_rules(pool, channel_prefix)]
