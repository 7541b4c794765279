"""glibc malloc tuning (`kit.memory`): argon2's blocks go back to the system after each hash,
and the tuning is a no-op off glibc or when the operator set the threshold."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from typing import Any

import pytest

from sellerdesk.kit import memory


class FakeLibc:
    def __init__(self) -> None:
        self.calls: list[tuple[int, int]] = []

    def mallopt(self, param: Any, value: Any) -> int:
        self.calls.append((param.value, value.value))
        return 1


@pytest.fixture(autouse=True)
def untuned(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory, "_tuned", False)


def test_glibc_gets_a_fixed_mmap_threshold_once() -> None:
    libc = FakeLibc()
    assert memory.tune_malloc({}, lambda: libc) is True
    assert libc.calls == [(memory.M_MMAP_THRESHOLD, memory.MMAP_THRESHOLD_BYTES)]
    assert memory.tune_malloc({}, lambda: libc) is False  # idempotent
    assert len(libc.calls) == 1


def test_off_glibc_nothing_is_called(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "platform", "darwin")
    assert memory._glibc() is None
    assert memory.tune_malloc({}) is False
    # musl (Alpine): the C library has no gnu_get_libc_version.
    assert memory.tune_malloc({}, lambda: None) is False


@pytest.mark.parametrize(
    "environ",
    [
        {"MALLOC_MMAP_THRESHOLD_": "65536"},
        {"GLIBC_TUNABLES": "glibc.malloc.arena_max=2:glibc.malloc.mmap_threshold=65536"},
    ],
)
def test_the_operators_threshold_wins(environ: dict[str, str]) -> None:
    libc = FakeLibc()
    assert memory.tune_malloc(environ, lambda: libc) is False
    assert libc.calls == []


RSS_AFTER_HASHES = textwrap.dedent(
    """
    import json, sys
    from concurrent.futures import ThreadPoolExecutor
    from pwdlib.hashers.argon2 import Argon2Hasher
    from sellerdesk.kit.memory import tune_malloc

    tuned = tune_malloc() if sys.argv[1] == "tune" else False

    def rss_mib():
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024

    hasher = Argon2Hasher(memory_cost=19456, time_cost=1, parallelism=1)  # 19 MiB, as logins
    threads = ThreadPoolExecutor(2)
    list(threads.map(hasher.hash, ["warm-up"] * 2))
    before = rss_mib()
    for _ in range(3):
        list(threads.map(hasher.hash, ["password"] * 4))
    print(json.dumps({"tuned": tuned, "grew_mib": rss_mib() - before, "after": rss_mib()}))
    """
)


def _rss_after_hashes(mode: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", RSS_AFTER_HASHES, mode],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    result: dict[str, Any] = json.loads(done.stdout)
    return result


@pytest.mark.skipif(memory._glibc() is None, reason="glibc only")
def test_argon2_blocks_are_returned_after_each_hash_on_glibc() -> None:
    tuned = _rss_after_hashes("tune")
    untuned = _rss_after_hashes("none")
    assert tuned["tuned"] is True
    # Without the tuning each hashing thread keeps a 19 MiB block after its first hash; with it
    # the process is back where it was once the hashes are done.
    assert tuned["after"] < untuned["after"] - 30, (tuned, untuned)
    assert tuned["grew_mib"] < 5, tuned


FREEZE_CHECK = textwrap.dedent(
    """
    import asyncio, gc, json, sys
    from sellerdesk.kit import memory
    if sys.argv[1] == "server":
        memory.freeze_heap_after_start()  # what `sellerdesk.server.prepare` does
    from sellerdesk.main import create_app

    async def start() -> int:
        app = create_app()
        async with app.router.lifespan_context(app):
            return gc.get_freeze_count()

    print(json.dumps(asyncio.run(start())))
    """
)


@pytest.mark.parametrize(("process", "frozen"), [("server", True), ("embedded", False)])
def test_a_server_process_freezes_its_start_up_heap(
    tmp_path: Any, process: str, frozen: bool
) -> None:
    """Full collections then walk only what requests made (not the ~300,000 start-up objects);
    an app built any other way (tests, embedders) leaves the collector alone."""
    env = {
        "PATH": "/usr/bin:/bin",
        "ENVIRONMENT": "test",
        "SECRET_KEY": "test-secret-key-0123456789abcdef-0123456789abcdef",
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/freeze.db",
        "JOBS_ENABLED": "false",
        "LOG_LEVEL": "WARNING",
    }
    done = subprocess.run(
        [sys.executable, "-c", FREEZE_CHECK, process],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    count = json.loads(done.stdout.strip().splitlines()[-1])
    assert (count > 100_000) if frozen else (count == 0), count
