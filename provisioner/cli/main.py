"""The ``provisioner`` command line (click).

One group.  The shared options (``--redis-url``, ``--pool``, ``--channel-prefix``,
``--log-level``: :mod:`provisioner.cli.options`) are accepted before or after any
command and carry environment twins (``PROVISIONER_*``).  Commands:
``run`` (a worker replica), ``status`` and ``check`` (inspect; ``check`` exits 1 when
an invariant is broken or Redis is down, usable as a probe), ``seed`` (seed users and
nodes through the same Lua scripts), ``explain`` (recent scaling decisions),
``mock-node-api`` and ``simulate`` (the emulated infrastructure), ``demo`` (the whole
stack, ending in a scorecard) and ``bench`` (benchmarks); ``demo`` and ``bench`` start a
private redis-server unless a ``--redis-url`` is given.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import re
import signal
import sys
import time
import uuid
from collections.abc import Coroutine
from typing import Any, TypeVar

import click
import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from provisioner import __version__
from provisioner.cli.lazy import LazyGroup
from provisioner.cli.options import (
    MAX_BOOTS,
    MAX_HISTORY_SECONDS,
    MAX_NODES,
    MAX_SECONDS,
    MAX_Z,
    CliConfig,
    FiniteFloat,
    accept_shared_options,
    pass_cli_config,
)
from provisioner.core.coordinator import DEFAULT_USER_TTL_B, Coordinator
from provisioner.core.errors import ListenError, ScriptError, TaskFailed, raise_for_code
from provisioner.core.invariants import check_invariants, wrong_types
from provisioner.core.keys import Channels
from provisioner.core.leader import LeaderConfig, nodes_counted
from provisioner.core.logutil import plural
from provisioner.core.messages import MAX_USER_ID
from provisioner.core.worker import WorkerConfig, run_worker
from provisioner.policies.predictive import DEFAULT_MISS_COST_B
from provisioner.policies.registry import POLICY_NAMES, run_knobs

__all__ = ["cli", "main"]

T = TypeVar("T")


def _coordinator(obj: CliConfig) -> Coordinator:
    """A coordinator on the configured Redis, pool and channels (connects on first use)."""
    client = aioredis.Redis.from_url(obj.redis_url, decode_responses=True)
    return Coordinator(client, obj.pool, Channels(obj.channel_prefix, obj.pool))


def _run(coro: Coroutine[Any, Any, T]) -> T:
    try:
        return asyncio.run(coro)
    except (RedisError, OSError) as e:
        hint = " (`provisioner check` names the key)" if "WRONGTYPE" in str(e) else ""
        raise click.ClickException(f"Redis: {type(e).__name__}: {e}{hint}") from e


def _int_or_none(v: Any) -> int | None:
    """A stored integer ('None' when absent or not an integer)."""
    try:
        return int(v)
    except (TypeError, ValueError):
        return None


def _replica_id(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    """``--replica-id``: None (a generated id) or a non-blank id."""
    if value is not None and not value.strip():
        raise click.BadParameter("must not be empty (leave it out for host-pid-random)")
    return value


def _secs(v: Any) -> str:
    """A stored duration in seconds, rounded for people ('-' when absent)."""
    try:
        return f"{float(v):.1f}s"
    except (TypeError, ValueError):
        return "-"


#: Commands of the emulated world and the benchmarks, imported on first use.
LAZY_COMMANDS = {
    "bench": "provisioner.cli.bench:command",
    "demo": "provisioner.cli.demo:command",
    "mock-node-api": "provisioner.cli.mock_api:command",
    "simulate": "provisioner.cli.simulate:command",
}


@click.group(
    cls=LazyGroup,
    lazy=LAZY_COMMANDS,
    context_settings={"help_option_names": ["-h", "--help"], "show_default": True},
)
@click.version_option(__version__)
@accept_shared_options()
def cli() -> None:
    """Predictive GPU node provisioning on Redis.

    The options below are shared: the commands that use them accept them after their
    name too ('provisioner status --pool eu'), where they win over the same option
    given here.
    """


@cli.command()
@click.option(
    "--node-api-url",
    envvar="PROVISIONER_NODE_API_URL",
    default="http://localhost:8080",
    help="Base URL of the Node Management API (http:// or https://).",
)
@click.option(
    "--metrics-port",
    envvar="PROVISIONER_METRICS_PORT",
    type=click.IntRange(1, 65535),
    default=None,
    help="Serve /metrics and /healthz on this port.",
)
@click.option("--metrics-host", envvar="PROVISIONER_METRICS_HOST", default="0.0.0.0")
@click.option(
    "--replica-id",
    envvar="PROVISIONER_REPLICA_ID",
    default=None,
    callback=_replica_id,
    help="Unique replica id (default host-pid-random).",
)
@click.option(
    "--policy",
    envvar="PROVISIONER_POLICY",
    default="predictive",
    type=click.Choice(list(POLICY_NAMES)),
)
@click.option(
    "--miss-cost-boots",
    envvar="PROVISIONER_MISS_COST_BOOTS",
    type=FiniteFloat(min=0.001, max=MAX_BOOTS),
    default=DEFAULT_MISS_COST_B,
    help="predictive: what one miss is worth, in boot times of an idle node (its one "
    "knob); the service level c / (c + 1) is then the same at any boot time.",
)
@click.option(
    "--miss-cost",
    envvar="PROVISIONER_MISS_COST",
    type=FiniteFloat(min=0.001, max=MAX_SECONDS * MAX_BOOTS),
    default=None,
    help="predictive: what one miss is worth in node-seconds; replaces --miss-cost-boots "
    "(the service level then changes with the boot time).",
)
@click.option(
    "--z",
    "z",
    envvar="PROVISIONER_Z",
    type=FiniteFloat(min=0, max=MAX_Z),
    default=1.64,
    help="basestock: safety factor (standard deviations).",
)
@click.option(
    "--min-spare",
    envvar="PROVISIONER_MIN_SPARE",
    type=click.IntRange(min=0, max=MAX_NODES),
    default=None,
    help="A policy knob: spare nodes the policy adds to its own target (predictive 0, "
    "basestock 1); static: the pool size (4). For an operator's floor that holds for "
    "every policy and that the reaper respects, use --min-ready.",
)
@click.option(
    "--keep-alive",
    envvar="PROVISIONER_KEEP_ALIVE",
    type=FiniteFloat(min=0, max=MAX_SECONDS),
    default=60.0,
    help="Baselines only (static, basestock, reactive, hybrid): seconds a surplus ready "
    "node may idle; the predictive policy's keep-alive is one learned boot time.",
)
@click.option(
    "--half-life",
    envvar="PROVISIONER_HALF_LIFE",
    type=FiniteFloat(min=0.001, max=MAX_SECONDS),
    default=60.0,
    help="basestock: half-life of the rate estimates, seconds.",
)
@click.option(
    "--default-boot",
    envvar="PROVISIONER_DEFAULT_BOOT",
    type=FiniteFloat(min=0.001, max=MAX_SECONDS),
    default=30.0,
    help="Boot time assumed before the first observation, seconds.",
)
@click.option(
    "--lease-ttl",
    envvar="PROVISIONER_LEASE_TTL",
    type=FiniteFloat(min=0.001, max=MAX_SECONDS),
    default=5.0,
    help="Leader lease time-to-live, seconds.",
)
@click.option(
    "--tick",
    envvar="PROVISIONER_TICK",
    type=FiniteFloat(min=0.01, max=MAX_SECONDS),
    default=1.0,
    help="Scaling period, seconds.",
)
@click.option(
    "--marker-interval",
    envvar="PROVISIONER_MARKER_INTERVAL",
    type=FiniteFloat(min=0.001, max=MAX_SECONDS),
    default=0.1,
    help="Shared-sequence marker period, seconds.",
)
@click.option(
    "--user-ttl-boots",
    envvar="PROVISIONER_USER_TTL_BOOTS",
    type=FiniteFloat(min=0.001, max=MAX_BOOTS),
    default=DEFAULT_USER_TTL_B,
    help="Inactivity before a user leaves the active set, in learned boot times.",
)
@click.option(
    "--user-ttl",
    envvar="PROVISIONER_USER_TTL",
    type=FiniteFloat(min=0.001, max=MAX_SECONDS),
    default=None,
    help="Inactivity before a user leaves the active set, seconds; replaces --user-ttl-boots.",
)
@click.option(
    "--history-ttl",
    envvar="PROVISIONER_HISTORY_TTL",
    type=FiniteFloat(min=0.001, max=MAX_HISTORY_SECONDS),
    default=7 * 86_400.0,
    help="A user's record (history, ordering) untouched this long is forgotten, seconds.",
)
@click.option(
    "--api-timeout",
    envvar="PROVISIONER_API_TIMEOUT",
    type=FiniteFloat(min=0.001, max=MAX_SECONDS),
    default=5.0,
    help="Node API request timeout, seconds.",
)
@click.option(
    "--marker-timeout",
    envvar="PROVISIONER_MARKER_TIMEOUT",
    type=FiniteFloat(min=0.001, max=MAX_SECONDS),
    default=3.0,
    help="No marker for this long: PING the subscription; no answer for as long again: "
    "it is dead (half-open), seconds.",
)
@click.option(
    "--health-check-interval",
    envvar="PROVISIONER_HEALTH_CHECK_INTERVAL",
    type=FiniteFloat(min=0.001, max=MAX_SECONDS),
    default=2.0,
    help="Redis connection health-check period, seconds.",
)
@click.option(
    "--redis-timeout",
    envvar="PROVISIONER_REDIS_TIMEOUT",
    type=FiniteFloat(min=0.001, max=MAX_SECONDS),
    default=3.0,
    help="A Redis command unanswered this long fails and its connection is re-made, seconds.",
)
@click.option(
    "--unknown-grace",
    envvar="PROVISIONER_UNKNOWN_GRACE",
    type=FiniteFloat(min=0, max=MAX_SECONDS),
    default=15.0,
    help="Wait before adopting or deleting a node unknown to us, seconds.",
)
@click.option(
    "--min-boot-timeout",
    envvar="PROVISIONER_MIN_BOOT_TIMEOUT",
    type=FiniteFloat(min=0, max=MAX_SECONDS),
    default=10.0,
    help="Floor of the stuck-boot timeout, seconds.",
)
@click.option(
    "--intent-timeout",
    envvar="PROVISIONER_INTENT_TIMEOUT",
    type=FiniteFloat(min=0, min_open=True, max=MAX_SECONDS),
    default=None,
    help="An open create intent (a POST that timed out, no status of its node yet) older "
    "than this is closed, seconds.  Default: two learned boot times, at least "
    "--min-boot-timeout.",
)
@click.option(
    "--max-nodes",
    envvar="PROVISIONER_MAX_NODES",
    type=click.IntRange(min=0, max=MAX_NODES),
    default=None,
    help="Cap on every node that costs (open create intents, booting, ready, allocated, "
    "terminating, unknown); beyond it a connect waits instead of causing a boot. "
    "Default: no cap.",
)
@click.option(
    "--min-ready",
    envvar="PROVISIONER_MIN_READY",
    type=click.IntRange(min=0, max=MAX_NODES),
    default=0,
    help="The operator's floor: spare nodes (ready + booting) kept whatever the policy "
    "says, and left by the reaper; still under --max-nodes.",
)
@click.option(
    "--max-clock-skew",
    envvar="PROVISIONER_MAX_CLOCK_SKEW",
    type=FiniteFloat(min=0, max=MAX_SECONDS),
    default=2.0,
    help="A replica whose clock is further than this from Redis's writes nothing (no "
    "message applied, no maintenance, no lease) and fails /healthz, seconds (0: unchecked).",
)
@click.option(
    "--lag",
    envvar="PROVISIONER_TEST_LAG",
    type=FiniteFloat(),
    default=0.0,
    hidden=True,
    help="Testing only: delay each message by this many seconds (a lagging replica).",
)
@pass_cli_config
def run(
    obj: CliConfig,
    node_api_url: str,
    metrics_port: int | None,
    metrics_host: str,
    replica_id: str | None,
    policy: str,
    miss_cost_boots: float,
    miss_cost: float | None,
    z: float,
    min_spare: int | None,
    keep_alive: float,
    half_life: float,
    default_boot: float,
    lease_ttl: float,
    tick: float,
    marker_interval: float,
    user_ttl_boots: float,
    user_ttl: float | None,
    history_ttl: float,
    api_timeout: float,
    marker_timeout: float,
    health_check_interval: float,
    redis_timeout: float,
    unknown_grace: float,
    min_boot_timeout: float,
    intent_timeout: float | None,
    max_nodes: int | None,
    min_ready: int,
    max_clock_skew: float,
    lag: float,
) -> None:
    """Run one worker replica (any number may run at once)."""
    if not node_api_url.startswith(("http://", "https://")):
        raise click.BadParameter(
            f"{node_api_url!r}: expected an http:// or https:// URL", param_hint="--node-api-url"
        )
    if lease_ttl < 2 * tick:
        raise click.BadParameter(
            f"{lease_ttl} is under twice --tick {tick}: the leader renews its lease once a "
            "tick, so it would lapse between renewals and change hands over and over",
            param_hint="--lease-ttl",
        )
    if max_nodes is not None and max_nodes < min_ready:
        raise click.BadParameter(
            f"{max_nodes} is below --min-ready {min_ready}: the floor could never be held",
            param_hint="--max-nodes",
        )
    knobs = run_knobs(
        policy, miss_cost_b=miss_cost_boots, miss_cost=miss_cost, keep_alive=keep_alive, z=z,
        min_spare=min_spare, half_life=half_life,
    )  # fmt: skip
    extra = {"replica_id": replica_id} if replica_id else {}
    cfg = WorkerConfig(
        redis_url=obj.redis_url,
        node_api_url=node_api_url,
        pool=obj.pool,
        channel_prefix=obj.channel_prefix,
        metrics_host=metrics_host,
        metrics_port=metrics_port,
        marker_interval_s=marker_interval,
        user_ttl_s=user_ttl,
        user_ttl_b=user_ttl_boots,
        history_ttl_s=history_ttl,
        policy=policy,
        policy_knobs=knobs,
        marker_timeout_s=marker_timeout,
        health_check_interval_s=health_check_interval,
        socket_timeout_s=redis_timeout,
        leader=LeaderConfig(
            lease_ttl_s=lease_ttl,
            tick_s=tick,
            default_boot_s=default_boot,
            unknown_grace_s=unknown_grace,
            min_boot_timeout_s=min_boot_timeout,
            intent_timeout_s=intent_timeout,
            max_nodes=max_nodes,
            min_ready=min_ready,
            max_clock_skew_s=max_clock_skew or None,
        ),
        api_timeout_s=api_timeout,
        ingest_lag_s=lag,
        **extra,  # type: ignore[arg-type]
    )
    try:
        asyncio.run(run_worker(cfg))
    except (ListenError, TaskFailed) as e:
        raise click.ClickException(str(e)) from e


#: ``status --json`` lists this many of the users' allocations (the first by user id).
STATUS_ALLOCATIONS = 20


def _lease_held(leader: dict[str, str], now_ms: int) -> bool:
    """Whether the leader hash names a holder whose lease runs past ``now_ms`` (unix ms,
    this machine's clock): a released lease has ``expires_ms`` 0."""
    try:
        return bool(leader.get("holder")) and int(leader.get("expires_ms", "0")) > now_ms
    except ValueError:
        return False


def _leader_line(leader: dict[str, str], held: bool) -> str:
    """``status``'s leader: the holder and token, or none with the last holder."""
    holder, token = leader.get("holder", "-"), leader.get("token", "-")
    if held:
        return f"{holder} token {token}  expires {_when(leader.get('expires_ms'))}"
    if not leader:
        return "none"
    return f"none (lease of {holder}, token {token}, released or expired)"


#: A replica beats every second; one silent this long is shown as silent (killed, hung, or
#: cut off from Redis).  A replica that stops cleanly removes its own entry.
SILENT_S = 10.0


def _replicas_line(replicas: dict[str, int], silent: list[str], now_ms: int) -> str:
    """``status``'s replicas with the age of their last heartbeat, those ``silent``
    (:data:`SILENT_S`, as ``status --json`` lists them) marked so (the entry goes 30 s
    after the last heartbeat, when another replica beats)."""
    if not replicas:
        return "-"
    return ", ".join(
        f"{r} ({max(0, now_ms - ms) / 1000:.1f} s ago{', silent' if r in silent else ''})"
        for r, ms in replicas.items()
    )


async def _status(obj: CliConfig) -> dict[str, Any]:
    coord = _coordinator(obj)
    k = coord.keys
    try:
        snap = await coord.snapshot()
        c = coord.client
        leader = {str(a): str(b) for a, b in (await c.hgetall(k.leader)).items()}
        policy = await c.hgetall(k.policy)
        bad = await c.hgetall(k.bad)
        replicas: Any = await c.zrange(k.replicas, 0, -1, withscores=True)
        waiting = await c.zrange(k.users_waiting, 0, 19)
        allocations = await c.hgetall(k.user_node)
        shown = dict(sorted(allocations.items())[:STATUS_ALLOCATIONS])
        now_ms = int(time.time() * 1000)
        return {
            "pool": obj.pool,
            "nodes": {
                "booting": snap.booting,
                "ready": snap.ready,
                "allocated": snap.allocated,
                "terminating": snap.terminating,
                "unknown": snap.unknown,
            },
            "create_intents_open": snap.intents,
            "users": {"active": snap.active, "waiting": snap.waiting},
            "waitlist_head": waiting,
            "allocations": shown,
            "allocations_total": len(allocations),
            "allocations_truncated": len(shown) < len(allocations),
            "connected": len(allocations),
            "leader": leader,
            "lease_held": _lease_held(leader, now_ms),
            "replicas": {str(r): int(ms) for r, ms in replicas},
            "replicas_silent": sorted(
                str(r) for r, ms in replicas if now_ms - int(ms) > SILENT_S * 1000
            ),
            "boot_time": {
                "n": snap.boot.n,
                "mean_s": snap.boot.mean_s,
                "sd_s": snap.boot.sd_s,
                "last_s": snap.boot.last_s,
            },
            "policy": policy,
            "caps": {
                "max_nodes": _int_or_none(policy.get("max_nodes")),
                "min_ready": _int_or_none(policy.get("min_ready")) or 0,
                "nodes_counted": nodes_counted(snap),
                "withheld": _int_or_none(policy.get("withheld")) or 0,
            },
            "counters": snap.stats,
            "bad_input": {str(a): int(b) for a, b in bad.items() if not str(a).startswith("_")},
        }
    finally:
        await coord.client.aclose()


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_cli_config
def status(obj: CliConfig, as_json: bool) -> None:
    """Show the pool: nodes by state, users, leader, boot time, target, counters.

    With --json: numbers as numbers, the policy's state as nested objects, and the first 20
    allocations by user id (``allocations_total`` counts them all).
    """
    st = _run(_status(obj))
    if as_json:
        typed = {
            **st,
            "leader": {a: _field(a, b) for a, b in st["leader"].items()},
            "policy": {a: _field(a, b) for a, b in st["policy"].items()},
        }
        click.echo(json.dumps(typed, indent=2, sort_keys=True))
        return
    n, u, b, caps = st["nodes"], st["users"], st["boot_time"], st["caps"]
    pol = st["policy"]
    cap = caps["max_nodes"]
    lines = [
        f"pool {st['pool']}",
        f"  nodes      booting {n['booting']}  ready {n['ready']}  allocated {n['allocated']}"
        f"  terminating {n['terminating']}  unknown {n['unknown']}"
        f"  (open create intents {st['create_intents_open']})",
        f"  users      active {u['active']}  waiting {u['waiting']}"
        f"  connected {st['allocations_total']}",
        f"  waitlist   {' '.join(st['waitlist_head']) or '-'}",
        "  leader     " + _leader_line(st["leader"], st["lease_held"]),
        "  replicas   "
        + _replicas_line(st["replicas"], st["replicas_silent"], int(time.time() * 1000)),
        "  boot time  "
        + (
            f"{b['mean_s']:.1f}s +- {b['sd_s']:.1f}s over {plural(b['n'], 'boot')}"
            if b["mean_s"]
            else "-"
        ),
        "  policy     "
        + (
            f"{pol.get('policy', '-')}: target spare {pol.get('target', '-')}"
            f"  (spare then {pol.get('spare', '-')})  keep-alive {_secs(pol.get('keep_alive_s'))}"
            f"  decided at {_when(pol.get('now_ms'))}"
            if pol
            else "no decision yet"
        ),
        f"  caps       max nodes {'unlimited' if cap is None else cap}"
        f" (counted now {caps['nodes_counted']}, boots withheld then {caps['withheld']})"
        f"  min ready {caps['min_ready']}",
        "  counters   " + "  ".join(f"{k} {v}" for k, v in sorted(st["counters"].items())),
        "  bad input  "
        + ("  ".join(f"{k} {v}" for k, v in sorted(st["bad_input"].items())) or "none"),
    ]
    click.echo("\n".join(lines))


async def _check(obj: CliConfig) -> tuple[list[str], bool]:
    """The problems found, and whether the pool has any key at all."""
    coord = _coordinator(obj)
    try:
        await coord.client.ping()
        wrong = await wrong_types(coord.client, coord.keys)
        exists = int(await coord.client.exists(*coord.keys.all())) > 0
        return wrong or await check_invariants(coord.client, coord.keys), exists
    finally:
        await coord.client.aclose()


@cli.command()
@pass_cli_config
def check(obj: CliConfig) -> None:
    """Probe: exit 0 when Redis answers, every pool key has the type the scripts expect and
    every invariant holds, else 1.  A pool with no key at all is consistent; it says so on
    stderr (no replica has run on it yet, or --pool names another)."""
    try:
        problems, exists = asyncio.run(_check(obj))
    except ResponseError as e:  # Redis answered: the pool's state is what is wrong
        click.echo(f"pool state unreadable: {e}", err=True)
        sys.exit(1)
    except (RedisError, OSError) as e:
        click.echo(f"redis unavailable: {e}", err=True)
        sys.exit(1)
    if problems:
        for p in problems:
            click.echo(p, err=True)
        sys.exit(1)
    if not exists:
        click.echo(
            f"pool {obj.pool!r} has no keys: no replica has run on it yet, or --pool names "
            "another pool",
            err=True,
        )
    click.echo("ok")


async def _seed(
    obj: CliConfig, users: int, ready: int, booting: int, now_ms: int | None
) -> dict[str, int]:

    coord = _coordinator(obj)
    now = now_ms if now_ms is not None else int(time.time() * 1000)
    tag = uuid.uuid4().hex[:6]
    try:
        calls = [coord.activity_call(f"seed-user-{tag}-{i}", now) for i in range(users)]
        for i in range(0, len(calls), 1000):
            for res in await coord.runner.call_many(calls[i : i + 1000]):
                raise_for_code("recordActivity", int(res[0]))  # a refusal is no user
        for i in range(ready + booting):
            node = f"seed-node-{tag}-{i}"
            await coord.register_node("", node, now)
            if i < ready:
                await coord.node_status(node, "ready", now)
        return {"users": users, "ready_nodes": ready, "booting_nodes": booting}
    except ScriptError as e:
        raise click.ClickException(f"seed: {e}") from e
    finally:
        await coord.client.aclose()


@cli.command()
@click.option("--users", type=click.IntRange(0, MAX_NODES), default=0, help="Active users to add.")
@click.option(
    "--ready-nodes",
    type=click.IntRange(0, MAX_NODES),
    default=0,
    help="Ready nodes to add (not in any API).",
)
@click.option(
    "--booting-nodes", type=click.IntRange(0, MAX_NODES), default=0, help="Booting nodes to add."
)
@click.option(
    "--now-ms",
    type=click.IntRange(0, 10**13 - 1),
    default=None,
    help="Time to seed at, unix ms (default: now).",
)
@pass_cli_config
def seed(
    obj: CliConfig, users: int, ready_nodes: int, booting_nodes: int, now_ms: int | None
) -> None:
    """Seed users and nodes for debugging, through the same Lua scripts."""
    click.echo(json.dumps(_run(_seed(obj, users, ready_nodes, booting_nodes, now_ms))))


_NUMBER = re.compile(r"-?\d+(\.\d+)?([eE][-+]?\d+)?")


def _typed(value: str) -> Any:
    """A decision field as JSON has it: numbers as numbers (Redis stores strings)."""
    if not _NUMBER.fullmatch(value):
        return value
    return float(value) if any(c in value for c in ".eE") else int(value)


def _decoded(value: str) -> Any:
    """A decision's ``state`` field (the policy's state, stored as a JSON text) as JSON
    objects; a text that is not JSON stays as it is."""
    try:
        return json.loads(value)
    except ValueError:
        return value


def _field(name: str, value: str) -> Any:
    """A stored field as ``--json`` gives it: ids and names as text (a replica id may be
    all digits), the policy's state as nested objects, other numbers as numbers."""
    if name in ("holder", "instance", "leader", "policy"):
        return value
    return _decoded(value) if name == "state" else _typed(value)


def _when(ms: str | None) -> str:
    """``now_ms`` of a decision as UTC time, with the ms (what ``redis-cli`` shows)."""
    if ms is None or not ms.isdigit():
        return str(ms)
    t = datetime.datetime.fromtimestamp(int(ms) / 1000, datetime.UTC)
    return f"{t.isoformat(timespec='milliseconds').replace('+00:00', 'Z')} ({ms})"


async def _explain(obj: CliConfig, count: int) -> list[dict[str, str]]:
    coord = _coordinator(obj)
    try:
        entries: Any = await coord.client.xrevrange(coord.keys.decisions, count=count)
        return [{str(a): str(b) for a, b in fields.items()} for _, fields in entries or []]
    finally:
        await coord.client.aclose()


@cli.command()
@click.option("-n", "count", type=click.IntRange(min=1), default=10, help="How many decisions.")
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Machine-readable output: a list of decisions, newest first; numbers as numbers, "
    "the policy's state as nested objects.",
)
@pass_cli_config
def explain(obj: CliConfig, count: int, as_json: bool) -> None:
    """Show the latest scaling decisions with their inputs (newest first)."""
    rows = _run(_explain(obj, count))
    if as_json:
        typed = [{k: _field(k, v) for k, v in r.items()} for r in rows]
        click.echo(json.dumps(typed, indent=2))
        return
    if not rows:
        click.echo(f"no decisions recorded in pool {obj.pool!r} yet", err=True)
    for r in rows:
        if "demand_mean" in r:  # the predictive policy: its forecast, then the background
            why = (
                f"demand {r.get('demand_mean')} sd {r.get('demand_sd')}"
                f"  lambda_bg {r.get('lambda_bg', '-')}"
                f"  returns {r.get('release_credit', '-')} (session {r.get('session_s') or '-'}s)"
            )
        elif "lambda" in r:
            why = f"lambda {r['lambda']}"
        else:
            why = f"policy {r.get('policy', '-')}"
        caps = f"  max nodes {r.get('max_nodes', 'unlimited')}"
        if "max_nodes" in r:
            caps += (
                f" (counted {r.get('counted')} before this tick's boots,"
                f" withheld {r.get('withheld')})"
            )
        caps += f"  min ready {r.get('min_ready', 0)}"
        boot = f"  B {r['boot_s']}s" if r.get("boot_s") not in (None, "") else ""
        if "policy_target" in r:
            caps += f" (policy target {r['policy_target']})"
        click.echo(
            f"{_when(r.get('now_ms'))}  target {r.get('target')}  spare {r.get('spare')}"
            f"  waiting {r.get('waiting')}  created {r.get('created')}"
            f"  reaped {r.get('reaped_idle')}+{r.get('reaped_stuck')}"
            f"  {why}{boot}{caps}  leader {r.get('leader')}"
        )


