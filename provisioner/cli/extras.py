"""Optional dependencies: a command that needs an extra says which one before it works.

``pip install provisioner`` installs the service only; the emulated world's extras come
with ``provisioner[sim]`` (the demo's live view: rich) and the benchmarks' with
``provisioner[bench]`` (the sim extra's packages and matplotlib).  A command missing one
stops at once, exit status 2, with the ``pip install`` line to run.

This module imports nothing heavy: the modules are looked up, not imported.
"""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Callable
from typing import Any, TypeVar, cast

import click

__all__ = ["MissingExtra", "missing_modules", "require_extra", "requires_extra"]

F = TypeVar("F", bound=Callable[..., Any])


class MissingExtra(click.ClickException):
    """An optional dependency is not installed (click prints the message, exit 2)."""

    exit_code = 2


def missing_modules(*modules: str) -> list[str]:
    """The names among ``modules`` that cannot be imported (not installed, or blocked
    with ``sys.modules[name] = None``), in the order given."""
    missing = []
    for name in modules:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            missing.append(name)
    return missing


def require_extra(extra: str, *modules: str) -> None:
    """Check that ``modules`` of the extra ``extra`` can be imported.

    Raises:
        MissingExtra: some cannot; the message names them and the extra to install.
    """
    missing = missing_modules(*modules)
    if missing:
        ctx = click.get_current_context(silent=True)
        what = f"'{ctx.command_path}'" if ctx is not None else "this command"
        raise MissingExtra(
            f"{what} needs {', '.join(missing)}, which is not installed: "
            f"pip install 'provisioner[{extra}]'"
        )


def requires_extra(extra: str, *modules: str) -> Callable[[F], F]:
    """Decorator of a click command: :func:`require_extra` before the command runs
    (``--help`` still works without the extra)."""

    def decorate(func: F) -> F:
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            require_extra(extra, *modules)
            return func(*args, **kwargs)

        return cast(F, wrapper)

    return decorate
