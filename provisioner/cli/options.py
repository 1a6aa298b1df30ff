"""The options every ``provisioner`` command shares, with one meaning each.

``--redis-url``, ``--pool``, ``--channel-prefix`` and ``--log-level`` are accepted before
the command (``provisioner --pool eu status``), after it (``provisioner status --pool
eu``), and at any level of a nested one (``provisioner bench --pool eu policy`` or
``provisioner bench policy --pool eu``); each has an environment twin
(``PROVISIONER_REDIS_URL``, ...).  The decorators add the options to a command and merge
every level into one :class:`CliConfig`, in the style of rq's ``pass_cli_config``.

Precedence, first match wins: the command line, innermost position first (an option
after the subcommand beats the same option before it); then the environment twin; then
the default.  Whether a value was *given* (command line or environment) or is the
default is kept (:attr:`CliConfig.given`): a command that starts a private redis-server
does so only when no ``--redis-url`` was given, even one equal to the default.

This module imports nothing heavy (click and the pool-name check only): ``provisioner
run`` loads it.
"""

from __future__ import annotations

import functools
import inspect
import logging
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast
from urllib.parse import unquote, urlsplit

import click
import redis
from click.core import ParameterSource

from provisioner.core.keys import validate_pool_name

__all__ = [
    "DEFAULT_REDIS_URL",
    "ENVVARS",
    "MAX_BOOTS",
    "MAX_HISTORY_SECONDS",
    "MAX_NODES",
    "MAX_SECONDS",
    "MAX_Z",
    "SHARED",
    "CliConfig",
    "FiniteFloat",
    "accept_shared_options",
    "check_redis_url",
    "pass_cli_config",
    "resolve_config",
    "setup_logging",
    "shared_options",
    "unused_shared_options",
]

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_REDIS_URL = "redis://localhost:6379/0"
#: The shared options' parameter names, in help order.
SHARED = ("redis_url", "pool", "channel_prefix", "log_level")
ENVVARS = {
    "redis_url": "PROVISIONER_REDIS_URL",
    "pool": "PROVISIONER_POOL",
    "channel_prefix": "PROVISIONER_CHANNEL_PREFIX",
    "log_level": "PROVISIONER_LOG_LEVEL",
}
_DEFAULTS = {
    "redis_url": DEFAULT_REDIS_URL,
    "pool": "default",
    "channel_prefix": "",
    "log_level": "info",
}
LOG_LEVELS = ("debug", "info", "warning", "error")
#: Where a value may come from, strongest first (DEFAULT is no source: not given).
_RANKS = (
    ParameterSource.COMMANDLINE,
    ParameterSource.PROMPT,
    ParameterSource.ENVIRONMENT,
    ParameterSource.DEFAULT_MAP,
)
_PRIVATE_HELP = (
    "Redis to use (redis://, rediss:// or unix://; AUTH as user:password@). "
    "Not given: a private redis-server from PATH is started on a free port for this "
    "command and stopped at its end."
)
_SERVICE_HELP = (
    "Redis URL (redis://, rediss:// or unix://; AUTH as user:password@). "
    f"[default: {DEFAULT_REDIS_URL}]"
)
_GROUP_HELP = (
    "Redis URL (redis://, rediss:// or unix://; AUTH as user:password@). "
    f"[default: {DEFAULT_REDIS_URL}; demo and bench start a private redis-server instead]"
)


def check_redis_url(url: str) -> None:
    """Parse ``url`` as redis-py will (port, IPv6 brackets, query options such as
    ``socket_timeout``) and build, without connecting, the connection it describes.

    Raises:
        click.BadParameter: the URL cannot be used; the message names the fault, never
            the URL itself (it may hold a password).
    """
    try:
        path = urlsplit(url).path if url.startswith(("redis://", "rediss://")) else ""
    except ValueError:
        path = ""  # redis-py's parse below names the fault
    db = unquote(path).strip("/")  # as redis-py reads it
    if db and not (db.isascii() and db.isdigit()):
        # redis-py ignores a database that is not a number and uses db 0
        raise click.BadParameter(
            "the database (the URL's path) must be a number, as /0", param_hint="--redis-url"
        )
    try:
        pool = redis.ConnectionPool.from_url(url)
        pool.make_connection()  # type: ignore[no-untyped-call,unused-ignore]
        pool.disconnect()
    except (ValueError, TypeError) as e:
        log.debug("unusable --redis-url: %s", e)
        raise click.BadParameter(f"not a usable Redis URL: {e}", param_hint="--redis-url") from e


