"""A log handler that reads every line the app would write and keeps those holding a secret.

The test session installs one on the root logger (see `conftest.py`) and fails at its end if
any line of any test held a password, an access token, an API key, a password hash or a
SHA-256 hex digest (how refresh tokens and API keys are stored). `test_logging.py` uses it on a
realistic run with every secret of that run known.
"""

from __future__ import annotations

import logging
import re

from sellerdesk.kit.logging import build_formatter
from tests.factories import PASSWORD

# Passwords the test suite itself sends.
KNOWN_PASSWORDS = (PASSWORD, "a-brand-new-password", "my-secret-password")

SECRET_PATTERNS = (
    re.compile(r"eyJ[\w-]{8,}\.eyJ[\w-]{8,}\.[\w-]+"),  # a JWT
    re.compile(r"sdk_[A-Za-z0-9]{8}_[A-Za-z0-9]{40}"),  # one of our API keys
    re.compile(r"\$argon2|\$2[aby]\$"),  # a password hash
    re.compile(r"(?<![0-9a-fA-F])[0-9a-f]{64}(?![0-9a-fA-F])"),  # a SHA-256 hex digest
    re.compile("|".join(re.escape(p) for p in KNOWN_PASSWORDS)),
)


class SecretScanner(logging.Handler):
    """Formats each record as the app's JSON handler would and keeps the lines with secrets."""

    def __init__(self, secrets: tuple[str, ...] = ()) -> None:
        super().__init__(level=logging.DEBUG)
        self.setFormatter(build_formatter(json=True))
        self.secrets = tuple(s for s in secrets if s)
        self.lines: list[str] = []
        self.hits: list[str] = []
        self.keep_lines = False

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:  # a record we cannot render is not ours to judge
            return
        if self.keep_lines:
            self.lines.append(line)
        if any(p.search(line) for p in SECRET_PATTERNS) or any(s in line for s in self.secrets):
            self.hits.append(line[:1000])
