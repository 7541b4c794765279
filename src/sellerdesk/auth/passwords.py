"""argon2id password hashing (bcrypt hashes still verify), always off the event loop."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher
from pwdlib.hashers.bcrypt import BcryptHasher

from sellerdesk.config import Settings

T = TypeVar("T")

# Hashes run in these threads only, not in the shared worker threadpool (40 threads): each hash
# allocates ~19 MiB while it runs, so the threads that hash at once set how much a login burst
# adds to a worker's RSS (`kit.memory` makes sure each block is returned after its hash). argon2
# releases the GIL: one thread per core this process may run on, at most two, keeps those cores
# busy; a thread more than the cores would hash no faster and hold one more block; more logins
# queue.
MAX_HASH_THREADS = 2


def _usable_cores() -> int:
    """The cores this process may run on (its CPU affinity where the system has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1


def _new_pool() -> ThreadPoolExecutor:
    threads = min(MAX_HASH_THREADS, _usable_cores())
    return ThreadPoolExecutor(max_workers=threads, thread_name_prefix="password-hash")


_hashing = _new_pool()


def _give_the_child_its_own_pool() -> None:
    # A forked child (a pre-forking server, Celery's prefork pool, a test runner's workers)
    # inherits the pool but none of its threads: a hash submitted there would wait forever.
    global _hashing
    _hashing = _new_pool()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_give_the_child_its_own_pool)


async def _off_loop(work: Callable[..., T], *args: object) -> T:
    return await asyncio.get_running_loop().run_in_executor(_hashing, work, *args)


class Passwords:
    """Hashes and verifies passwords in a worker thread (argon2 costs ~100 ms of CPU)."""

    def __init__(self, settings: Settings) -> None:
        argon2 = Argon2Hasher(
            memory_cost=settings.PASSWORD_HASH_MEMORY_KIB,
            time_cost=settings.PASSWORD_HASH_TIME_COST,
            parallelism=settings.PASSWORD_HASH_PARALLELISM,
        )
        self._hash = PasswordHash((argon2, BcryptHasher()))
        self._dummy: str | None = None

    async def hash(self, password: str) -> str:
        return await _off_loop(self._hash.hash, password)

    async def verify(self, password: str, hashed: str | None) -> tuple[bool, str | None]:
        """(valid, new hash when the stored one should be upgraded)."""
        if hashed is None:
            # Same work as a real check, so response time does not reveal unknown emails.
            if self._dummy is None:
                self._dummy = await self.hash("dummy-password-for-timing")
            await _off_loop(self._hash.verify, password, self._dummy)
            return False, None
        return await _off_loop(self._hash.verify_and_update, password, hashed)
