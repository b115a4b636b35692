"""The lock files (requirements.lock, requirements-dev.lock; scripts/lock.sh) hold what
pyproject.toml asks for, every pin with hashes, and nothing a machine-specific path; the audit
step (scripts/audit_lock.py) fails on a known vulnerability and never reads "clean" when it
checked nothing. (scripts/test.sh also re-resolves them against PyPI: `scripts/lock.sh --check`.)"""

from __future__ import annotations

import importlib.util
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
PIN = re.compile(r"^([A-Za-z0-9._-]+)==([^\s;\\]+)(?:\s*;\s*([^\\]+?))?\s*\\?$")


def _pins(lock: str) -> dict[str, tuple[Version, int]]:
    """name → (version, number of hashes) of every pin in the lock file."""
    pins: dict[str, tuple[Version, int]] = {}
    current = None
    for line in (ROOT / lock).read_text().splitlines():
        match = PIN.match(line)
        if match:
            current = canonicalize_name(match[1])
            pins[current] = (Version(match[2]), 0)
        elif current and line.strip().startswith("--hash=sha256:"):
            version, hashes = pins[current]
            pins[current] = (version, hashes + 1)
    return pins


def _requirements(extras: tuple[str, ...]) -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    producer = tomllib.loads((ROOT / "producers/python/pyproject.toml").read_text())["project"]
    texts = (
        list(project["dependencies"]) + list(producer["dependencies"]) + list(producer["optional-dependencies"]["cli"])
    )
    for extra in extras:
        texts += project["optional-dependencies"][extra]
    return [r for r in map(Requirement, texts) if r.url is None]  # the producer itself: a path


@pytest.mark.parametrize(
    ("lock", "extras"), [("requirements.lock", ("otel",)), ("requirements-dev.lock", ("dev", "otel"))]
)
def test_every_requirement_of_pyproject_is_pinned_within_its_range_with_hashes(
    lock: str, extras: tuple[str, ...]
) -> None:
    """Each direct requirement (taskline's, the producer's with its cli extra, and the dev tools
    for the dev lock) is pinned at a version its specifier allows, and every pin carries hashes."""
    pins = _pins(lock)
    assert len(pins) > 20
    for requirement in _requirements(extras):
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement} is not in {lock}: run scripts/lock.sh"
        assert requirement.specifier.contains(pins[name][0], prereleases=True), (
            f"{lock} pins {name}=={pins[name][0]}, outside {requirement}: run scripts/lock.sh"
        )
    assert all(hashes > 0 for _, hashes in pins.values())


def test_the_lock_files_hold_no_path_and_agree_with_each_other() -> None:
    """No `@ file:` line (a machine's path; the producer is installed from the checkout), and the
    dev lock pins every runtime package at the same version as requirements.lock."""
    for lock in ("requirements.lock", "requirements-dev.lock"):
        text = (ROOT / lock).read_text()
        assert "file:" not in text
        assert " @ " not in text
    runtime, dev = _pins("requirements.lock"), _pins("requirements-dev.lock")
    assert {name: version for name, (version, _) in runtime.items()} == {name: dev[name][0] for name in runtime}


def test_the_advisory_minimums_hold() -> None:
    """starlette ≥ 0.49.1, jinja2 ≥ 3.1.6 and h11 ≥ 0.16: pyproject.toml refuses the release
    below each, and both locks pin at or above it."""
    floors = {"starlette": ("0.49.0", "0.49.1"), "jinja2": ("3.1.5", "3.1.6"), "h11": ("0.15.0", "0.16")}
    requirements = {canonicalize_name(r.name): r for r in _requirements(())}
    for name, (below, floor) in floors.items():
        assert not requirements[name].specifier.contains(below), f"pyproject.toml still allows {name} {below}"
        for lock in ("requirements.lock", "requirements-dev.lock"):
            assert _pins(lock)[name][0] >= Version(floor)


def _audit_module() -> Any:
    spec = importlib.util.spec_from_file_location("audit_lock", ROOT / "scripts" / "audit_lock.py")
    assert spec
    assert spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_audit_fails_on_a_known_vulnerability_and_names_it() -> None:
    """A vulnerable pin in pip-audit's report fails the step with the advisory and its fix."""
    report = {
        "dependencies": [
            {"name": "jinja2", "version": "3.1.4", "vulns": [{"id": "GHSA-q2x7-8rv6-6q7h", "fix_versions": ["3.1.5"]}]},
            {"name": "h11", "version": "0.16.0", "vulns": []},
        ]
    }
    status, lines = _audit_module().verdict(report, strict=False)
    assert status == 1
    assert "VULNERABLE jinja2 3.1.4: GHSA-q2x7-8rv6-6q7h (fixed in 3.1.5)" in lines
    assert lines[-1].startswith("audit FAILED: 1 known vulnerability, 1 package(s) audited clean")


def test_an_audit_that_could_not_ask_says_so_and_fails_when_strict() -> None:
    """Packages the advisory source did not answer for are counted as not audited; that passes
    with a warning by default and fails with TASKLINE_AUDIT_STRICT=1."""
    report = {"dependencies": [{"name": "jinja2", "skip_reason": "Dependency not found on PyPI"}]}
    audit = _audit_module()
    status, lines = audit.verdict(report, strict=False)
    assert status == 0
    assert lines[-1].startswith("audit INCOMPLETE: 0 known vulnerabilities, 0 package(s) audited clean")
    assert "1 not audited (TASKLINE_AUDIT_STRICT=1 makes that a failure)" in lines[-1]
    assert audit.verdict(report, strict=True)[0] == 1
