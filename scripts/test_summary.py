"""The end of scripts/test.sh: what ran, what did not, and one line of counts.

    python scripts/test_summary.py --junit .run/pytest-junit.xml --npm-log .run/npm-test.log --strict 1

Reads pytest's JUnit XML and the output of `npm test` (node's test runner), prints the skipped
tests grouped by reason, and writes the last line, `test.sh: N passed, N failed, N skipped`, to
.run/test-summary.txt next to the XML (test.sh prints it last). A test skipped because a tool is
missing (its reason says something is not installed, not found, needed, ...) did not run: with
--strict 1 that, or an `npm test` that did not run, makes this exit 1 (the set-up is broken).
Reasons that say a feature is not on this branch yet are skips by design.
"""

from __future__ import annotations

import argparse
import re
import sys
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

MISSING_TOOL = re.compile(
    r"not installed|is needed|are needed|\bneeds?\b.*\binstall|no chromium|chromium at|apt-get install"
    r"|could not import|no module named|not found|cannot serve tls|did not come up|no postgres user",
    re.IGNORECASE,
)
NODE_TEST_COUNT = re.compile(r"^\s*(?:#|ℹ)\s*(tests|pass|fail|cancelled|skipped|todo)\s+(\d+)\s*$")


@dataclass
class Pytest:
    ran: bool = False
    passed: int = 0
    failed: int = 0
    errors: int = 0
    skipped: int = 0
    missing: list[tuple[str, str]] = field(default_factory=list)  # (test, reason)
    by_design: Counter[str] = field(default_factory=Counter)


def read_junit(path: Path) -> Pytest:
    result = Pytest()
    if not path.is_file():
        return result
    root = ET.parse(path).getroot()
    result.ran = True
    for case in root.iter("testcase"):
        name = f"{case.get('classname', '')}::{case.get('name', '')}"
        errors = case.findall("error")
        result.errors += len(errors)  # pytest counts an error in a passed test's teardown as both
        if case.find("failure") is not None:
            result.failed += 1
        elif (skip := case.find("skipped")) is not None:
            result.skipped += 1
            reason = (skip.get("message") or skip.text or "").strip()
            reason = re.sub(r"^(Skipped|skip):\s*", "", reason)
            if MISSING_TOOL.search(reason):
                result.missing.append((name, reason))
            else:
                result.by_design[reason] += 1
        elif all((error.get("message") or "").startswith("failed on teardown") for error in errors):
            result.passed += 1
    return result


def read_node_counts(path: Path) -> dict[str, int] | None:
    if not path.is_file():
        return None
    counts: dict[str, int] = {}
    for line in path.read_text(errors="replace").splitlines():
        if match := NODE_TEST_COUNT.match(line):
            counts[match.group(1)] = int(match.group(2))  # the last summary wins
    return counts or None


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--junit", type=Path, required=True)
    parser.add_argument("--npm-log", type=Path, required=True)
    parser.add_argument("--strict", default="0")
    args = parser.parse_args()
    strict = args.strict not in ("", "0", "false", "no")

    py = read_junit(args.junit)
    node = read_node_counts(args.npm_log)
    not_run: list[str] = []

    if py.ran:
        print(
            f"pytest: {py.passed} passed, {py.failed} failed, {py.errors} errors, {py.skipped} skipped"
            f" ({sum(py.by_design.values())} by design, {len(py.missing)} for a missing tool)"
        )
        for reason, count in sorted(py.by_design.items()):
            print(f"  skipped by design ({count}): {reason}")
        for name, reason in py.missing:
            print(f"  DID NOT RUN, a tool is missing: {name}: {reason}")
        if py.missing:
            not_run.append(f"{len(py.missing)} pytest tests (a tool is missing; listed above)")
    else:
        print("pytest: no results (it did not get as far as running tests)")

    if node is not None:
        node_skipped = node.get("skipped", 0) + node.get("todo", 0)
        node_failed = node.get("fail", 0) + node.get("cancelled", 0)
        print(f"npm test: {node.get('pass', 0)} passed, {node_failed} failed, {node_skipped} skipped")
    elif args.npm_log.exists():
        print(f"npm test: no counts in {args.npm_log} (it failed before its tests ran; see above)")
        node = {"fail": 1}
    else:
        print("npm test: DID NOT RUN: no Node.js 20.19+ with npm (scripts/install.sh --tests installs one)")
        not_run.append("the TypeScript producer's npm test (no Node.js)")

    passed = py.passed + (node or {}).get("pass", 0)
    failed = py.failed + py.errors + (node or {}).get("fail", 0) + (node or {}).get("cancelled", 0)
    skipped = py.skipped + (node or {}).get("skipped", 0) + (node or {}).get("todo", 0)
    setup_broken = strict and bool(not_run)
    tools_file = args.junit.parent / "test-tools-missing"  # written by scripts/services.sh --tests
    if tools_file.is_file() and (packages := tools_file.read_text().split()):
        print(f"missing Debian packages: {' '.join(packages)} (apt-get install {' '.join(packages)}, as root)")
    if not_run:
        verdict = "a set-up failure: they can be installed here" if strict else "allowed: nothing here installs them"
        print(f"NOT RUN: {'; '.join(not_run)} ({verdict})")
    line = f"test.sh: {passed} passed, {failed} failed, {skipped} skipped"
    (args.junit.parent / "test-summary.txt").write_text(line + "\n")
    return 1 if setup_broken else 0


if __name__ == "__main__":
    sys.exit(main())
