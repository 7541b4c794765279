"""argon2id password hashing (bcrypt hashes still verify), always off the event loop."""

from __future__ import annotations

import anyio.to_thread
from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher
from pwdlib.hashers.bcrypt import BcryptHasher

from sellerdesk.config import Settings


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
        return await anyio.to_thread.run_sync(self._hash.hash, password)

    async def verify(self, password: str, hashed: str | None) -> tuple[bool, str | None]:
        """(valid, new hash when the stored one should be upgraded)."""
        if hashed is None:
            # Same work as a real check, so response time does not reveal unknown emails.
            if self._dummy is None:
                self._dummy = await self.hash("dummy-password-for-timing")
            await anyio.to_thread.run_sync(self._hash.verify, password, self._dummy)
            return False, None
        return await anyio.to_thread.run_sync(self._hash.verify_and_update, password, hashed)
