"""The command line through click's CliRunner against the real redis-server: the
inspection commands (``seed``, ``status``, ``check``, ``explain``), the shared options in
every position, the commands that start a private Redis, and the missing-extra message."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import click
import pytest
import redis
from click.testing import CliRunner, Result

from provisioner.cli.extras import missing_modules
from provisioner.cli.main import cli
from provisioner.cli.options import CliConfig, accept_shared_options, shared_options
from provisioner.core.keys import PoolKeys
from tests.helpers import SyncCoord

# Unset the environment twins for the duration of each invocation (and restore them
# after), so neither the caller's shell nor a command that exports them leaks into
# other tests.
ENV: dict[str, str | None] = {
    name: None
    for name in (
        "PROVISIONER_REDIS_URL",
        "PROVISIONER_POOL",
        "PROVISIONER_CHANNEL_PREFIX",
        "PROVISIONER_NODE_API_URL",
        "PROVISIONER_LOG_LEVEL",
    )
}


Invoke = Callable[..., Result]


@pytest.fixture
def invoke(redis_url: str, pool: str) -> Invoke:
    """Run the CLI on the test's pool: ``invoke("status", "--json", url=...)``."""
    runner = CliRunner(env=ENV)

    def call(*args: str, url: str = redis_url) -> Result:
        return runner.invoke(cli, ["--redis-url", url, "--pool", pool, *args])

    return call


def ok(result: Result) -> str:
    assert result.exit_code == 0, (result.output, result.exception)
    return result.output


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"redis://127.0.0.1:{port}/0"


def test_seed_then_status_shows_users_and_nodes(invoke: Invoke, pool: str) -> None:
    out = ok(invoke("seed", "--users", "5", "--ready-nodes", "2", "--booting-nodes", "1"))
    assert json.loads(out) == {"users": 5, "ready_nodes": 2, "booting_nodes": 1}
    st = json.loads(ok(invoke("status", "--json")))
    assert st["pool"] == pool
    assert st["nodes"] == {
        "booting": 1,
        "ready": 2,
        "allocated": 0,
        "terminating": 0,
        "unknown": 0,
    }
    assert st["users"] == {"active": 5, "waiting": 0}
    assert st["allocations_total"] == 0 and st["waitlist_head"] == []
    assert st["bad_input"] == {}
    # seeding again adds to the pool (fresh names), never overwrites
    ok(invoke("seed", "--users", "5", "--ready-nodes", "2"))
    st = json.loads(ok(invoke("status", "--json")))
    assert st["nodes"]["ready"] == 4 and st["users"]["active"] == 10
    text = ok(invoke("status"))
    assert f"pool {pool}" in text
    assert "booting 1  ready 4  allocated 0" in text
    assert "active 10  waiting 0" in text


def test_status_says_when_no_replica_holds_the_lease(
    invoke: Invoke, redis_url: str, pool: str
) -> None:
    """A lease released on a clean stop (expires_ms 0) or past its expiry is no leader:
    ``status`` said ``leader e1`` for a pool whose only replica had stopped.  Replicas
    show the age of their last heartbeat."""
    r = redis.Redis.from_url(redis_url)
    keys = PoolKeys(pool)
    now = int(time.time() * 1000)
    r.hset(keys.leader, mapping={"holder": "e1", "token": "7", "expires_ms": now + 60_000})
    r.zadd(keys.replicas, {"e1": now - 2_500, "e0": now - 25_000})
    st = json.loads(ok(invoke("status", "--json")))
    assert st["lease_held"] is True and st["replicas_silent"] == ["e0"]
    text = ok(invoke("status"))
    assert "leader     e1 token 7  expires 20" in text
    assert "e1 (2.5 s ago)" in text or "e1 (2.6 s ago)" in text
    # fresh-user finding: a killed replica was listed like a live one for 30 s
    assert "e0 (25.0 s ago, silent)" in text or "e0 (25.1 s ago, silent)" in text
    for expires in (0, now - 1):  # released, expired
        r.hset(keys.leader, "expires_ms", expires)
        assert json.loads(ok(invoke("status", "--json")))["lease_held"] is False
        text = ok(invoke("status"))
        assert "leader     none (lease of e1, token 7, released or expired)" in text


