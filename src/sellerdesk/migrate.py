"""Running the Alembic migrations from code (CLI, tests, prestart)."""

from __future__ import annotations

import os
from pathlib import Path

from alembic import command
from alembic.config import Config


def project_root() -> Path:
    """Where `alembic.ini` lives: $SELLERDESK_ROOT, the working directory, or the source tree."""
    candidates = [
        os.environ.get("SELLERDESK_ROOT"),
        os.getcwd(),
        str(Path(__file__).resolve().parents[2]),
    ]
    for candidate in candidates:
        if candidate and (Path(candidate) / "alembic.ini").is_file():
            return Path(candidate)
    raise FileNotFoundError("alembic.ini not found; set SELLERDESK_ROOT to the project directory")


def alembic_config(database_url: str | None = None) -> Config:
    root = project_root()
    config = Config(str(root / "alembic.ini"))
    config.set_main_option("script_location", str(root / "migrations"))
    config.attributes["configure_logger"] = False
    if database_url:
        config.attributes["database_url"] = database_url
    return config


def upgrade(database_url: str | None = None, revision: str = "head") -> None:
    """Bring the database to `revision` (blocking; call from a thread inside an event loop)."""
    command.upgrade(alembic_config(database_url), revision)
