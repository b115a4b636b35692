"""The TypeScript producer (producers/typescript, `@taskline/producer`) for the tests that run it.

`built_package()` makes sure its dependencies are installed (`npm ci`) and its `dist/` is built
from the current sources (`npm run build`), then returns the package directory; `run_node()`
runs an ES module snippet there, so it can `import ... from "./dist/index.js"` and from "redis".
Without Node.js the tests that need it are skipped, saying so; CI machines have Node.js 20.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "producers" / "typescript"
NO_NODE = "Node.js is not installed: the TypeScript producer's tests need node 20 and npm (CI machines have them)"


def _newest_mtime(*paths: Path) -> float:
    files = [f for path in paths for f in ([path] if path.is_file() else path.rglob("*")) if f.is_file()]
    return max((f.stat().st_mtime for f in files), default=0.0)


def _npm(*args: str, timeout: float) -> None:
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip(NO_NODE)
    result = subprocess.run([npm, *args], cwd=PACKAGE, capture_output=True, text=True, timeout=timeout, check=False)
    if result.returncode != 0:
        pytest.fail(f"npm {' '.join(args)} failed in {PACKAGE}:\n{result.stdout}\n{result.stderr}")


def built_package() -> Path:
    """The TypeScript package with node_modules installed and dist/ no older than its sources."""
    if shutil.which("node") is None:
        pytest.skip(NO_NODE)
    installed = PACKAGE / "node_modules" / ".package-lock.json"
    if not installed.exists() or installed.stat().st_mtime < (PACKAGE / "package-lock.json").stat().st_mtime:
        _npm("ci", "--no-audit", "--no-fund", timeout=300)
    built = PACKAGE / "dist" / "index.js"
    sources = (PACKAGE / "src", PACKAGE / "tsconfig.json", PACKAGE / "package.json")
    if not built.exists() or built.stat().st_mtime < _newest_mtime(*sources):
        _npm("run", "build", timeout=120)
    return PACKAGE


def run_node(
    module: str, *, stdin: str = "", env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run `module` (ES module source) with node in the package directory; output captured."""
    return subprocess.run(
        ["node", "--input-type=module", "-e", module],
        cwd=built_package(),
        input=stdin,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def node_json(module: str, *, stdin: str = "", env: dict[str, str] | None = None, timeout: float = 60) -> Any:
    """Run `module`, which prints one JSON document, and return that document."""
    result = run_node(module, stdin=stdin, env=env, timeout=timeout)
    assert result.returncode == 0, f"node failed:\n{result.stdout}\n{result.stderr}"
    return json.loads(result.stdout)
