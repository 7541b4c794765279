"""A pytest plugin for `make mutate` only (loaded with `-p` from `[tool.mutmut]`).

mutmut forks one worker per mutant and each runs a fresh pytest session over the tests that
reach the mutated function (fastest first, stopping at the first failure). This plugin makes
that affordable and bounded:

- The session fixture `database` would run every migration again for every mutant (seconds
  each, most of a mutant's time). The first session migrates a SQLite file for real and keeps a
  copy; later sessions (the forked workers inherit this module's state) start from a copy of it:
  the same real, fully migrated database, without the repeated work. Each session's database
  folder is removed when it ends.
- In a mutant's worker: at most MUTATE_MAX_TESTS tests run (default 100, 0 for all; only the
  functions every request goes through, such as token decoding, have more), and a test that
  runs longer than MUTATE_TEST_TIMEOUT seconds (default 60) fails, which kills the mutant (it
  made the code hang; mutmut's own timeout scales with the tests' total time and could hold a
  worker for an hour).
- Each worker appends one line to mutants/timings.jsonl: the mutant, the tests it ran, its exit
  status and CPU seconds, for the time estimates in docs/mutation.md.
"""

from __future__ import annotations

import atexit
import json
import os
import resource
import shutil
import signal
import sqlite3
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

import pytest
from sqlalchemy.engine import make_url

from tests import conftest

_migrate = conftest.upgrade
_template: Path | None = None
_made: list[Path] = []
_ran: list[str] = []


def _upgrade_from_template(database_url: str, revision: str = "head") -> None:
    """`sellerdesk.migrate.upgrade`, done once per mutation run for SQLite at head."""
    global _template
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite" or revision != "head" or not url.database:
        _migrate(database_url, revision)
        return
    target = Path(url.database)
    _made.append(target)
    if _template is None:
        _migrate(database_url, revision)
        folder = Path(tempfile.mkdtemp(prefix="sellerdesk-mutate-"))
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        _copy(target, folder / "migrated.db")
        _template = folder / "migrated.db"
    else:
        _copy(_template, target)


def _copy(source: Path, target: Path) -> None:
    # SQLite's backup API: a consistent copy whatever journal mode the source was left in.
    src, dst = sqlite3.connect(source), sqlite3.connect(target)
    try:
        src.backup(dst)
    finally:
        src.close()
        dst.close()


def _mutant() -> str | None:
    """The mutant this process tests, or None (stats, clean and forced-fail runs)."""
    name = os.environ.get("MUTANT_UNDER_TEST", "")
    return name if "__mutmut_" in name else None


def _setting(name: str, default: int) -> int:
    return int(os.environ.get(name) or default)


def pytest_configure(config: pytest.Config) -> None:
    if getattr(conftest, "upgrade", None) is not _migrate:
        raise pytest.UsageError("tests.conftest no longer migrates with `upgrade`: update me.")
    conftest.upgrade = _upgrade_from_template


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # mutmut names the tests fastest first; keep the first ones.
    limit = _setting("MUTATE_MAX_TESTS", 100)
    if _mutant() and 0 < limit < len(items):
        del items[limit:]


class TookTooLong(Exception):
    pass


def _too_long(signum: int, frame: FrameType | None) -> None:
    raise TookTooLong("the test ran past MUTATE_TEST_TIMEOUT")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Iterator[None]:
    seconds = _setting("MUTATE_TEST_TIMEOUT", 60)
    if not _mutant():
        return (yield)
    _ran.append(item.nodeid)
    if seconds <= 0:
        return (yield)
    previous = signal.signal(signal.SIGALRM, _too_long)
    signal.alarm(seconds)
    try:
        return (yield)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    mutant = _mutant()
    if mutant is None:
        return
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime
    line = json.dumps(
        {"mutant": mutant, "tests": len(_ran), "exit": int(exitstatus), "cpu": round(cpu, 2)}
    )
    # One short write with O_APPEND: lines from parallel workers never interleave.
    fd = os.open("timings.jsonl", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def pytest_unconfigure(config: pytest.Config) -> None:
    conftest.upgrade = _migrate
    while _made:
        folder = _made.pop().parent
        if folder.name.startswith("sellerdesk-test-"):  # made by conftest's mkdtemp
            shutil.rmtree(folder, ignore_errors=True)
