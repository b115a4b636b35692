"""The lock files (requirements.lock, requirements-dev.lock; scripts/lock.sh) hold what
pyproject.toml asks for, every pin with hashes, and nothing a machine-specific path; the audit
step (scripts/audit_lock.py) fails on a known vulnerability and never reads "clean" when it
checked nothing. (scripts/test.sh also re-resolves them against PyPI: `scripts/lock.sh --check`.)"""

from __future__ import annotations

import http.server
import importlib.util
import json
import re
import threading
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


NOT_FOUND = "Dependency not found on PyPI and could not be audited: {} ({})"
# A lock file pinning releases with published advisories (what scripts/lock.sh writes, hashes
# shortened), and the answers the advisory sources gave for them, recorded in their formats.
VULNERABLE_LOCK = """\
h11==0.16.0 \\
    --hash=sha256:63cf8bbe7522de3bf65932fda1d9c2772064ffb3dae62d55932da54b31cb6c86
jinja2==3.1.4 \\
    --hash=sha256:4a3aee7acbbe7303aede8e9648d13b8bf88a429282aa6122a993f0ac800cb369d
starlette==0.40.0 \\
    --hash=sha256:c494a22fae73805376ea6bf88439783ecfba9aac88a43911b48c653437e784c4
"""
PIP_AUDIT_REPORT = {  # pip-audit --format json, where the per-release JSON answered
    "dependencies": [
        {"name": "h11", "version": "0.16.0", "vulns": []},
        {
            "name": "jinja2",
            "version": "3.1.4",
            "vulns": [
                {"id": "GHSA-q2x7-8rv6-6q7h", "fix_versions": ["3.1.5"], "aliases": ["CVE-2024-56201"]},
                {"id": "GHSA-gmj6-6f8f-6699", "fix_versions": ["3.1.5"], "aliases": ["CVE-2024-56326"]},
                {"id": "GHSA-cpwx-vrp4-4pq7", "fix_versions": ["3.1.6"], "aliases": ["CVE-2025-27516"]},
            ],
        },
        {
            "name": "starlette",
            "skip_reason": "Dependency not found on PyPI and could not be audited: starlette (0.40.0)",
        },
    ],
    "fixes": [],
}
PIP_AUDIT_ALL_404 = {  # what pip-audit reports on this project's machines: the per-release JSON answers 404
    "dependencies": [
        {"name": name, "skip_reason": NOT_FOUND.format(name, version)}
        for name, version in (("h11", "0.16.0"), ("jinja2", "3.1.4"), ("starlette", "0.40.0"))
    ],
    "fixes": [],
}


def project_json(latest: str, *vulns: tuple[str, list[str]]) -> dict[str, Any]:
    """PyPI's /pypi/<name>/json, reduced to what the audit reads (info.version, vulnerabilities)."""
    return {
        "info": {"version": latest},
        "vulnerabilities": [
            {
                "id": vid,
                "fixed_in": fixed,
                "aliases": [],
                "link": f"https://osv.dev/vulnerability/{vid}",
                "withdrawn": None,
            }
            for vid, fixed in vulns
        ],
    }


PROJECTS: dict[str, Any] = {
    "h11": project_json("0.16.0"),
    # starlette's project JSON as it read while 0.40.0 was its latest release
    "starlette": project_json("0.40.0", ("GHSA-2c2j-9gv5-cj73", ["0.47.2"]), ("GHSA-7f5h-v6xp-fcq8", ["0.49.1"])),
    "jinja2": project_json("3.1.6"),
}


def test_the_audit_fails_on_a_vulnerable_locked_set_naming_each_advisory(tmp_path: Path) -> None:
    """A lock pinning jinja2 3.1.4: pip-audit's answer fails the step, each advisory named with
    its fix; starlette 0.40.0, which pip-audit could not ask about, is answered from the project
    JSON (0.40.0 being its latest release then) and fails it too."""
    lock = tmp_path / "requirements.lock"
    lock.write_text(VULNERABLE_LOCK)
    status, lines = _audit_module().audit(lock, lambda _: PIP_AUDIT_REPORT, PROJECTS.__getitem__, strict=False)
    assert status == 1
    assert "VULNERABLE jinja2 3.1.4: GHSA-q2x7-8rv6-6q7h (fixed in 3.1.5)" in lines
    assert "VULNERABLE jinja2 3.1.4: GHSA-cpwx-vrp4-4pq7 (fixed in 3.1.6)" in lines
    assert "VULNERABLE starlette 0.40.0: GHSA-7f5h-v6xp-fcq8 (fixed in 0.49.1)" in lines
    assert lines[-1].startswith("audit FAILED: 5 known vulnerabilities, 1 package(s) audited clean, 0 not audited")


