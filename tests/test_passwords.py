"""Password hashing off the event loop, in the process and in processes forked from it."""

from __future__ import annotations

import asyncio
import os
import sys

import pytest

from sellerdesk.auth.passwords import Passwords
from tests.conftest import make_settings


async def test_hash_and_verify_run_off_the_loop() -> None:
    passwords = Passwords(make_settings("sqlite+aiosqlite:///:memory:", None, "passwords"))
    hashed = await passwords.hash("correct horse")
    assert await passwords.verify("correct horse", hashed) == (True, None)
    assert (await passwords.verify("wrong horse", hashed))[0] is False
    assert (await passwords.verify("anything", None))[0] is False  # the unknown-email path


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
async def test_a_forked_child_can_hash_after_the_parent_did() -> None:
    """A pre-forking server or worker pool forks after logins ran in the parent: the child gets
    a pool of its own (the parent's threads do not exist in it) instead of waiting forever."""
    passwords = Passwords(make_settings("sqlite+aiosqlite:///:memory:", None, "passwords"))
    await passwords.hash("in the parent")  # the parent's hashing threads exist now
    pid = os.fork()
    if pid == 0:  # the child: hash with a deadline, report through the exit status
        code = 1
        try:

            async def child() -> bool:
                hashed = await asyncio.wait_for(passwords.hash("in the child"), timeout=20)
                return (await passwords.verify("in the child", hashed))[0]

            code = 0 if asyncio.run(child()) else 2
        except BaseException:  # any failure is the exit status
            code = 3
        finally:
            sys.stdout.flush()
            os._exit(code)
    _, status = await asyncio.to_thread(os.waitpid, pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
