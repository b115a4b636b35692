"""The version of the whole project: the producer clients, the workers and every command line
report this one number (both pyproject.toml files read it; tests/unit/test_version.py pins the
TypeScript package and CHANGELOG.md to it)."""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.3.0"
