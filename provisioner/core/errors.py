"""Status codes returned by the Lua scripts, and the exceptions they map to.

Exception hierarchy::

    ProvisionerError
    ├── ScriptError            a script refused its call (negative code)
    │   ├── FencedError        fencing token does not match the live lease
    │   ├── BadArgumentError   an argument failed validation inside the script
    │   └── WrongTypeError     a key holds the wrong Redis type (nothing was written)
    └── ScriptLoadError        a Lua file is malformed (header, key count, include)
"""

from __future__ import annotations

from enum import IntEnum

__all__ = [
    "BadArgumentError",
    "Code",
    "FencedError",
    "ProvisionerError",
    "ScriptError",
    "ScriptLoadError",
    "WrongTypeError",
    "raise_for_code",
]


class Code(IntEnum):
    """Codes of ``lua/includes/codes.lua``: >= 0 the call ran, < 0 it was refused."""

    OK = 0
    HIT = 1
    MISS = 2
    DUPLICATE = 3
    STALE = 4
    IGNORED = 5
    UNKNOWN_NODE = 6
    UNKNOWN_USER = 7
    HELD = 8
    ERR_FENCED = -1
    ERR_BAD_ARG = -2
    ERR_WRONG_TYPE = -3


class ProvisionerError(Exception):
    """Base of every error this package raises on purpose."""


class ListenError(ProvisionerError):
    """The metrics and health server cannot listen where it was told (port in use, address
    not local, no permission)."""


class TaskFailed(ProvisionerError):
    """A replica's task (ingest, markers, maintenance, leader) ended on an error it does not
    retry; the replica stopped (the message names the task and the error)."""


class ScriptLoadError(ProvisionerError):
    """A Lua file cannot be loaded: bad header, key count or include."""


class ScriptError(ProvisionerError):
    """A script refused the call; nothing was written.

    Attributes:
        script: the script's name (e.g. ``reapNodes``).
        code: the :class:`Code` it returned.
    """

    def __init__(self, script: str, code: Code) -> None:
        super().__init__(f"{script} refused: {code.name}")
        self.script = script
        self.code = code


class FencedError(ScriptError):
    """The fencing token is not the live lease's: a deposed leader's write."""


class BadArgumentError(ScriptError):
    """An argument failed validation inside the script."""


class WrongTypeError(ScriptError):
    """A key the script touches holds the wrong Redis type."""


_ERRORS: dict[Code, type[ScriptError]] = {
    Code.ERR_FENCED: FencedError,
    Code.ERR_BAD_ARG: BadArgumentError,
    Code.ERR_WRONG_TYPE: WrongTypeError,
}


def raise_for_code(script: str, code: int) -> Code:
    """Turn a script's status code into a :class:`Code`, raising for refusals.

    Args:
        script: the script's name, for the message.
        code: the integer the script returned first.

    Returns:
        The code, when it is not an error.

    Raises:
        ScriptError: a subclass matching the negative code.
    """
    c = Code(code)
    if c < 0:
        raise _ERRORS.get(c, ScriptError)(script, c)
    return c
