"""Audit the locked set (requirements-dev.lock, a superset of requirements.lock) for known
vulnerabilities with pip-audit, and say plainly what was and was not checked.

    .venv/bin/python scripts/audit_lock.py [LOCK_FILE]

Exit 1 when pip-audit finds a known vulnerability in a locked version (each listed with its
advisory id and the versions that fix it: raise the minimum in pyproject.toml, then run
scripts/lock.sh). pip-audit asks PyPI's JSON API for each release's advisories; a package it
could not ask about is listed as not audited. That is a failure only with TASKLINE_AUDIT_STRICT=1,
since where PyPI's per-release JSON is not reachable every package would fail it; the last line
always gives the counts, so an audit that checked nothing never reads as a clean one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def verdict(report: dict[str, Any], *, strict: bool) -> tuple[int, list[str]]:
    """The exit status and the lines to print for pip-audit's JSON report."""
    vulnerable, skipped, clean = [], [], 0
    for dependency in report.get("dependencies", []):
        if dependency.get("skip_reason"):
            skipped.append(f"{dependency['name']}: {dependency['skip_reason']}")
        elif dependency.get("vulns"):
            for vuln in dependency["vulns"]:
                fixes = ", ".join(vuln.get("fix_versions") or []) or "no fixed version yet"
                vulnerable.append(
                    f"{dependency['name']} {dependency.get('version', '?')}: {vuln['id']} (fixed in {fixes})"
                )
        else:
            clean += 1
    lines = [f"VULNERABLE {line}" for line in vulnerable]
    if skipped:
        lines.append(f"not audited ({len(skipped)}): the advisory source did not answer for them; first: {skipped[0]}")
    status = 1 if vulnerable or (strict and skipped) else 0
    word = "FAILED" if status else ("INCOMPLETE" if skipped else "ok")
    lines.append(
        f"audit {word}: {len(vulnerable)} known vulnerabilit{'y' if len(vulnerable) == 1 else 'ies'},"
        f" {clean} package(s) audited clean, {len(skipped)} not audited"
        + (" (TASKLINE_AUDIT_STRICT=1 makes that a failure)" if skipped and not strict else "")
    )
    return status, lines


def main() -> int:
    lock = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "requirements-dev.lock"
    pip_audit = Path(sys.executable).parent / "pip-audit"
    command = [str(pip_audit), "--disable-pip", "--no-deps", "--requirement", str(lock)]
    command += ["--format", "json", "--progress-spinner", "off"]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    try:
        report = json.loads(result.stdout)
    except ValueError:
        print(result.stderr.strip()[-2000:], file=sys.stderr)
        print(f"audit FAILED: pip-audit gave no report (exit {result.returncode})", file=sys.stderr)
        return 1
    status, lines = verdict(report, strict=os.environ.get("TASKLINE_AUDIT_STRICT") == "1")
    for line in lines:
        print(line, file=sys.stderr if status else sys.stdout)
    return status


if __name__ == "__main__":
    raise SystemExit(main())