def test_status_json_has_numbers_as_numbers_and_says_when_allocations_are_cut(
    invoke: Invoke, redis_url: str, pool: str
) -> None:
    """Fresh-user finding: ``status --json`` gave the lease's and the policy's numbers as
    strings and the policy's state as a JSON text, and listed 20 of 32 allocations (an
    arbitrary 20) without saying so; the text said ``policy -: target spare -`` before any
    decision."""
    assert "policy     no decision yet" in ok(invoke("status"))
    r = redis.Redis.from_url(redis_url)
    keys = PoolKeys(pool)
    now = int(time.time() * 1000)
    r.hset(keys.leader, mapping={"holder": "0042", "token": "7", "expires_ms": now + 60_000})
    state = json.dumps({"connects": [[0.5]]})
    r.hset(keys.policy, mapping={"policy": "predictive", "target": "6", "now_ms": "2001",
                                 "keep_alive_s": "30.5", "state": state})  # fmt: skip
    r.hset(keys.user_node, mapping={f"u{i:02d}": f"n{i}" for i in range(32)})
    st = json.loads(ok(invoke("status", "--json")))
    assert st["leader"] == {"holder": "0042", "token": 7, "expires_ms": now + 60_000}
    assert st["policy"]["target"] == 6 and st["policy"]["keep_alive_s"] == 30.5
    assert st["policy"]["state"] == {"connects": [[0.5]]}
    assert st["allocations"] == {f"u{i:02d}": f"n{i}" for i in range(20)}
    assert st["allocations_total"] == 32 and st["allocations_truncated"] is True
    text = ok(invoke("status"))
    assert "policy     predictive: target spare 6" in text
    assert "decided at 1970-01-01T00:00:02.001Z (2001)" in text


def test_status_of_another_pool_is_empty(invoke: Invoke, redis_url: str, pool: str) -> None:
    ok(invoke("seed", "--users", "3", "--ready-nodes", "1"))
    other = CliRunner(env=ENV).invoke(
        cli, ["--redis-url", redis_url, "--pool", pool + "x", "status", "--json"]
    )
    st = json.loads(ok(other))
    assert st["nodes"]["ready"] == 0 and st["users"]["active"] == 0


def test_seed_rejects_negative_counts(invoke: Invoke) -> None:
    result = invoke("seed", "--users", "-1")
    assert result.exit_code == 2
    assert "'--users'" in result.output and "0<=x<=1000000" in result.output


def test_seed_refuses_a_time_the_scripts_would_refuse(invoke: Invoke) -> None:
    """``--now-ms`` outside [0, 1e13) is a usage error: it used to report the users it
    asked for while the activity script refused every one (-5), or end in a traceback
    from a refused node registration (2^64)."""
    for bad in ("-5", str(10**13), str(2**64 + 28672)):
        result = invoke("seed", "--users", "2", "--ready-nodes", "1", "--now-ms", bad)
        assert result.exit_code == 2, (bad, result.output)
        assert "--now-ms" in result.output and "Traceback" not in result.output
    st = json.loads(ok(invoke("status", "--json")))
    assert st["users"]["active"] == 0 and st["nodes"]["ready"] == 0  # nothing written
    out = ok(invoke("seed", "--users", "2", "--now-ms", "1700000000000"))
    assert json.loads(out)["users"] == 2


def test_check_passes_then_fails_on_a_broken_invariant(
    invoke: Invoke, r: redis.Redis, pool: str
) -> None:
    empty = invoke("check")  # an empty pool is consistent
    assert empty.exit_code == 0 and empty.stdout.strip() == "ok"
    # fresh-user finding: `check --pool <a typo>` said only "ok"
    assert f"pool {pool!r} has no keys" in empty.stderr
    ok(invoke("seed", "--users", "2", "--ready-nodes", "2", "--booting-nodes", "1"))
    assert ok(invoke("check")).strip() == "ok"
    keys = PoolKeys(pool)
    r.hset(keys.node_state, "rogue-node", "ready")  # ready, but not in the ready set
    result = invoke("check")
    assert result.exit_code == 1
    assert "rogue-node" in result.output and "ok" not in result.output.split()
    r.hdel(keys.node_state, "rogue-node")
    assert ok(invoke("check")).strip() == "ok"
    # a one-sided allocation breaks I1
    r.hset(keys.user_node, "someone", "ghost-node")
    result = invoke("check")
    assert result.exit_code == 1
    assert "I1" in result.output and "someone" in result.output
    r.hdel(keys.user_node, "someone")
    assert ok(invoke("check")).strip() == "ok"
    # a waiting user in the active set would count as a possible connect
    r.zadd(keys.users_waiting, {"eve": 2 * 10**13 + 5})
    r.zadd(keys.users_active, {"eve": 5})
    result = invoke("check")
    assert result.exit_code == 1
    assert "active user eve waits" in result.output
    # new-user finding: it said "1 users wait while 2 nodes are ready"
    assert "1 user waits while 2 nodes are ready" in result.output
    r.zadd(keys.users_waiting, {"fay": 2 * 10**13 + 6})
    r.zrem(keys.nodes_ready, r.zrange(keys.nodes_ready, 0, 0)[0])
    assert "2 users wait while 1 node is ready" in invoke("check").output


def test_explain_on_an_empty_pool_says_so(invoke: Invoke, pool: str) -> None:
    """A new user's finding: it printed nothing at all; now a line on stderr names the
    pool (the JSON stays an empty list)."""
    result = invoke("explain")
    assert result.exit_code == 0 and result.stdout == ""
    assert f"no decisions recorded in pool {pool!r} yet" in result.stderr
    assert json.loads(ok(invoke("explain", "--json"))) == []


