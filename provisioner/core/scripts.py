"""Load the Lua scripts of ``lua/`` and run them with EVALSHA.

Each file ``lua/<name>-<numkeys>.lua`` is one state transition.  Its header comment
names every key as ``KEYS[i] <attr>``, where ``<attr>`` is an attribute of
:class:`provisioner.core.keys.PoolKeys`; the loader checks that the names are numbered
1..numkeys and exist, builds the key list from them (so key names are built in one
place, Python), and prepends ``local K = {<attr> = KEYS[i], ...}`` so the script and
its includes say ``K.nodes_ready``.  A line ``--- @include "x"`` is replaced by
``lua/includes/x.lua``.

NOSCRIPT (script cache lost after a restart, failover or ``SCRIPT FLUSH``,
docs/design.md#3-4) is handled on every path: a single call reloads and retries; a
pipelined batch reloads and re-runs exactly the calls that failed with NOSCRIPT (the
others ran); and :meth:`ScriptRunner.load_all` is called on every (re)connect.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError, ResponseError

from provisioner.core.errors import ScriptLoadError
from provisioner.core.keys import PoolKeys

__all__ = [
    "REGISTRY",
    "Call",
    "ScriptRunner",
    "ScriptSpec",
    "declared_types",
    "load_registry",
    "lua_dir",
]

_FILE_RE = re.compile(r"^(?P<name>[a-z][A-Za-z]+)-(?P<n>\d+)\.lua$")
_KEY_RE = re.compile(r"^\s*KEYS\[(\d+)\]\s+(\w+)(?:[ \t]+(\w+))?", re.MULTILINE)
_REDIS_TYPES = frozenset({"string", "hash", "zset", "set", "list", "stream"})
_INCLUDE_RE = re.compile(r'^--- @include "([\w-]+)"\s*$', re.MULTILINE)


def lua_dir() -> Path:
    """The folder holding the Lua scripts.

    ``PROVISIONER_LUA_DIR`` wins; else ``provisioner/lua`` of an installed wheel (the
    package ``provisioner.lua``, mapped to the top-level ``lua/`` when it was built), or
    the top-level ``lua/`` beside the package in a checkout or editable install.

    Raises:
        ScriptLoadError: if no such folder exists.
    """
    env = os.environ.get("PROVISIONER_LUA_DIR")
    candidates = [Path(env)] if env else []
    package = Path(__file__).resolve().parent.parent  # provisioner/
    candidates += [package / "lua", package.parent / "lua"]
    for c in candidates:
        if c.is_dir() and any(c.glob("*.lua")):
            return c
    raise ScriptLoadError(f"no Lua scripts found in {[str(c) for c in candidates]}")


@dataclass(frozen=True)
class ScriptSpec:
    """One loaded script.

    Attributes:
        name: the transition's name, e.g. ``connectUser``.
        num_keys: the key count from the file name.
        key_attrs: the :class:`PoolKeys` attribute of each ``KEYS[i]``, in order.
        key_types: the Redis type the header declares for each, in order.
        source: the full Lua source sent to Redis (prelude and includes expanded).
        sha: SHA1 hex of ``source`` (what EVALSHA takes).
    """

    name: str
    num_keys: int
    key_attrs: tuple[str, ...]
    key_types: tuple[str, ...]
    source: str
    sha: str

    def keys_for(self, keys: PoolKeys) -> list[str]:
        """The key names of this script for one pool, in ``KEYS`` order."""
        return [getattr(keys, a) for a in self.key_attrs]


def _expand_includes(text: str, folder: Path, seen: tuple[str, ...] = ()) -> str:
    def sub(m: re.Match[str]) -> str:
        inc = m.group(1)
        if inc in seen:
            raise ScriptLoadError(f"include cycle through {inc!r}")
        path = folder / "includes" / f"{inc}.lua"
        if not path.is_file():
            raise ScriptLoadError(f"missing include {path}")
        return _expand_includes(path.read_text(), folder, (*seen, inc))

    return _INCLUDE_RE.sub(sub, text)


def _load_one(path: Path) -> ScriptSpec:
    m = _FILE_RE.match(path.name)
    if not m:
        raise ScriptLoadError(f"{path.name}: name must be verbNoun-<numkeys>.lua")
    name, n = m.group("name"), int(m.group("n"))
    text = path.read_text()
    header = text.split("]]", 1)[0] if text.startswith("--[[") else ""
    found = [(int(i), attr, typ) for i, attr, typ in _KEY_RE.findall(header)]
    if [i for i, _, _ in found] != list(range(1, n + 1)):
        raise ScriptLoadError(
            f"{path.name}: header names KEYS {[i for i, _, _ in found]}, expected 1..{n}"
        )
    attrs = tuple(a for _, a, _ in found)
    types = tuple(t for _, _, t in found)
    for a, t in zip(attrs, types, strict=True):
        if t not in _REDIS_TYPES:
            raise ScriptLoadError(f"{path.name}: {a} has no Redis type in its header ({t!r})")
    probe = PoolKeys("probe")
    for a in attrs:
        if not isinstance(getattr(probe, a, None), str) or a in ("pool", "base"):
            raise ScriptLoadError(f"{path.name}: {a!r} is not a PoolKeys key")
    prelude = "local K = {\n" + "".join(f"  {a} = KEYS[{i}],\n" for i, a, _ in found) + "}\n"
    source = prelude + _expand_includes(text, path.parent)
    sha = hashlib.sha1(source.encode()).hexdigest()
    return ScriptSpec(name, n, attrs, types, source, sha)


def load_registry(folder: Path | None = None) -> dict[str, ScriptSpec]:
    """Load every ``<name>-<n>.lua`` of a folder.

    Args:
        folder: defaults to :func:`lua_dir`.

    Returns:
        Script name -> spec.

    Raises:
        ScriptLoadError: on a malformed file or two files with one name.
    """
    folder = folder or lua_dir()
    out: dict[str, ScriptSpec] = {}
    for path in sorted(folder.glob("*.lua")):
        spec = _load_one(path)
        if spec.name in out:
            raise ScriptLoadError(f"two scripts named {spec.name}")
        out[spec.name] = spec
    return out


REGISTRY: dict[str, ScriptSpec] = load_registry()


def declared_types(registry: dict[str, ScriptSpec] | None = None) -> dict[str, str]:
    """The Redis type of every pool key a script declares: PoolKeys attribute -> type.

    Raises:
        ScriptLoadError: two scripts declare one key with different types.
    """
    out: dict[str, str] = {}
    for spec in (registry or REGISTRY).values():
        for a, t in zip(spec.key_attrs, spec.key_types, strict=True):
            if out.setdefault(a, t) != t:
                raise ScriptLoadError(f"{a} is declared {out[a]} and {t} ({spec.name})")
    return out


Call = tuple[str, Sequence[str | int | float]]


class ScriptRunner:
    """Runs registry scripts for one pool on a ``redis.asyncio`` client.

    Args:
        client: a ``redis.asyncio.Redis`` (``decode_responses=True``).
        keys: the pool's key names.
        registry: script name -> spec (defaults to :data:`REGISTRY`).
    """

    def __init__(
        self,
        client: aioredis.Redis,
        keys: PoolKeys,
        registry: dict[str, ScriptSpec] | None = None,
    ) -> None:
        self.client = client
        self.keys = keys
        self.registry = registry or REGISTRY
        self._keys_cache = {n: s.keys_for(keys) for n, s in self.registry.items()}
        self._heads: dict[str, tuple[bytes, int]] = {}
        # queued by defer: the calls, their packed bytes, who gets their results
        self._deferred: list[tuple[list[Call], bytes, Callable[[list[Any]], None]]] = []
        enc = client.connection_pool.get_encoder()  # type: ignore[no-untyped-call]
        self._encoding: str = enc.encoding
        self._errors: str = enc.encoding_errors

    async def load_all(self) -> None:
        """SCRIPT LOAD every script (call on every (re)connect)."""
        for spec in self.registry.values():
            await self.client.script_load(spec.source)

    async def call(self, name: str, *args: str | int | float) -> Any:
        """Run one script: a batch of one for :meth:`call_many` (the packed bytes on one
        pooled connection, reloaded and re-run on NOSCRIPT), not ``client.evalsha``:
        redis-py's generic command packing was 15% of a leader tick's CPU in the trace
        replay's profile.

        Raises:
            KeyError: unknown script name.
            redis.RedisError: connection or server errors.
        """
        return (await self.call_many([(name, args)]))[0]

    def _head(self, name: str) -> tuple[bytes, int]:
        """The RESP bytes of ``EVALSHA sha numkeys key...`` of one script (cached), and
        how many bulk strings they hold."""
        head = self._heads.get(name)
        if head is None:
            spec = self.registry[name]
            parts = [b"EVALSHA", spec.sha.encode(), str(spec.num_keys).encode()]
            parts += [self._enc(k) for k in self._keys_cache[name]]
            head = (b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts), len(parts))
            self._heads[name] = head
        return head

    def _enc(self, value: str | int | float) -> bytes:
        if isinstance(value, str):
            return value.encode(self._encoding, self._errors)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return repr(value).encode()  # as redis-py's Encoder does
        raise TypeError(f"script argument {value!r}: str, int or float expected")

    def pack(self, calls: Sequence[Call]) -> bytes:
        """The RESP bytes of EVALSHA calls, one after the other (what a pipeline sends).

        Each script's fixed part (sha, key count, key names) is encoded once per runner;
        per call only the arguments are encoded (str and int, the common ones, inline;
        the rest through :meth:`_enc`, which refuses what is neither str, int nor float).

        Raises:
            TypeError: an argument of another type.
        """
        out: list[bytes] = []
        add = out.append
        encoding, errors, enc = self._encoding, self._errors, self._enc
        for name, args in calls:
            head, n = self._head(name)
            add(b"*%d\r\n" % (n + len(args)))
            add(head)
            for a in args:
                t = type(a)
                if t is str:
                    b = a.encode(encoding, errors)  # type: ignore[union-attr]
                elif t is int:
                    b = b"%d" % a  # type: ignore[str-format]
                else:
                    b = enc(a)
                add(b"$%d\r\n%s\r\n" % (len(b), b))
        return b"".join(out)

    def defer(self, calls: Sequence[Call], on_results: Callable[[list[Any]], None]) -> None:
        """Queue ``calls`` to go first in the next :meth:`call_many` (one round trip for
        both: the replay sends a tick's last events with the leader's ``observeTick``).
        Redis runs them in order, before that call's own; ``on_results`` gets their
        results (one per call, errors in place: they are its to raise) as soon as the
        replies are read, before the caller of that ``call_many`` sees its own.
        :meth:`flush` sends what is still queued.

        Raises:
            KeyError, TypeError: an unknown script or argument type (packed here, so a
                bad call fails its caller, not the one it would ride with).
        """
        if calls:
            self._deferred.append((list(calls), self.pack(calls), on_results))

    async def flush(self) -> None:
        """Send the calls queued by :meth:`defer`, if any."""
        if self._deferred:
            await self.call_many([])

    async def _send_many(self, payload: bytes, n: int) -> list[Any]:
        """Send packed calls on one pooled connection and read ``n`` replies in order.

        Connection errors are retried by the connection's own policy (as redis-py's
        pipelines are): re-running a partly applied batch is safe, as every message
        carries its id and a second application is a no-op (STALE).  Error replies are
        returned in place, not raised.
        """
        pool = self.client.connection_pool
        conn = await pool.get_connection()  # type: ignore[no-untyped-call]

        async def once() -> list[Any]:
            await conn.send_packed_command(payload, check_health=False)
            out: list[Any] = []
            for _ in range(n):
                try:
                    out.append(await conn.read_response())
                except ResponseError as e:
                    out.append(e)
            return out

        async def failed(error: Exception) -> None:
            await conn.disconnect()

        try:
            results: list[Any] = await conn.retry.call_with_retry(once, failed)
            return results
        except BaseException:
            await conn.disconnect()
            raise
        finally:
            await pool.release(conn)

    async def call_many(self, calls: Sequence[Call]) -> list[Any]:
        """Run several scripts in one round trip (pipelined on one connection).

        The calls are packed by :meth:`pack` and sent in one write, after any queued by
        :meth:`defer`; the replies are read in order.  Calls that failed with NOSCRIPT
        are re-run, in order, after a reload (twice at most, for a flush between the
        reload and the re-run); the others are not repeated.

        Returns:
            One result per call of ``calls``, in order.

        Raises:
            redis.RedisError: the first other error of ``calls`` (a deferred call's error
                goes to its ``on_results`` only; deferred calls that could not be sent
                stay queued for the next call).
        """
        pre, self._deferred = self._deferred, []
        try:
            payload = self.pack(calls)
            if pre:
                calls = [c for part, _, _ in pre for c in part] + list(calls)
                payload = b"".join(packed for _, packed, _ in pre) + payload
            if not calls:
                return []
            results = await self._send_many(payload, len(calls))
        except BaseException:
            self._deferred = pre + self._deferred  # not sent: they go with the next call
            raise
        for _ in range(2):
            missing = [i for i, r in enumerate(results) if isinstance(r, NoScriptError)]
            if not missing:
                break
            await self.load_all()
            again = await self._send_many(self.pack([calls[i] for i in missing]), len(missing))
            for i, r in zip(missing, again, strict=True):
                results[i] = r
        i = 0
        for part, _, on_results in pre:
            on_results(results[i : i + len(part)])
            i += len(part)
        for r in results[i:]:
            if isinstance(r, Exception):
                raise r
        return results[i:]


def dump_expanded(folder: Path) -> list[Path]:
    """Write every script, prelude and includes expanded, to ``folder`` (for luacheck).

    Returns:
        The files written.
    """
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for spec in REGISTRY.values():
        path = folder / f"{spec.name}-{spec.num_keys}.lua"
        path.write_text(spec.source)
        out.append(path)
    return out


if __name__ == "__main__":  # python -m provisioner.core.scripts DIR
    import sys

    for p in dump_expanded(Path(sys.argv[1] if len(sys.argv) > 1 else "build/lua")):
        print(p)