@dataclass(frozen=True)
class CliConfig:
    """The shared options of one invocation, merged over every level.

    Attributes:
        redis_url: the Redis URL (the default when none was given).
        pool: the pool name (checked by :func:`provisioner.core.keys.validate_pool_name`).
        channel_prefix: prefix of every channel name.
        log_level: ``debug``, ``info``, ``warning`` or ``error``.
        given: names of :data:`SHARED` given on the command line or in the environment
            (the others hold their defaults).
    """

    redis_url: str = DEFAULT_REDIS_URL
    pool: str = "default"
    channel_prefix: str = ""
    log_level: str = "info"
    given: frozenset[str] = field(default_factory=frozenset)

    @property
    def explicit_redis_url(self) -> str | None:
        """The Redis URL when one was given, else None (start a private server)."""
        return self.redis_url if "redis_url" in self.given else None


def _option(name: str, redis_help: str, *, hidden: bool = False) -> Callable[[F], F]:
    flag = "--" + name.replace("_", "-")
    helps = {
        "redis_url": redis_help,
        "pool": "Pool name (the keys' hash tag). [default: default]",
        "channel_prefix": "Prefix of every channel name (one deployment per pool). [default: none]",
        "log_level": "Logging level. [default: info]",
    }
    kind = click.Choice(LOG_LEVELS, case_sensitive=False) if name == "log_level" else None
    return click.option(
        flag,
        name,
        envvar=ENVVARS[name],
        default=None,
        type=kind,
        show_envvar=True,
        show_default=False,
        hidden=hidden,
        help=helps[name],
    )


def _add_options(func: F, redis_help: str, hidden: tuple[str, ...] = ()) -> F:
    # click lists a command's options in the reverse order of their decorators
    for name in reversed(SHARED):
        func = _option(name, redis_help, hidden=name in hidden)(func)
    return func


def _contexts(ctx: click.Context) -> list[click.Context]:
    chain: list[click.Context] = []
    c: click.Context | None = ctx
    while c is not None:
        chain.append(c)
        c = c.parent
    return chain


def resolve_config(ctx: click.Context) -> CliConfig:
    """Merge the shared options of ``ctx`` and its parents (see the module docstring).

    Args:
        ctx: the context of the command being invoked (its parameters parsed).

    Returns:
        The merged, checked configuration.

    Raises:
        click.BadParameter: a malformed ``--redis-url`` or ``--pool`` (exit 2).
    """
    chain = _contexts(ctx)
    values: dict[str, str] = {}
    given: set[str] = set()
    for name in SHARED:
        values[name] = _DEFAULTS[name]
        found = [
            (_RANKS.index(src), depth, c.params[name])
            for depth, c in enumerate(chain)
            if name in c.params
            and c.params[name] is not None
            and (src := c.get_parameter_source(name)) in _RANKS
        ]
        if found:
            values[name] = str(min(found, key=lambda f: (f[0], f[1]))[2])
            given.add(name)
    url, pool = values["redis_url"], values["pool"]
    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise click.BadParameter(
            f"{url!r}: expected redis://, rediss:// or unix://", param_hint="--redis-url"
        )
    check_redis_url(url)
    try:
        validate_pool_name(pool)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--pool") from e
    return CliConfig(
        redis_url=url,
        pool=pool,
        channel_prefix=values["channel_prefix"],
        log_level=values["log_level"].lower(),
        given=frozenset(given),
    )