def test_explain_shows_recorded_decisions_newest_first(
    invoke: Invoke, redis_url: str, pool: str
) -> None:
    sc = SyncCoord(redis_url, pool)
    try:
        lease = sc.acquire_lease("replica-a", 1_000, 5_000)
        assert lease.held
        for i, target in enumerate((3, 7)):
            fields: dict[str, str | int | float] = {
                "target": target, "spare": 1, "waiting": 0, "created": 2, "leader": "replica-a"
            }  # fmt: skip
            if i:  # the predictive policy's inputs: its forecast is shown, not `lambda`
                fields.update(demand_mean=2.5, demand_sd=1.2, lambda_bg=0.04)
                fields.update(release_credit=1.5, session_s=42.0)
                fields.update(state=json.dumps({"connects": [[0.5, 1]], "exposure": [[2.0]]}))
            else:
                fields.update({"lambda": 0.3})
            sc.record_decision(lease.token, 2_000 + i, fields)
    finally:
        sc.close()
    lines = ok(invoke("explain")).splitlines()
    assert len(lines) == 2
    assert "target 7" in lines[0] and "target 3" in lines[1]
    assert "demand 2.5 sd 1.2  lambda_bg 0.04" in lines[0] and "lambda 0.3" in lines[1]
    assert "returns 1.5 (session 42.0s)" in lines[0]
    assert all("leader replica-a" in line for line in lines)
    rows = json.loads(ok(invoke("explain", "-n", "1", "--json")))
    # new-user finding: numbers came as strings ("target": "7"), times as bare epoch ms
    assert len(rows) == 1 and rows[0]["target"] == 7 and rows[0]["demand_mean"] == 2.5
    assert rows[0]["leader"] == "replica-a" and rows[0]["now_ms"] == 2_001
    # new-user finding: the policy's state was a JSON text inside the JSON
    assert rows[0]["state"] == {"connects": [[0.5, 1]], "exposure": [[2.0]]}
    assert "the policy's state as nested objects" in " ".join(ok(invoke("explain", "-h")).split())
    assert lines[0].startswith("1970-01-01T00:00:02.001Z (2001)")


@pytest.mark.parametrize(
    "args",
    [("status",), ("status", "--json"), ("explain",), ("seed", "--users", "1")],
)
def test_unreachable_redis_is_a_clear_error(invoke: Invoke, args: tuple[str, ...]) -> None:
    result = invoke(*args, url=closed_port_url())
    assert result.exit_code != 0
    assert isinstance(result.exception, SystemExit)  # click's error path, not a crash
    assert "Redis" in result.output and "ConnectionError" in result.output
    assert "Traceback" not in result.output


def test_check_with_unreachable_redis_exits_1(invoke: Invoke) -> None:
    result = invoke("check", url=closed_port_url())
    assert result.exit_code == 1
    assert isinstance(result.exception, SystemExit)
    assert "redis unavailable" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("url", "pool"),
    [
        ("http://localhost:6379", "p1"),
        (None, "bad pool"),
        (None, "a{b}"),
        ("redis://localhost:6379/abc", "p1"),  # redis-py would use db 0 silently
        ("redis://localhost:6379/0/x", "p1"),
        ("redis://localhost:6379/\u00b2", "p1"),  # a digit to str.isdigit, not to redis-py
    ],
)
def test_malformed_url_or_pool_is_a_clear_error(redis_url: str, url: str | None, pool: str) -> None:
    result = CliRunner(env=ENV).invoke(
        cli, ["--redis-url", url or redis_url, "--pool", pool, "status"]
    )
    assert result.exit_code != 0
    assert isinstance(result.exception, SystemExit)


def test_premium_add_list_remove(redis_url: str, pool: str) -> None:
    def run(*args: str) -> str:
        result = CliRunner(env=ENV).invoke(
            cli, ["--redis-url", redis_url, "--pool", pool, "premium", *args]
        )
        assert result.exit_code == 0, result.output
        return result.output

    assert run("add", "alice", "bob").strip() == "2 changed"
    assert run("list").split() == ["alice", "bob"]
    assert run("remove", "alice").strip() == "1 changed"
    assert run("list").split() == ["bob"]
    bad = CliRunner(env=ENV).invoke(cli, ["--redis-url", redis_url, "premium", "add"])
    assert bad.exit_code != 0 and "at least one user" in bad.output
    # new-user finding: `premium list extra` ignored its argument
    bad = CliRunner(env=ENV).invoke(cli, ["--redis-url", redis_url, "premium", "list", "bob"])
    assert bad.exit_code == 2 and "premium list takes no user ids, got bob" in bad.output


