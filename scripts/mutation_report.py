"""Summarise the last `make mutate` (the results mutmut keeps under mutants/) in Markdown.

Prints, and writes to mutants/report.md: per module the mutants found and what became of them,
with the share caught; then every mutant that was checked and not caught, with the line it
changed, to be killed by a new test or explained as equivalent in docs/mutation.md.

Caught: killed by a test, rejected by `mypy --strict` (part of `make test`, so such a mutant can
never land) or timed out (the tests hung on it). Import-time: mutants of code that only runs
while the app's modules are imported (decorators); mutmut switches mutants per call in a forked
worker whose routes were already built, so no test can ever see them (docs/mutation.md).

    .venv/bin/python scripts/mutation_report.py ['sellerdesk.kit.idempotency.*' ...]

With `--unchecked`, prints instead one `MUTANTS` glob per function that still has mutants the
run did not reach (a stopped run), to resume it on the same source:

    make mutate MUTANTS="$(.venv/bin/python scripts/mutation_report.py --unchecked | tr '\n' ' ')"
"""

from __future__ import annotations

import fnmatch
import json
import os
import sys
from collections import Counter
from pathlib import Path

from mutmut.mutation.diff_apply import get_diff_for_mutant
from mutmut.stats import status_by_exit_code

ROOT = Path(__file__).resolve().parent.parent
COLUMNS = (
    "killed",
    "mypy",
    "timeout",
    "survived",
    "no tests",
    "import-time",
    "not checked",
    "other",
)
CAUGHT = ("killed", "mypy", "timeout")
# Functions that only run at import (the decorator building idempotent routes).
IMPORT_TIME = (
    "sellerdesk.kit.idempotency.x_idempotent__mutmut_*",
    "sellerdesk.kit.idempotency.x__wrap__mutmut_*",
    "sellerdesk.kit.idempotency.x__base_type__mutmut_*",
)


def status_of(name: str, exit_code: int | None) -> str:
    status = status_by_exit_code[exit_code]
    if status == "caught by type check":
        return "mypy"
    if status not in CAUGHT and any(fnmatch.fnmatch(name, p) for p in IMPORT_TIME):
        return "import-time"
    return status if status in COLUMNS else "other"


def changed_lines(name: str, path: str) -> str:
    """The mutant's change as `- old` / `+ new` lines (the diff without its context)."""
    try:
        diff = get_diff_for_mutant(name, path=path)
    except Exception as exc:  # the report must not die on one odd mutant
        return f"(no diff: {exc})"
    lines = [
        f"{line[0]} {line[1:].strip()}"
        for line in diff.splitlines()
        if line[:1] in "+-" and not line.startswith(("---", "+++"))
    ]
    return "\n".join(lines)


def rate(counts: Counter[str]) -> str:
    checked = sum(counts.values()) - counts["not checked"] - counts["import-time"]
    if not checked:
        return "-"
    return f"{100 * sum(counts[s] for s in CAUGHT) / checked:.1f} %"


def main(patterns: list[str]) -> str:
    os.chdir(ROOT)  # mutmut reads mutants/<path> relative to the project
    metas = sorted(Path("mutants").glob("src/**/*.py.meta"))
    if not metas:
        sys.exit("No results under mutants/: run `make mutate` first.")
    rows: list[tuple[str, Counter[str], float]] = []
    missed: list[tuple[str, str, str]] = []
    for meta_path in metas:
        path = str(meta_path.relative_to("mutants"))[: -len(".meta")]
        meta = json.loads(meta_path.read_text())
        durations: dict[str, float] = meta.get("durations_by_key", {})
        counts: Counter[str] = Counter()
        for name, exit_code in sorted(meta["exit_code_by_key"].items()):
            if patterns and not any(fnmatch.fnmatch(name, p) for p in patterns):
                continue
            status = status_of(name, exit_code)
            counts[status] += 1
            if status not in (*CAUGHT, "not checked", "import-time"):
                missed.append((name, status, path))
        if counts:
            rows.append((path, counts, sum(durations.values())))

    total: Counter[str] = Counter()
    out = [
        "| module | mutants | " + " | ".join(COLUMNS) + " | caught | worker time |",
        "|---|---:|" + "---:|" * len(COLUMNS) + "---:|---:|",
    ]
    seconds = 0.0
    for path, counts, spent in rows:
        total += counts
        seconds += spent
        cells = " | ".join(str(counts[c]) for c in COLUMNS)
        out.append(
            f"| `{path.removeprefix('src/')}` | {sum(counts.values())} | {cells} | "
            f"{rate(counts)} | {spent / 60:.1f} min |"
        )
    cells = " | ".join(f"**{total[c]}**" for c in COLUMNS)
    out.append(
        f"| **all** | **{sum(total.values())}** | {cells} | **{rate(total)}** | "
        f"**{seconds / 60:.1f} min** |"
    )
    out += ["", f"## Not killed ({len(missed)})", ""]
    for name, status, path in missed:
        out += [f"- `{name}` ({status})", "", "  ```diff"]
        out += [f"  {line}" for line in changed_lines(name, path).splitlines()]
        out += ["  ```", ""]
    return "\n".join(out) + "\n"


def unchecked_functions() -> list[str]:
    """A glob for each function with mutants not checked yet (`mypy` rejections included,
    which mutmut records only when it reaches them), sorted."""
    os.chdir(ROOT)
    functions = set()
    for meta_path in Path("mutants").glob("src/**/*.py.meta"):
        for name, exit_code in json.loads(meta_path.read_text())["exit_code_by_key"].items():
            if exit_code is None and not any(fnmatch.fnmatch(name, p) for p in IMPORT_TIME):
                functions.add(name.rsplit("__mutmut_", 1)[0] + "__mutmut_*")
    return sorted(functions)


if __name__ == "__main__":
    if sys.argv[1:] == ["--unchecked"]:
        sys.stdout.write("\n".join(unchecked_functions()) + "\n")
        sys.exit(0)
    report = main(sys.argv[1:])
    Path(ROOT / "mutants" / "report.md").write_text(report)
    sys.stdout.write(report)
