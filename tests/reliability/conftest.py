"""The reliability suite's `figures` fixture and the run summary that prints them.

Figures travel as a test's `user_properties` (they survive pytest-xdist) and are printed in a
"reliability figures" section at the end of the run; with RELIABILITY_REPORT=path they are
also appended to that file.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.reliability.harness import Figures

_KEY = "reliability_figures"


@pytest.fixture
def figures(
    request: pytest.FixtureRequest, record_property: Callable[[str, Any], None]
) -> Iterator[Figures]:
    found = Figures(request.node.name)
    yield found
    record_property(_KEY, found.text())


def pytest_terminal_summary(terminalreporter: Any) -> None:
    texts = [
        str(value)
        for reports in terminalreporter.stats.values()
        for report in reports
        if getattr(report, "when", None) == "teardown"
        for name, value in getattr(report, "user_properties", ())
        if name == _KEY
    ]
    if not texts:
        return
    terminalreporter.section("reliability figures")
    for text in texts:
        for line in text.splitlines():
            terminalreporter.write_line(line)
    target = os.environ.get("RELIABILITY_REPORT")
    if target:
        with Path(target).open("a") as out:
            out.write("\n".join(texts) + "\n")
