"""Security basics with real processes: the least-privilege ACL and TLS through the URL.

A replica (a real ``provisioner run``) and the CLI work under the ACL that
``provisioner acl`` prints, on a redis-server of the test's own; the same ACL refuses
other keys, other channels and admin commands.  Over TLS (``rediss://`` with the CA in the
URL) a replica subscribes and serves a connect.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from click.testing import CliRunner

from provisioner.cli.main import cli
from provisioner.core.acl import acl_setuser
from provisioner.core.keys import Channels
from provisioner.harness import free_port, local_redis, wait_ready
from tests.helpers import SyncCoord
from tests.procs import replicas, subscribers, wait_until

pytestmark = pytest.mark.slow


def _serve_one_connect(admin_url: str, url: str, pool: str, prefix: str, tmp: Path) -> str:
    """Seed a ready node (on ``admin_url``), run a replica on ``url``, connect a user;
    the replica's log.  Fails unless the user is assigned the node at once (a hit)."""
    admin = redis.Redis.from_url(admin_url, decode_responses=True)
    sc = SyncCoord(admin_url, pool, prefix)
    now = int(time.time() * 1000)
    try:
        sc.register_node("", "n1", now)
        sc.node_status("n1", "ready", now)
    finally:
        sc.close()
    ch = Channels(prefix=prefix, pool=pool)
    ps = admin.pubsub()
    ps.subscribe(ch.assigned)
    with replicas(url, pool, prefix, tmp) as group:
        group.start_replica("r1", "--node-api-url", f"http://127.0.0.1:{free_port()}")
        wait_until(lambda: subscribers(admin, ch.marker) >= 1, 30, "the replica to subscribe")
        time.sleep(0.5)  # its first markers name the messages
        admin.publish(ch.activity, json.dumps({"user_id": "u1", "timestamp": 1}))
        admin.publish(ch.connect, json.dumps({"user_id": "u1"}))
        got: list[dict[str, object]] = []
        deadline = time.monotonic() + 15
        while not got and time.monotonic() < deadline:
            m = ps.get_message(timeout=0.5)
            if m and m["type"] == "message":
                got.append(json.loads(m["data"]))
        assert got == [{"user_id": "u1", "node_id": "n1", "wait_ms": 0}], group.log("r1")
        log = group.log("r1")
    ps.close()
    admin.close()
    return log


def test_the_acl_is_enough_for_the_service_and_refuses_the_rest(tmp_path: Path) -> None:
    pool, prefix = "acl1", "acl1."
    with local_redis() as srv:
        admin = redis.Redis.from_url(srv.url, decode_responses=True)
        out = CliRunner().invoke(cli, ["--pool", pool, "--channel-prefix", prefix, "acl",
                                       "--user", "svc", "--password", "s3cret"])  # fmt: skip
        assert out.exit_code == 0, out.output
        tokens = out.output.split()
        assert tokens == acl_setuser("svc", "s3cret", pool, prefix)
        assert admin.execute_command(*tokens) == "OK"
        url = f"redis://svc:s3cret@127.0.0.1:{srv.port}/0"
        log = _serve_one_connect(srv.url, url, pool, prefix, tmp_path)
        assert "NOPERM" not in log and "Traceback" not in log, log[-3000:]
        for args in (["status", "--json"], ["check"], ["explain"], ["premium", "add", "vip"],
                     ["seed", "--users", "3"]):  # fmt: skip
            res = CliRunner().invoke(
                cli, ["--redis-url", url, "--pool", pool, "--channel-prefix", prefix, *args]
            )
            assert res.exit_code == 0, (args, res.output)
            assert "NOPERM" not in res.output
        svc = redis.Redis.from_url(url, decode_responses=True)
        for refused in (
            lambda: svc.get("prov:{other}:leader"),  # another pool's keys
            lambda: svc.set("anything", 1),
            lambda: svc.publish("user:assigned", "x"),  # the unprefixed channel
            lambda: svc.flushall(),
            lambda: svc.keys("*"),
            lambda: svc.config_get("*"),
        ):
            with pytest.raises(redis.exceptions.NoPermissionError):
                refused()
        svc.close()
        admin.close()


def _tls_server(tmp: Path) -> Iterator[tuple[int, Path]]:
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(tmp / "key.pem"), "-out", str(tmp / "cert.pem"),
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    port = free_port()
    proc = subprocess.Popen(
        ["redis-server", "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
         "--tls-cert-file", str(tmp / "cert.pem"), "--tls-key-file", str(tmp / "key.pem"),
         "--tls-ca-cert-file", str(tmp / "cert.pem"), "--tls-auth-clients", "no",
         "--save", "", "--appendonly", "no", "--dir", str(tmp)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        yield port, tmp / "cert.pem"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_a_replica_works_over_tls_through_the_url(tmp_path: Path) -> None:
    pool, prefix = "tls1", "tls1."
    gen = _tls_server(tmp_path)
    port, ca = next(gen)
    try:
        url = f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={ca}"
        wait_ready(url)
        log = _serve_one_connect(url, url, pool, prefix, tmp_path)
        assert "Traceback" not in log, log[-3000:]
        res = CliRunner().invoke(cli, ["--redis-url", url, "--pool", pool, "check"])
        assert res.exit_code == 0 and "ok" in res.output, res.output
        plain = redis.Redis(host="127.0.0.1", port=port, socket_timeout=2)
        with pytest.raises(redis.exceptions.ConnectionError):
            plain.ping()  # the server speaks TLS only
    finally:
        gen.close()
