"""Schemathesis against the running service: the OpenAPI document is exactly what is served.

Every operation of `/openapi.json` is called with generated requests (the examples, coverage
and fuzzing phases; valid and invalid data) as the demo user and as the demo admin, against a
real `sellerdesk serve` that was migrated and seeded. Each response must be no server error,
with a declared status code, content type and headers, and a body matching the declared schema.

Schemathesis runs through its own command line (`st run`), the same engine and phases as in CI
pipelines; its pytest loader for live servers (`schemathesis.pytest.from_fixture`) does not run
under pytest 9. A failure prints schemathesis' report, with a `curl` line per failing request.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.live import BIN, DEMO_ADMIN, DEMO_USER, LiveServer, start_live_server

CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    "response_headers_conformance",
)
PHASES = ("examples", "coverage", "fuzzing")
MAX_EXAMPLES = 10  # fuzzing cases per operation; examples and coverage add their own
SEED = 20261201  # the same cases every run: a failure reproduces


@pytest.fixture(scope="module")
def live() -> Iterator[LiveServer]:
    # Configured as in production: with a webhook secret the webhook checks signatures (400)
    # instead of answering 503 "not configured".
    with start_live_server("schemathesis", STRIPE_WEBHOOK_SECRET="whsec_schemathesis") as server:
        yield server


@pytest.fixture(scope="module")
def tokens(live: LiveServer) -> dict[str, str]:
    # Both before any run: fuzzing the login route trips its failed-login throttle.
    return {"user": live.login(*DEMO_USER), "admin": live.login(*DEMO_ADMIN)}


def run_schemathesis(live: LiveServer, token: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    # cwd: schemathesis keeps a cache of past crashes in `.schemathesis/` there; a fresh one
    # per run keeps runs independent and the worktree clean.
    return subprocess.run(
        [
            str(BIN / "st"),
            "run",
            f"{live.url}/openapi.json",
            "--checks",
            ",".join(CHECKS),
            "--phases",
            ",".join(PHASES),
            "--max-examples",
            str(MAX_EXAMPLES),
            "--seed",
            str(SEED),
            "--suppress-health-check",
            "all",
            "--request-timeout",
            "30",
            "--header",
            f"Authorization: Bearer {token}",
            "--no-color",
        ],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


@pytest.mark.parametrize("role", ["user", "admin"])
def test_every_operation_answers_as_its_openapi_document_says(
    live: LiveServer, tokens: dict[str, str], role: str, tmp_path: Path
) -> None:
    result = run_schemathesis(live, tokens[role], tmp_path)
    assert result.returncode == 0, f"schemathesis as the {role}:\n{result.stdout[-20000:]}"