def test_where_the_per_release_json_answers_404_the_project_json_still_fails_a_vulnerable_latest_pin(
    tmp_path: Path,
) -> None:
    """Every per-release answer a 404 (as here): a pin that is its project's latest release is
    audited from the project JSON (starlette: vulnerable, h11: clean); an older pin (jinja2 3.1.4,
    the latest being 3.1.6) is listed as not audited, saying why."""
    lock = tmp_path / "requirements.lock"
    lock.write_text(VULNERABLE_LOCK)
    status, lines = _audit_module().audit(lock, lambda _: PIP_AUDIT_ALL_404, PROJECTS.__getitem__, strict=False)
    assert status == 1
    assert "VULNERABLE starlette 0.40.0: GHSA-2c2j-9gv5-cj73 (fixed in 0.47.2)" in lines
    assert any("First: jinja2: jinja2 3.1.4 is not the latest release (3.1.6)" in line for line in lines), lines
    assert lines[-1].startswith("audit FAILED: 2 known vulnerabilities, 1 package(s) audited clean, 1 not audited")


def test_a_clean_latest_pin_passes_and_a_withdrawn_advisory_does_not_count(tmp_path: Path) -> None:
    """h11 0.16.0, its latest release, with only a withdrawn advisory: audited clean, step ok."""
    lock = tmp_path / "requirements.lock"
    lock.write_text("h11==0.16.0 \\\n    --hash=sha256:" + "0" * 64 + "\n")
    withdrawn = project_json("0.16.0", ("GHSA-0000-0000-0000", []))
    withdrawn["vulnerabilities"][0]["withdrawn"] = "2025-05-01T00:00:00Z"
    status, lines = _audit_module().audit(lock, lambda _: {}, {"h11": withdrawn}.__getitem__, strict=True)
    assert (status, lines) == (0, ["audit ok: 0 known vulnerabilities, 1 package(s) audited clean, 0 not audited"])


def test_when_no_advisory_source_answers_the_audit_fails_saying_nothing_was_audited(tmp_path: Path) -> None:
    """pip-audit gave no report (its source unreachable) and the project JSON cannot be fetched:
    nothing was audited, and the step fails rather than pass unchecked."""
    lock = tmp_path / "requirements.lock"
    lock.write_text(VULNERABLE_LOCK)
    audit = _audit_module()
    unreachable = audit.fetch_project_json("http://127.0.0.1:9")  # nothing listens on the discard port
    status, lines = audit.audit(lock, lambda _: {}, unreachable, strict=False)
    assert status == 1
    assert "http://127.0.0.1:9/h11/json did not answer" in lines[-2]
    assert lines[-1] == (
        "audit FAILED: 0 known vulnerabilities, 0 package(s) audited clean, 3 not audited"
        " (nothing was audited: no advisory source answered)"
    )


def test_the_project_json_is_fetched_over_http_from_the_configured_base(tmp_path: Path) -> None:
    """fetch_project_json asks <base>/<name>/json and reads the answer; a 404 is a reason, not a crash."""
    body = json.dumps(PROJECTS["starlette"]).encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            found = self.path == "/pypi/starlette/json"
            self.send_response(200 if found else 404)
            self.send_header("Content-Length", str(len(body) if found else 0))
            self.end_headers()
            if found:
                self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        fetch = _audit_module().fetch_project_json(f"http://127.0.0.1:{server.server_port}/pypi/")
        assert fetch("starlette") == PROJECTS["starlette"]
        assert fetch("jinja2") == f"http://127.0.0.1:{server.server_port}/pypi/jinja2/json answered 404"
    finally:
        server.shutdown()
        server.server_close()


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


def test_an_audit_that_could_not_ask_about_some_pins_says_so_and_fails_when_strict() -> None:
    """Pins no advisory source answered for, beside audited ones, are counted as not audited:
    that passes with the word INCOMPLETE by default and fails with TASKLINE_AUDIT_STRICT=1."""
    report = {
        "dependencies": [
            {"name": "h11", "version": "0.16.0", "vulns": []},
            {"name": "jinja2", "skip_reason": "Dependency not found on PyPI"},
        ]
    }
    audit = _audit_module()
    status, lines = audit.verdict(report, strict=False)
    assert status == 0
    assert lines[-1].startswith("audit INCOMPLETE: 0 known vulnerabilities, 1 package(s) audited clean")
    assert "1 not audited (TASKLINE_AUDIT_STRICT=1 makes that a failure)" in lines[-1]
    assert audit.verdict(report, strict=True)[0] == 1
