"""Which reply parser redis-py uses here, and that a NOSCRIPT reply is recognised by it.

redis-py parses replies with hiredis when it is installed and with its own Python
parser otherwise, and the two have differed on error classes (redis-py issue #318:
NOSCRIPT arrived as a plain ``ResponseError`` under hiredis).  ``make test-nohiredis``
runs the script tests again without hiredis and sets ``PROVISIONER_EXPECT_HIREDIS=0``,
so this module fails if that environment quietly had hiredis after all (or the normal
one quietly lacked it).
"""

from __future__ import annotations

import os

import pytest
import redis
import redis.utils
from redis.exceptions import NoScriptError


def test_the_parser_is_the_one_this_environment_promises() -> None:
    expect = os.environ.get("PROVISIONER_EXPECT_HIREDIS", "1") == "1"
    assert redis.utils.HIREDIS_AVAILABLE is expect


def test_noscript_is_its_own_error_class_single_and_pipelined(r: redis.Redis) -> None:
    sha = "0" * 40
    with pytest.raises(NoScriptError):
        r.evalsha(sha, 0)
    pipe = r.pipeline(transaction=False)
    pipe.evalsha(sha, 0)
    pipe.ping()
    results = pipe.execute(raise_on_error=False)
    assert isinstance(results[0], NoScriptError)
    assert results[1] is True
