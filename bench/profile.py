"""Summarise a `py-spy record --format raw` file: where a process spends its CPU.

Each line of the raw format is one stack (`frame;frame;...;leaf count`), each frame
`function (path:line)`. Self time is the leaf frame's share of the samples; inclusive time
counts a function once per stack it appears in. `python -m bench.profile FILE [--top 15]`.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path
from typing import Any

_FRAME = re.compile(r"^(?P<function>.*) \((?P<path>[^()]*?)(?::(?P<line>\d+))?\)$")

_PACKAGES = (
    ("worker/", "taskline worker"),
    ("producers/", "taskline producers"),
    ("bench/", "bench"),
    ("arq/", "arq"),
    ("redis/", "redis-py"),
    ("hiredis", "redis-py"),
    ("sqlalchemy/", "SQLAlchemy"),
    ("sqlmodel/", "SQLAlchemy"),
    ("asyncpg/", "asyncpg"),
    ("pydantic", "pydantic"),
    ("structlog/", "structlog"),
    ("prometheus_client/", "prometheus_client"),
    ("asyncio/", "asyncio (stdlib)"),
    ("selectors.py", "asyncio (stdlib)"),
    ("json/", "json (stdlib)"),
    ("uuid.py", "uuid (stdlib)"),
    ("logging/", "logging (stdlib)"),
)


def _split(frame: str) -> tuple[str, str]:
    """(function, path) of one frame."""
    match = _FRAME.match(frame.strip())
    if not match:
        return frame.strip(), ""
    return match.group("function"), match.group("path")


def package_of(path: str) -> str:
    for marker, name in _PACKAGES:
        if marker in path:
            return name
    if path.startswith("<") or not path:
        return "other"
    return "stdlib/other"


_PLUMBING = frozenset(
    {"asyncio (stdlib)", "stdlib/other", "json (stdlib)", "uuid (stdlib)", "logging (stdlib)", "other"}
)


def _is_plumbing(frame: str) -> bool:
    """The event loop and the entry point (typer, `taskline worker`, asyncio.run): in every stack."""
    function, path = _split(frame)
    return (
        package_of(path) in _PLUMBING
        or "typer/" in path
        or path.endswith(("worker/cli/app.py", "<string>"))
        or function in ("run_worker", "<module>")
    )


def _calling_library(frames: list[str]) -> str:
    """The innermost frame's library that is not the standard library: whose work the sample was.

    A socket write is asyncio's frame, but redis-py or asyncpg asked for it; a sample with only
    event-loop frames is the loop itself (epoll, callbacks)."""
    for frame in reversed(frames):
        if not _is_plumbing(frame):
            return package_of(_split(frame)[1])
    return "event loop only (epoll, scheduling)"


def summarise(raw: str, top: int = 15) -> dict[str, Any]:
    self_time: Counter[str] = Counter()
    self_lines: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    callers: Counter[str] = Counter()
    total = 0
    for line in raw.splitlines():
        line = line.strip()
        if not line:
            continue
        stack, _, count_text = line.rpartition(" ")
        try:
            count = int(count_text)
        except ValueError:
            continue
        frames = [f for f in stack.split(";") if f]
        # py-spy may prefix process/thread pseudo-frames; they are not code.
        frames = [f for f in frames if not f.startswith(("process ", "thread ("))]
        if not frames:
            continue
        total += count
        function, path = _split(frames[-1])
        self_time[f"{function} ({path})"] += count
        self_lines[frames[-1].strip()] += count
        packages[package_of(path)] += count
        callers[_calling_library(frames)] += count
        seen: set[str] = set()
        for frame in frames:
            name = "{} ({})".format(*_split(frame))
            if _is_plumbing(frame):
                continue
            if name not in seen:
                seen.add(name)
                inclusive[name] += count

    def rows(counter: Counter[str]) -> list[dict[str, Any]]:
        return [
            {"frame": name, "samples": n, "percent": round(100.0 * n / total, 1) if total else 0.0}
            for name, n in counter.most_common(top)
        ]

    return {
        "samples": total,
        "self": rows(self_time),
        "self_by_line": rows(self_lines),
        "inclusive": rows(inclusive),
        "packages_self": rows(packages),
        "calling_library": rows(callers),
    }


def render(summary: dict[str, Any]) -> str:
    out = [f"{summary['samples']} samples (on-CPU only; idle waits in the event loop are not sampled)"]
    for key, title in (
        ("self", "top frames by self time (function)"),
        ("self_by_line", "top frames by self time (line)"),
        ("inclusive", "top functions by inclusive time (event loop and entry point left out)"),
        ("packages_self", "self time by package"),
        ("calling_library", "self time charged to the innermost non-stdlib caller (who made the syscall)"),
    ):
        out.append("")
        out.append(title)
        for row in summary[key]:
            out.append(f"  {row['percent']:5.1f}%  {row['samples']:6d}  {row['frame']}")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__.split("\n\n")[0])
    parser.add_argument("raw", type=Path)
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args()
    print(render(summarise(args.raw.read_text(), args.top)))


if __name__ == "__main__":
    main()