# Wrong usage a new user tried (fresh-user findings): each is a clear usage error or a
# one-line error, never a traceback.
@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("run", "--node-api-url", "notaurl"), "expected an http:// or https:// URL"),
        (("run", "--tick", "0"), "--tick"),
        (("run", "--keep-alive", "-5"), "--keep-alive"),
        (("run", "--lease-ttl", "0"), "--lease-ttl"),
        (("run", "--lease-ttl", "1.5", "--tick", "1"), "twice --tick"),
        (("run", "--metrics-port", "70000"), "--metrics-port"),  # re-test finding
        (("run", "--metrics-port", "-1"), "--metrics-port"),
        # break-test findings: accepted, then refused by a script or the policy every tick
        (("run", "--default-boot", "1e300"), "--default-boot"),  # a ZeroDivisionError
        (("run", "--default-boot", "1e12"), "--default-boot"),  # ERR_BAD_ARG a tick
        (("run", "--policy", "static", "--min-spare", "99999999999999999999"), "--min-spare"),
        (("run", "--lease-ttl", "1e12"), "--lease-ttl"),  # no failover after a crash
        (("run", "--max-nodes", "10000000"), "--max-nodes"),
        (("run", "--policy", "basestock", "--z", "1e300"), "--z"),  # re-test finding
        (("run", "--miss-cost", "1e300"), "--miss-cost"),
        # break-test findings: a replica that could never work, or a silent fallback
        (("run", "--marker-timeout", "0.000001"), "--marker-timeout"),  # resubscribed 160x
        (("run", "--redis-timeout", "1e-300"), "--redis-timeout"),
        (("run", "--health-check-interval", "1e-9"), "--health-check-interval"),
        (("run", "--replica-id", ""), "--replica-id"),
        (("run", "--max-clock-skew", "-1"), "--max-clock-skew"),
        (("run", "--replica-id", "  "), "must not be empty"),
        (("seed", "--ready-nodes", "100000000"), "--ready-nodes"),  # wrote 55,874 in 20 s
        (("seed", "--users", "-1"), "--users"),
        (("demo", "--keep-alive", "-5"), "--keep-alive"),  # it failed in the replicas, 60 s on
        (("--log-level", "bogus", "status"), "--log-level"),
        (("simulate", "--time-scale", "0"), "--time-scale"),
        (("simulate", "--time-scale", "-1"), "--time-scale"),
        (("bench", "policy", "--sessions", "0"), "--sessions"),
        (("demo", "--miss-cost-boots", "0"), "--miss-cost-boots"),
        (("demo", "--replicas", "0"), "--replicas"),
    ],
)
def test_bad_option_values_are_usage_errors(
    redis_url: str, args: tuple[str, ...], says: str
) -> None:
    result = CliRunner(env=ENV).invoke(cli, ["--redis-url", redis_url, *args])
    assert result.exit_code == 2, result.output
    assert says in result.output and "Traceback" not in result.output


