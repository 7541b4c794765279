"""The curl walkthrough of `docs/api.md` works as written against a freshly seeded service.

Every fenced `sh` block of the guide runs, in order, in one bash (`set -euo pipefail`) against a
real `sellerdesk serve` set up as `make run` sets it up (SQLite or PostgreSQL, migrated, seeded,
the manual gateway); only `BASE` points at the test server's port instead of 8000.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.live import LiveServer, start_live_server

ROOT = Path(__file__).resolve().parent.parent
GUIDE = ROOT / "docs" / "api.md"
SH_BLOCK = re.compile(r"^```sh\n(.*?)^```$", re.DOTALL | re.MULTILINE)


@pytest.fixture(scope="module")
def live() -> Iterator[LiveServer]:
    with start_live_server("guide") as server:
        yield server


def test_the_guide_has_a_walkthrough() -> None:
    assert len(SH_BLOCK.findall(GUIDE.read_text())) >= 10


@pytest.mark.parametrize(
    "document", ["README.md", "CONVENTIONS.md", "docs/api.md", "docs/stripe.md", "LICENSE"]
)
def test_the_repository_stands_alone(document: str) -> None:
    path = ROOT / document
    text = path.read_text()
    assert "shared/" not in text and "/work/" not in text
    for target in re.findall(r"\]\(([^)#]+)\)", text):  # relative links resolve in the repo
        if not target.startswith(("http://", "https://")):
            assert (path.parent / target).resolve().is_relative_to(ROOT), target
            assert (path.parent / target).exists(), target


def test_the_curl_walkthrough_runs_as_written(live: LiveServer, tmp_path: Path) -> None:
    missing = [tool for tool in ("bash", "curl", "jq") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"the walkthrough needs {', '.join(missing)}")
    script = "set -euo pipefail\n" + "\n".join(SH_BLOCK.findall(GUIDE.read_text()))
    result = subprocess.run(
        ["bash", "-c", script],
        cwd=tmp_path,
        env={"PATH": "/usr/local/bin:/usr/bin:/bin", "BASE": live.url, "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    output = result.stdout
    assert result.returncode == 0, f"{result.stderr}\n{output[-5000:]}"
    assert '"status": "paid"' in output  # the order, paid with the manual gateway
    assert re.search(r"idempotent-replayed: true", output, re.IGNORECASE)
    assert '"balance":100' in output.replace(" ", "")  # the demo user's credits
    assert "x-credits-charged: 1" in output.lower()  # the ASIN lookup, paid with the key
    assert '"status":"found"' in output.replace(" ", "")  # the batch resolved the uploaded FNSKU
    assert '"error":"not_authenticated"' in output.replace(" ", "")