def setup_logging(level: str) -> None:
    """Log to stderr at ``level`` (a name of :data:`LOG_LEVELS`); a second call sets the
    level again."""
    value = getattr(logging, level.upper(), logging.INFO)
    logging.basicConfig(
        level=value, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    logging.getLogger().setLevel(value)


def shared_options(*, private_redis: bool = False) -> Callable[[F], F]:
    """Decorator of a click command (put it below ``@click.command``): add the shared
    options, merge them with its parents' into a :class:`CliConfig` when it runs, and
    set it as the context's object (``@click.pass_obj`` below this one receives it).

    The command's function may also name any of :data:`SHARED` as parameters: each gets
    the merged value.  A function that takes ``log_level`` sets up logging itself; for
    the others logging is set up here.

    Args:
        private_redis: the command starts a private redis-server when no ``--redis-url``
            is given (its help says so, and a ``redis_url`` parameter receives None
            then).
    """

    def decorate(func: F) -> F:
        wanted = [n for n in SHARED if n in inspect.signature(func).parameters]

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            for name in SHARED:
                kwargs.pop(name, None)
            ctx = click.get_current_context()
            cfg = resolve_config(ctx)
            if "log_level" not in wanted:
                setup_logging(cfg.log_level)
            ctx.obj = cfg
            for name in wanted:
                private = name == "redis_url" and private_redis
                kwargs[name] = cfg.explicit_redis_url if private else getattr(cfg, name)
            return func(*args, **kwargs)

        return _add_options(cast(F, wrapper), _PRIVATE_HELP if private_redis else _SERVICE_HELP)

    return decorate


def pass_cli_config(func: F) -> F:
    """:func:`shared_options` for a service command: its first argument is the merged
    :class:`CliConfig`."""
    return shared_options()(cast(F, click.pass_obj(func)))


def accept_shared_options(
    *, private_redis: bool = False, unused: tuple[str, ...] = ()
) -> Callable[[F], F]:
    """Decorator of a click group: accept the shared options at this level too (its
    commands merge them; the group's own function does not receive them).

    Args:
        private_redis: the group's commands start a private redis-server when no
            ``--redis-url`` is given (the help says so).
        unused: names of :data:`SHARED` that every command of the group refuses
            (:func:`unused_shared_options`): still accepted here, so that the refusal
            names the command and says why, but left out of the group's help.
    """

    def decorate(func: F) -> F:
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            for name in SHARED:
                kwargs.pop(name, None)
            return func(*args, **kwargs)

        redis_help = _PRIVATE_HELP if private_redis else _GROUP_HELP
        return _add_options(cast(F, wrapper), redis_help, hidden=unused)

    return decorate


def unused_shared_options(*names: str, why: str) -> Callable[[F], F]:
    """Decorator of a click command that cannot honour the shared options ``names``: one
    given on the command line, at any level, with a value other than its default is a
    usage error (exit 2) that names it and says ``why``.  Their environment twins are
    left alone: they configure the service, and a shell that sets them may run this
    command too.  Put it above :func:`shared_options`: it also leaves the options out
    of the command's help, which would otherwise advertise them with their defaults.

    Args:
        names: names of :data:`SHARED` (``"pool"``, ``"channel_prefix"``).
        why: the reason, after "--pool is not used by 'provisioner ...': ".
    """

    def decorate(func: F) -> F:
        for param in getattr(func, "__click_params__", ()):
            if isinstance(param, click.Option) and param.name in names:
                param.hidden = True

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            ctx = click.get_current_context()
            for name in names:
                for c in _contexts(ctx):
                    value = c.params.get(name)
                    given = c.get_parameter_source(name) == ParameterSource.COMMANDLINE
                    if given and value is not None and str(value) != _DEFAULTS[name]:
                        flag = "--" + name.replace("_", "-")
                        raise click.UsageError(
                            f"{flag} is not used by '{ctx.command_path}': {why}", ctx
                        )
            return func(*args, **kwargs)

        return cast(F, wrapper)

    return decorate


#: Bounds of ``run``'s options: past them a value is a typo, not a setting, and the
#: scripts or the policy's arithmetic would refuse it every tick (``--default-boot 1e12``
#: gave ERR_BAD_ARG each tick, ``1e300`` a ZeroDivisionError).  Durations, seconds:
MAX_SECONDS = 30 * 86_400.0
#: the history's TTL, seconds
MAX_HISTORY_SECONDS = 365 * 86_400.0
#: multiples of the boot time (``--miss-cost-boots``, ``--user-ttl-boots``)
MAX_BOOTS = 1e6
#: node counts (``--min-spare``, ``--max-nodes``, ``--min-ready``)
MAX_NODES = 1_000_000
#: basestock's safety factor, standard deviations (``--z 1e300`` aimed at 500 nodes for
#: one connect; 10 is a one-in-10^23 tail already)
MAX_Z = 10.0


class FiniteFloat(click.FloatRange):
    """``click.FloatRange`` that also refuses ``nan`` and ``inf`` (which ``float()`` parses
    and every range check lets through: ``nan`` compares false with any bound), a usage
    error like any other bad value."""

    name = "float"

    def _describe_range(self) -> str:
        """The range in ``--help`` (click's says ``x<=None`` without bounds)."""
        if self.min is None and self.max is None:
            return "finite"
        return super()._describe_range()

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        # finiteness first: with an upper bound, inf would otherwise read as out of range
        rv = click.FLOAT.convert(value, param, ctx)
        if isinstance(rv, float) and not math.isfinite(rv):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return super().convert(rv, param, ctx)