async def _premium(obj: CliConfig, action: str, users: tuple[str, ...]) -> list[str] | int:
    coord = _coordinator(obj)
    try:
        if action == "list":
            members = await coord.client.smembers(coord.keys.users_premium)
            return sorted(str(m) for m in members)
        return await coord.set_premium(users, premium=action == "add")
    finally:
        await coord.client.aclose()


@cli.command()
@click.argument("action", type=click.Choice(["add", "remove", "list"]))
@click.argument("users", nargs=-1)
@pass_cli_config
def premium(obj: CliConfig, action: str, users: tuple[str, ...]) -> None:
    """Mark users premium (served first; the policy keeps a margin for them).

    provisioner premium add alice bob | remove alice | list
    """
    if action == "list" and users:
        raise click.UsageError(f"premium list takes no user ids, got {' '.join(users)}")
    if action != "list":
        if not users:
            raise click.UsageError(f"premium {action} needs at least one user id")
        for u in users:
            if not u or len(u) > MAX_USER_ID or not u.isprintable():
                raise click.BadParameter(f"invalid user id {u!r}", param_hint="USERS")
    out = _run(_premium(obj, action, users))
    if isinstance(out, list):
        click.echo("\n".join(out))
    else:
        click.echo(f"{out} changed")


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def main() -> None:
    """Entry point of the ``provisioner`` script.

    SIGTERM exits through SystemExit, so the private redis-server and the child processes
    of ``demo`` and ``bench`` are cleaned up (``run`` installs its own graceful handler).
    """
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    cli(prog_name="provisioner")


@cli.command("acl")
@click.option("--user", default="provisioner", show_default=True, help="ACL user name.")
@click.option(
    "--password",
    envvar="PROVISIONER_ACL_PASSWORD",
    default="CHANGE-ME",
    show_default=True,
    help="The user's password.",
)
@pass_cli_config
def acl_cmd(obj: CliConfig, user: str, password: str) -> None:
    """Print a least-privilege ACL SETUSER command for this pool and channel prefix
    (paste it into redis-cli; nothing is sent)."""
    from provisioner.core.acl import acl_setuser

    try:
        tokens = acl_setuser(user, password, obj.pool, obj.channel_prefix)
    except ValueError as e:
        raise click.BadParameter(str(e)) from e
    click.echo(" ".join(tokens))
