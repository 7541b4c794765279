"""Packaging metadata in the form setuptools no longer warns about, and the license it names."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_license_is_an_spdx_string_with_its_file() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    project = pyproject["project"]
    # The `{text = ...}` table form is deprecated by setuptools (a warning on every install).
    assert project["license"] == "MIT"
    assert project["license-files"] == ["LICENSE"]
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
    # SPDX strings and license-files need setuptools >= 77.
    assert "setuptools>=77" in pyproject["build-system"]["requires"]
