"""`taskline-send`'s entry point: the command line needs typer and rich, which the client does not.

`pip install taskline-producer` brings redis-py and pydantic only; `pip install
"taskline-producer[cli]"` adds what `taskline-send` needs. Without them it says so.
"""

from __future__ import annotations

import sys

__all__ = ["main"]

_CLI_DEPENDENCIES = frozenset({"typer", "click", "rich"})


def main() -> None:
    try:
        from taskline_producer.cli import main as cli_main
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] not in _CLI_DEPENDENCIES:
            raise
        print(
            f"taskline-send needs {exc.name}, which the client alone does not install:"
            ' pip install "taskline-producer[cli]"',
            file=sys.stderr,
        )
        raise SystemExit(2) from None
    cli_main()