def test_run_on_a_metrics_port_in_use_is_a_clear_error(redis_url: str, pool: str) -> None:
    """Break-test finding: ``run --metrics-port`` on a port in use died with a traceback."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner(env=ENV).invoke(
            cli,
            ["--redis-url", redis_url, "--pool", pool, "run", "--metrics-host", "127.0.0.1",
             "--metrics-port", str(port), "--node-api-url", "http://127.0.0.1:1"],
        )  # fmt: skip
    assert result.exit_code == 1, result.output
    assert f"cannot serve /metrics on 127.0.0.1:{port}" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    "args",
    [
        ("simulate", "--duration", "1"),
        ("bench", "policy", "--scenario", "spike", "--policy", "static", "--defaults"),
        ("demo", "--duration", "1"),
    ],
)
def test_an_unreachable_redis_stops_the_emulators_with_one_line(args: tuple[str, ...]) -> None:
    """... and leaves the process's log levels as they were: a bench quiets the leader's
    warnings, and in a process that goes on (a test run) they stayed off, so a later
    test that waits for a leader warning failed when it ran after this one."""
    import logging

    loggers = [logging.getLogger(n) for n in ("provisioner", "provisioner.core.leader")]
    before = [lg.level for lg in loggers]
    url = closed_port_url()
    extra = ["--redis-url", url] if args[0] == "bench" else []
    result = CliRunner(env=ENV).invoke(cli, ["--redis-url", url, *args, *extra])
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit)
    assert "Redis at" in result.output and url in result.output
    assert [lg.level for lg in loggers] == before


def test_mock_api_on_a_taken_port_is_a_clear_error(redis_url: str) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        result = CliRunner(env=ENV).invoke(
            cli, ["--redis-url", redis_url, "mock-node-api", "--port", str(port)]
        )
    assert result.exit_code == 1, result.output
    assert "cannot serve on 127.0.0.1" in result.output


@pytest.mark.parametrize(
    ("attr", "write", "says"),
    [
        ("node_state", lambda r, k: r.set(k, "junk"), "is a string, the scripts expect a hash"),
        # break-test finding: with these two, `check` said ok while no replica could work
        ("seq", lambda r, k: r.hset(k, "a", "b"), "is a hash, the scripts expect a string"),
        ("leader", lambda r, k: r.set(k, "x"), "is a string, the scripts expect a hash"),
    ],
)
def test_check_on_a_key_of_the_wrong_type_blames_the_state_not_redis(
    invoke: Invoke, r: redis.Redis, pool: str, attr: str, write: Any, says: str
) -> None:
    key = getattr(PoolKeys(pool), attr)
    write(r, key)
    result = invoke("check")
    assert result.exit_code == 1
    assert f"key {key} {says}" in result.output and "redis unavailable" not in result.output
    status = invoke("status")  # re-test finding: it said WRONGTYPE and nothing more
    if attr == "leader":  # status reads it (not every key)
        assert status.exit_code == 1
    if status.exit_code:
        assert "WRONGTYPE" in status.output and "`provisioner check` names the key" in status.output


# --- The shared options: before or after the command, one meaning each -----------------


@click.group()
@accept_shared_options()
def _top() -> None:
    """A group like ``provisioner``."""


@_top.group("mid")
@accept_shared_options(private_redis=True)
def _mid() -> None:
    """A nested group like ``bench``."""


@_mid.command("leaf")
@shared_options(private_redis=True)
@click.pass_obj
def _leaf(obj: CliConfig) -> None:
    click.echo(
        json.dumps({**asdict(obj), "given": sorted(obj.given), "explicit": obj.explicit_redis_url})
    )


def _merged(args: list[str], **env: str) -> dict[str, Any]:
    result = CliRunner(env={**ENV, **env}).invoke(_top, args)
    return dict(json.loads(ok(result)))


@pytest.mark.parametrize(
    ("args", "env", "pool", "given"),
    [
        (["mid", "leaf"], {}, "default", []),
        (["--pool", "a", "mid", "leaf"], {}, "a", ["pool"]),
        (["mid", "--pool", "b", "leaf"], {}, "b", ["pool"]),
        (["mid", "leaf", "--pool", "c"], {}, "c", ["pool"]),
        # innermost wins: after the command beats before it, at every level
        (["--pool", "a", "mid", "--pool", "b", "leaf"], {}, "b", ["pool"]),
        (["--pool", "a", "mid", "--pool", "b", "leaf", "--pool", "c"], {}, "c", ["pool"]),
        (["--pool", "a", "mid", "leaf"], {}, "a", ["pool"]),
        # the environment twin: below any command-line position, above the default
        (["mid", "leaf"], {"PROVISIONER_POOL": "e"}, "e", ["pool"]),
        (["mid", "leaf", "--pool", "c"], {"PROVISIONER_POOL": "e"}, "c", ["pool"]),
        (["--pool", "a", "mid", "leaf"], {"PROVISIONER_POOL": "e"}, "a", ["pool"]),
    ],
)
def test_shared_option_precedence(
    args: list[str], env: dict[str, str], pool: str, given: list[str]
) -> None:
    got = _merged(args, **env)
    assert got["pool"] == pool and got["given"] == given, got


def test_every_shared_option_is_merged_and_explicit_is_not_default() -> None:
    """A --redis-url equal to the default is still given (no private server then); no
    --redis-url at all gives None to a command that starts a private one."""
    assert _merged(["mid", "leaf"])["explicit"] is None
    url = "redis://localhost:6379/0"
    got = _merged(["mid", "leaf", "--redis-url", url])
    assert got["explicit"] == url and got["given"] == ["redis_url"]
    got = _merged(["mid", "leaf"], PROVISIONER_REDIS_URL="redis://h:1/2")
    assert got["explicit"] == "redis://h:1/2"
    got = _merged(
        ["--channel-prefix", "x.", "--log-level", "debug", "mid", "leaf",
         "--log-level", "WARNING", "--redis-url", "unix:///tmp/r.sock"],
        PROVISIONER_CHANNEL_PREFIX="env.",
    )  # fmt: skip
    assert got["channel_prefix"] == "x." and got["log_level"] == "warning"
    assert got["redis_url"] == "unix:///tmp/r.sock"
    assert got["given"] == ["channel_prefix", "log_level", "redis_url"]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["mid", "leaf", "--redis-url", "http://x"], "--redis-url"),
        (["--redis-url", "http://x", "mid", "leaf"], "--redis-url"),
        (["mid", "leaf", "--pool", "bad pool"], "--pool"),
        (["mid", "leaf", "--log-level", "loud"], "--log-level"),
    ],
)
def test_a_malformed_shared_option_is_a_usage_error_in_any_position(
    args: list[str], says: str
) -> None:
    result = CliRunner(env=ENV).invoke(_top, args)
    assert result.exit_code == 2, result.output
    assert says in result.output and "Traceback" not in result.output


def test_service_commands_take_the_shared_options_after_their_name(
    redis_url: str, pool: str
) -> None:
    runner = CliRunner(env=ENV)
    out = ok(runner.invoke(cli, ["seed", "--users", "2", "--redis-url", redis_url, "--pool", pool]))
    assert json.loads(out)["users"] == 2
    st = json.loads(
        ok(runner.invoke(cli, ["status", "--redis-url", redis_url, "--pool", pool, "--json"]))
    )
    assert st["pool"] == pool and st["users"]["active"] == 2
    # after the command wins over before it, for the URL too
    bad = closed_port_url()
    args = ["--redis-url", bad, "--pool", "other", "status", "--json"]
    st = json.loads(ok(runner.invoke(cli, [*args, "--redis-url", redis_url, "--pool", pool])))
    assert st["users"]["active"] == 2
    result = runner.invoke(cli, ["--redis-url", redis_url, "status", "--redis-url", bad])
    assert result.exit_code == 1 and "ConnectionError" in result.output
    # the environment twins
    env = CliRunner(env={**ENV, "PROVISIONER_REDIS_URL": redis_url, "PROVISIONER_POOL": pool})
    assert json.loads(ok(env.invoke(cli, ["status", "--json"])))["users"]["active"] == 2
    assert ok(env.invoke(cli, ["check"])).strip() == "ok"
    # the service's default stays the local Redis
    assert "redis://localhost:6379/0" in ok(runner.invoke(cli, ["status", "--help"]))


@pytest.mark.parametrize(
    "command",
    [["demo"], ["bench"], ["bench", "policy"], ["bench", "throughput"], ["bench", "worlds"]],
)
def test_commands_that_start_a_private_redis_say_so(command: list[str]) -> None:
    for args in ([*command, "--redis-url", "redis://h:1/0", "--help"], [*command, "--help"]):
        text = " ".join(ok(CliRunner(env=ENV).invoke(cli, args)).split())
        assert "private redis-server" in text, (args, text)
        assert "PROVISIONER_REDIS_URL" in text


@pytest.mark.parametrize("command", [["status"], ["run"], ["check"], ["seed"], ["acl"]])
def test_service_commands_do_not_start_a_private_redis(command: list[str]) -> None:
    text = " ".join(ok(CliRunner(env=ENV).invoke(cli, [*command, "--help"])).split())
    assert "private" not in text and "redis://localhost:6379/0" in text


def _evalsha_calls(r: redis.Redis) -> int:
    stats: dict[str, Any] = r.info("commandstats")
    return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))


@pytest.mark.parametrize("where", ["before", "after", "nested", "env", "none"])
def test_bench_policy_uses_the_redis_it_is_given(
    where: str, redis_url: str, r: redis.Redis, tmp_path: Path
) -> None:
    """Given a URL in any position (or the environment), the replays run their scripts on
    that Redis; given none, on a private server (the test's Redis sees no script)."""
    bench = ["policy", "--scenario", "starter", "--policy", "static", "--defaults",
             "--sessions", "60", "--no-pin", "--out", str(tmp_path)]  # fmt: skip
    env = dict(ENV)
    args = {
        "before": ["--redis-url", redis_url, "bench", *bench],
        "after": ["bench", *bench, "--redis-url", redis_url],
        "nested": ["bench", "--redis-url", redis_url, *bench],
        "env": ["bench", *bench],
        "none": ["bench", *bench],
    }[where]
    if where == "env":
        env["PROVISIONER_REDIS_URL"] = redis_url
    before = _evalsha_calls(r)
    ok(CliRunner(env=env).invoke(cli, [*args, "--json"]))
    assert len(json.loads((tmp_path / "results.json").read_text())) == 1
    used = _evalsha_calls(r) - before
    assert (used > 0) is (where != "none"), used


@pytest.mark.parametrize("where", ["after", "env"])
def test_demo_uses_the_redis_it_is_given(where: str) -> None:
    """An unreachable URL given after ``demo`` or in the environment is used (and
    fails), never replaced by a private server."""
    url = closed_port_url()
    env = {**ENV, "PROVISIONER_REDIS_URL": url} if where == "env" else ENV
    args = ["demo", "--duration", "1"] + (["--redis-url", url] if where == "after" else [])
    result = CliRunner(env=env).invoke(cli, args)
    assert result.exit_code == 1, result.output
    assert f"Redis at {url}" in result.output


@pytest.mark.parametrize(
    ("bench", "why"),
    [
        (["policy"], "each replay runs on a pool and channels of its own"),
        (["worlds"], "each replay runs on a pool and channels of its own"),
        (["throughput"], "each run uses a pool and channels of its own"),
        (["judge", "results.json"], "it reads a results file, not Redis"),
        (["table", "results.json"], "it reads a results file, not Redis"),
    ],
)
@pytest.mark.parametrize("option", [["--pool", "eu"], ["--channel-prefix", "eu."]])
@pytest.mark.parametrize("where", ["before", "nested", "after"])
def test_the_benches_refuse_a_pool_or_channel_prefix_they_would_ignore(
    bench: list[str], why: str, option: list[str], where: str, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """The benches replay on pools and channels of their own (judge and table read a
    file): a --pool or --channel-prefix given on their command line is a usage error
    naming it, before any work, wherever it stands."""
    monkeypatch.chdir(tmp_path)
    Path("results.json").write_text("[]")
    args = {
        "before": [*option, "bench", *bench],
        "nested": ["bench", *option, *bench],
        "after": ["bench", *bench, *option],
    }[where]
    result = CliRunner(env=ENV).invoke(cli, args, prog_name="provisioner")
    assert result.exit_code == 2, result.output
    command = f"provisioner bench {bench[0]}"
    if where == "after" and len(bench) > 1:  # judge and table take no shared option
        assert f"No such option '{option[0]}'" in result.output
    else:
        assert f"{option[0]} is not used by '{command}': {why}" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.json"]  # no work done


@pytest.mark.parametrize("bench", [[], ["policy"], ["worlds"], ["throughput"]])
def test_the_benches_do_not_advertise_a_pool_or_channel_prefix(bench: list[str]) -> None:
    """New-user finding: ``bench --help`` listed --pool and --channel-prefix with their
    defaults, which every bench refuses (the test above): still accepted, to say why,
    but not in the help."""
    out = ok(CliRunner(env=ENV).invoke(cli, ["bench", *bench, "--help"]))
    assert "--redis-url" in out and "--log-level" in out
    assert "--pool" not in out and "--channel-prefix" not in out


def test_bench_policy_names_the_scenarios_it_knows() -> None:
    """New-user finding: ``--scenario nope`` said ``unknown scenarios ['nope']`` and
    ``--help`` showed it as free TEXT; demo and simulate list the names."""
    from provisioner.sim import scenarios

    result = CliRunner(env=ENV).invoke(cli, ["bench", "policy", "--scenario", "spike",
                                             "--scenario", "nope"])  # fmt: skip
    assert result.exit_code == 2, result.output
    assert "'nope' is not one of" in result.output
    assert all(f"'{name}'" in result.output for name in scenarios.names())
    help_text = ok(CliRunner(env=ENV).invoke(cli, ["bench", "policy", "--help"]))
    assert "--scenario [" + "|".join(scenarios.names()) + "]" in help_text


def test_the_benches_take_the_default_pool_and_leave_the_environment_alone(
    tmp_path: Path,
) -> None:
    """The default value given on the command line, and the environment twins (set for
    the service, maybe in the same shell), are no reason to refuse."""
    results = str(tmp_path / "results.json")
    Path(results).write_text("[]")
    given = ["--pool", "default", "--channel-prefix", "", "bench", "table", results]
    assert ok(CliRunner(env=ENV).invoke(cli, given)).startswith("| scenario")
    env = {**ENV, "PROVISIONER_POOL": "eu", "PROVISIONER_CHANNEL_PREFIX": "eu."}
    assert ok(CliRunner(env=env).invoke(cli, ["bench", "table", results])).startswith("| ")


@pytest.mark.parametrize(
    ("args", "pool", "prefix"),
    [
        (["demo", "--pool", "eu", "--channel-prefix", "x."], "eu", "x."),
        (["--pool", "eu", "--channel-prefix", "x.", "demo"], "eu", "x."),
        (["--redis-url", "redis://h:1/0", "demo", "--pool", "eu"], "eu", "eu."),
        (["demo"], "default", ""),
    ],
)
def test_demo_runs_on_the_pool_and_channel_prefix_it_is_given(
    args: list[str], pool: str, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The replicas, the mock Node API, the simulator and the scorecard all take the
    DemoConfig's pool and channel prefix (provisioner.sim.demo)."""
    from provisioner.cli import demo
    from provisioner.sim.demo import DemoConfig
    from provisioner.sim.scorecard import Scorecard

    seen: list[DemoConfig] = []

    def run_demo(cfg: DemoConfig, with_replay: bool) -> tuple[Scorecard, None]:
        seen.append(cfg)
        return Scorecard(), None

    monkeypatch.setattr(demo, "run_demo", run_demo)
    ok(CliRunner(env=ENV).invoke(cli, [*args, "--json"]))
    (cfg,) = seen
    assert (cfg.pool, cfg.channel_prefix) == (pool, prefix)


def _without(module: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``provisioner ARGS`` in a fresh interpreter where ``module`` cannot be imported."""
    code = (
        f"import sys; sys.modules[{module!r}] = None\n"
        "from provisioner.cli import main\n"
        f"sys.argv = ['provisioner', *{list(args)!r}]\n"
        "main()\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=cwd,
        env={k: v for k, v in os.environ.items() if not k.startswith("PROVISIONER_")},
    )  # fmt: skip


@pytest.mark.parametrize(
    ("module", "args", "extra"),
    [
        ("matplotlib", ["bench", "policy", "--out", "out"], "bench"),
        ("matplotlib", ["bench", "worlds", "--out", "out"], "bench"),
        ("rich", ["demo", "--logdir", "out"], "sim"),
    ],
)
def test_a_missing_extra_is_named_before_any_work(
    module: str, args: list[str], extra: str, tmp_path: Path
) -> None:
    done = _without(module, *args, cwd=tmp_path)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert f"pip install 'provisioner[{extra}]'" in done.stderr
    assert module in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "out").exists()  # nothing done: no output folder
    # --help works without the extra
    assert _without(module, *args, "--help", cwd=tmp_path).returncode == 0


def test_missing_modules_sees_a_blocked_module() -> None:
    assert missing_modules("json", "no_such_module_xyz") == ["no_such_module_xyz"]


@pytest.mark.parametrize(
    "url",
    [
        "redis://127.0.0.1:notaport/0",
        "redis://127.0.0.1:99999/0",
        "redis://127.0.0.1:-1/0",
        "redis://[::1",
        "redis://127.0.0.1:6379/0?socket_timeout=abc",
        "redis://127.0.0.1:6379/0?db=abc",
        "redis://127.0.0.1:6379/0?foo=bar",
    ],
)
def test_an_unusable_redis_url_is_a_usage_error_not_a_traceback(url: str) -> None:
    """Break test: these reached redis-py's parser unchecked and ended in a traceback."""
    from click.testing import CliRunner

    from provisioner.cli import cli

    for args in (["status", "--redis-url", url], ["--redis-url", url, "check"]):
        res = CliRunner().invoke(cli, args)
        assert res.exit_code == 2, res.output
        assert "not a usable Redis URL" in res.output
        assert res.exception is None or isinstance(res.exception, SystemExit)


def test_a_unix_socket_url_is_accepted_without_connecting() -> None:
    from provisioner.cli.options import check_redis_url

    check_redis_url("unix:///nonexistent/redis.sock?db=1")


def _all_commands(group: click.Group, ctx: click.Context) -> list[click.Command]:
    out: list[click.Command] = []
    for name in group.list_commands(ctx):
        cmd = group.get_command(ctx, name)
        assert cmd is not None
        out.append(cmd)
        if isinstance(cmd, click.Group):
            out += _all_commands(cmd, click.Context(cmd, parent=ctx))
    return out


def test_every_float_option_refuses_nan_and_inf() -> None:
    """Break-test finding: float('inf') and float('nan') pass click's FloatRange (nan
    compares false with any bound), and `run --miss-cost-boots inf` or `--lease-ttl nan`
    started a replica whose every tick failed. Every float option of every command is a
    FiniteFloat, and the run command refuses them as usage errors."""
    from provisioner.cli.options import FiniteFloat

    ctx = click.Context(cli)
    floats = [
        (cmd.name, p.name)
        for cmd in _all_commands(cli, ctx)
        for p in cmd.params
        if isinstance(p.type, (click.types.FloatParamType, click.FloatRange))
        and not isinstance(p.type, FiniteFloat)
    ]
    assert floats == []
    for args in (("--miss-cost-boots", "inf"), ("--lease-ttl", "nan"), ("--tick", "inf"),
                 ("--user-ttl-boots", "nan"), ("--default-boot", "nan")):  # fmt: skip
        res = CliRunner().invoke(cli, ["run", *args, "--node-api-url", "http://127.0.0.1:1"])
        assert res.exit_code == 2 and "not a finite number" in res.output, (args, res.output)


def test_no_help_text_shows_an_unbounded_range_as_none() -> None:
    """New-user finding: a FiniteFloat without bounds showed ``[default: 20.0; x<=None]``
    in ``--help`` (click describes a range with no bounds so); it says ``finite``."""
    ctx = click.Context(cli)
    shown = []
    for cmd in _all_commands(cli, ctx):
        with click.Context(cmd, info_name=cmd.name) as c:
            text = cmd.get_help(c)
        if "None" in text:
            shown.append(cmd.name)
    assert shown == []
    with click.Context(cli) as c:  # demo --duration: a FiniteFloat without bounds
        run = cli.get_command(c, "demo")
        assert run is not None
        with click.Context(run, info_name="demo") as rc:
            assert "finite]" in " ".join(run.get_help(rc).split())


def test_demo_and_run_say_alike_that_keep_alive_is_for_the_baselines() -> None:
    """New-user finding: ``run --help`` said --keep-alive applies to the baselines only,
    ``demo --help`` did not."""
    helps = {
        cmd: " ".join(ok(CliRunner(env=ENV).invoke(cli, [cmd, "--help"])).split())
        for cmd in ("run", "demo")
    }
    for text in helps.values():
        assert "--keep-alive FLOAT Baselines only (static, basestock, reactive, hybrid):" in text
        assert "the predictive policy's keep-alive is one learned boot time" in text
