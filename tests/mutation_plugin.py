"""A pytest plugin for `make mutate` only (loaded with `-p` from `[tool.mutmut]`).

mutmut forks one process per mutant and each runs a fresh pytest session, so the session
fixture `database` would run every migration again for every mutant (seconds each: most of a
mutant's time). Here the first session migrates a SQLite file for real and keeps a copy; later
sessions (the forked mutant workers inherit this module's state) start from a copy of it. The
database is the same real, fully migrated SQLite file; only the repeated work is gone. Each
session's database folder is removed when the session ends (thousands of mutants would
otherwise leave thousands behind).
"""

from __future__ import annotations

import atexit
import shutil
import sqlite3
import tempfile
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from tests import conftest

_migrate = conftest.upgrade
_template: Path | None = None
_made: list[Path] = []


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


def pytest_configure(config: pytest.Config) -> None:
    if getattr(conftest, "upgrade", None) is not _migrate:
        raise pytest.UsageError("tests.conftest no longer migrates with `upgrade`: update me.")
    conftest.upgrade = _upgrade_from_template


def pytest_unconfigure(config: pytest.Config) -> None:
    conftest.upgrade = _migrate
    while _made:
        folder = _made.pop().parent
        if folder.name.startswith("sellerdesk-test-"):  # made by conftest's mkdtemp
            shutil.rmtree(folder, ignore_errors=True)
