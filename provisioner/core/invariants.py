"""Check the pool's invariants on one consistent read (a MULTI of plain reads).

Used by the tests after every step, by the fault-injection suite and by
``provisioner check``.  Checked:

* I1: a node is held by at most one user and a user holds at most one node; the
  allocation hashes ``user:node`` and ``node:user`` mirror each other exactly.
* Each live node is in exactly the sorted set its state names (booting, ready,
  allocated, terminating) and in no other; allocated nodes have a holder, others none.
* A user is never both holding a node and on the waitlist; ready nodes and waiting
  users never coexist (a ready node would have been handed over).
* No member of the active set (browsing users, counted by the predictive policy as
  possible connects) holds a node or waits for one: ``connectUser`` takes a user out,
  and activity of a connected user is counted only.
"""

from __future__ import annotations

from collections import Counter

import redis.asyncio as aioredis

from provisioner.core.keys import PoolKeys
from provisioner.core.logutil import plural
from provisioner.core.scripts import declared_types

__all__ = ["check_invariants", "wrong_types"]

_SETS = ("booting", "ready", "allocated", "terminating")


async def check_invariants(client: aioredis.Redis, keys: PoolKeys) -> list[str]:
    """Return a description of every invariant violated now (empty when all hold).

    Args:
        client: ``redis.asyncio.Redis`` with ``decode_responses=True``.
        keys: the pool's key names.
    """
    pipe = client.pipeline(transaction=True)
    pipe.hgetall(keys.node_state)
    pipe.hgetall(keys.node_user)
    pipe.hgetall(keys.user_node)
    for s in _SETS:
        pipe.zrange(getattr(keys, f"nodes_{s}"), 0, -1)
    pipe.zrange(keys.users_waiting, 0, -1)
    pipe.zrange(keys.users_active, 0, -1)
    r = await pipe.execute()
    state: dict[str, str] = r[0]
    node_user: dict[str, str] = r[1]
    user_node: dict[str, str] = r[2]
    members = {s: set(r[3 + i]) for i, s in enumerate(_SETS)}
    waiting: list[str] = r[7]
    active: set[str] = set(r[8])
    out: list[str] = []

    for node, n in Counter(user_node.values()).items():
        if n > 1:
            out.append(f"I1: node {node} held by {n} users")
    for user, node in user_node.items():
        if node_user.get(node) != user:
            out.append(f"I1: user:node says {user}->{node}, node:user says {node_user.get(node)}")
    for node, user in node_user.items():
        if user_node.get(user) != node:
            out.append(f"I1: node:user says {node}->{user}, user:node says {user_node.get(user)}")
    for node, st in state.items():
        inside = [s for s in _SETS if node in members[s]]
        if st == "terminated":
            if inside:
                out.append(f"terminated node {node} still in {inside}")
            continue
        if inside != [st]:
            out.append(f"node {node} is {st} but in sets {inside}")
        if (st == "allocated") != (node in node_user):
            out.append(f"node {node} is {st}, holder {node_user.get(node)}")
    for s in _SETS:
        for node in members[s]:
            if state.get(node) != s:
                out.append(f"node {node} in {s} set but state {state.get(node)}")
    for user in waiting:
        if user in user_node:
            out.append(f"user {user} waits while holding {user_node[user]}")
    for user in sorted(active & (set(user_node) | set(waiting))):
        where = f"holds {user_node[user]}" if user in user_node else "waits"
        out.append(f"active user {user} {where} (a connected user is not active)")
    if waiting and members["ready"]:
        wait, ready = len(waiting), len(members["ready"])
        out.append(
            f"{plural(wait, 'user')} {'waits' if wait == 1 else 'wait'} while "
            f"{plural(ready, 'node')} {'is' if ready == 1 else 'are'} ready"
        )
    return out


async def wrong_types(client: aioredis.Redis, keys: PoolKeys) -> list[str]:
    """Every pool key that exists with another Redis type than the scripts declare (each
    script refuses to run on one, so a replica cannot work on that pool), one line each.

    Args:
        client: ``redis.asyncio.Redis`` with ``decode_responses=True``.
        keys: the pool's key names.
    """
    expected = declared_types()
    pipe = client.pipeline(transaction=False)
    names = [getattr(keys, a) for a in expected]
    for name in names:
        pipe.type(name)
    found = await pipe.execute()
    return [
        f"key {name} is a {t}, the scripts expect a {want}"
        for name, want, t in zip(names, expected.values(), found, strict=True)
        if t != "none" and t != want
    ]
