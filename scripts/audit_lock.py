"""Audit the locked set (requirements-dev.lock, a superset of requirements.lock) for known
vulnerabilities, and say plainly what was and was not checked.

    .venv/bin/python scripts/audit_lock.py [LOCK_FILE]

Two advisory sources, both PyPI's own JSON API (docs/security.md, "The audit step"):

1. pip-audit, which asks the per-release JSON (`/pypi/<name>/<version>/json`) for each pin;
2. for every pin pip-audit could not ask about, the project JSON (`/pypi/<name>/json`): its
   `vulnerabilities` are those of the project's latest release, so it answers for a pin that
   *is* the latest release. A pin older than the latest stays "not audited" by this source.

Exit 1 when a locked version has a known vulnerability (each listed with its advisory id and the
versions that fix it: raise the minimum in pyproject.toml, then run scripts/lock.sh), and when no
source answered for any pin (nothing was audited). Pins left unaudited beside audited ones pass
with the word INCOMPLETE and their count; TASKLINE_AUDIT_STRICT=1 makes them a failure too.
TASKLINE_AUDIT_PYPI_JSON changes the JSON API's base URL (default https://pypi.org/pypi).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PYPI_JSON = "https://pypi.org/pypi"
PIN = re.compile(r"^([A-Za-z0-9._-]+)==([^\s;\\]+)")
FETCH_TIMEOUT_S = 30

Fetch = Callable[[str], "dict[str, Any] | str"]
"""Project name → PyPI's project JSON, or why it could not be had."""


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def locked_pins(text: str) -> dict[str, str]:
    """canonical name → version of every `name==version` line of a lock file."""
    return {canonical(m[1]): m[2] for m in map(PIN.match, text.splitlines()) if m}


def fetch_project_json(base: str) -> Fetch:
    """A Fetch that asks `<base>/<name>/json`."""

    def fetch(name: str) -> dict[str, Any] | str:
        url = f"{base.rstrip('/')}/{name}/json"
        try:
            with urllib.request.urlopen(url, timeout=FETCH_TIMEOUT_S) as answer:
                value = json.loads(answer.read())
        except urllib.error.HTTPError as exc:
            return f"{url} answered {exc.code}"
        except (OSError, ValueError) as exc:
            return f"{url} did not answer: {type(exc).__name__}: {exc}"
        return value if isinstance(value, dict) else f"{url} answered no JSON object"

    return fetch


def from_project_json(name: str, version: str, project: dict[str, Any] | str) -> dict[str, Any]:
    """A pip-audit-shaped dependency entry for `name==version` from PyPI's project JSON: its
    vulnerabilities when the pin is the latest release, else a skip reason saying why not."""
    if isinstance(project, str):
        return {"name": name, "version": version, "skip_reason": project}
    latest = str(project.get("info", {}).get("version", ""))
    if canonical(latest) != canonical(version):
        reason = f"{name} {version} is not the latest release ({latest}); PyPI's project JSON answers only for that"
        return {"name": name, "version": version, "skip_reason": reason}
    vulns = [
        {"id": vuln.get("id", "?"), "fix_versions": list(vuln.get("fixed_in") or [])}
        for vuln in project.get("vulnerabilities") or []
        if not vuln.get("withdrawn")
    ]
    return {"name": name, "version": version, "vulns": vulns, "source": "project JSON"}


def with_fallback(report: dict[str, Any], pins: dict[str, str], fetch: Fetch) -> dict[str, Any]:
    """pip-audit's report with each dependency it could not ask about (or every pin, when it gave
    no report) answered from the project JSON where that can answer."""
    answered = {canonical(d["name"]): d for d in report.get("dependencies", []) if not d.get("skip_reason")}
    missing = sorted(name for name in pins if name not in answered)
    with ThreadPoolExecutor(max_workers=8) as pool:
        projects = dict(zip(missing, pool.map(fetch, missing), strict=True))
    dependencies = [*answered.values(), *(from_project_json(n, pins[n], projects[n]) for n in missing)]
    return {"dependencies": sorted(dependencies, key=lambda d: canonical(d["name"]))}


def verdict(report: dict[str, Any], *, strict: bool) -> tuple[int, list[str]]:
    """The exit status and the lines to print for a pip-audit-shaped JSON report."""
    vulnerable, skipped, clean, affected = [], [], 0, 0
    for dependency in report.get("dependencies", []):
        if dependency.get("skip_reason"):
            skipped.append(f"{dependency['name']}: {dependency['skip_reason']}")
        elif dependency.get("vulns"):
            affected += 1
            for vuln in dependency["vulns"]:
                fixes = ", ".join(vuln.get("fix_versions") or []) or "no fixed version yet"
                vulnerable.append(
                    f"{dependency['name']} {dependency.get('version', '?')}: {vuln['id']} (fixed in {fixes})"
                )
        else:
            clean += 1
    lines = [f"VULNERABLE {line}" for line in vulnerable]
    if skipped:
        names = ", ".join(line.split(":", 1)[0] for line in skipped)
        lines.append(f"not audited ({len(skipped)}): {names}; no advisory source answered. First: {skipped[0]}")
    nothing = clean + affected == 0
    status = 1 if vulnerable or nothing or (strict and skipped) else 0
    word = "FAILED" if status else ("INCOMPLETE" if skipped else "ok")
    lines.append(
        f"audit {word}: {len(vulnerable)} known vulnerabilit{'y' if len(vulnerable) == 1 else 'ies'},"
        f" {clean} package(s) audited clean, {len(skipped)} not audited"
        + (" (nothing was audited: no advisory source answered)" if nothing else "")
        + (" (TASKLINE_AUDIT_STRICT=1 makes that a failure)" if skipped and not strict and not nothing else "")
    )
    return status, lines


def run_pip_audit(lock: Path) -> dict[str, Any]:
    """pip-audit's JSON report on the lock file ({} when it gave none, its error on stderr)."""
    pip_audit = Path(sys.executable).parent / "pip-audit"
    command = [str(pip_audit), "--disable-pip", "--no-deps", "--requirement", str(lock)]
    command += ["--format", "json", "--progress-spinner", "off"]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    try:
        report = json.loads(result.stdout)
    except ValueError:
        print(f"pip-audit gave no report (exit {result.returncode}): {result.stderr.strip()[-1000:]}", file=sys.stderr)
        return {}
    return report if isinstance(report, dict) else {}


def audit(
    lock: Path, pip_audit: Callable[[Path], dict[str, Any]], fetch: Fetch, *, strict: bool
) -> tuple[int, list[str]]:
    """Audit `lock`: pip-audit first, the project JSON for what it could not ask about."""
    report = with_fallback(pip_audit(lock), locked_pins(lock.read_text()), fetch)
    return verdict(report, strict=strict)


def main() -> int:
    lock = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "requirements-dev.lock"
    fetch = fetch_project_json(os.environ.get("TASKLINE_AUDIT_PYPI_JSON", PYPI_JSON))
    status, lines = audit(lock, run_pip_audit, fetch, strict=os.environ.get("TASKLINE_AUDIT_STRICT") == "1")
    for line in lines:
        print(line, file=sys.stderr if status else sys.stdout)
    return status


if __name__ == "__main__":
    raise SystemExit(main())
