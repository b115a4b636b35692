"""The `taskline` command's entry point: the long-running processes start lean.

`taskline worker` and `taskline scheduler` run for days, one or many per machine. The CLI
around them (typer, click, rich, the operations commands) would cost every such process about
6 MiB of memory it never uses, so these two start directly; everything else, `--help`
included, goes to the full CLI (`worker.cli.app`).
"""

from __future__ import annotations

import gc
import sys
from collections.abc import Callable

__all__ = ["main"]


def _worker() -> None:
    from worker.arq_seam.wiring import run_worker

    run_worker()


def _scheduler() -> None:
    from worker.arq_seam.scheduler import run_scheduler

    run_scheduler()


_LONG_RUNNING: dict[str, Callable[[], None]] = {"worker": _worker, "scheduler": _scheduler}


def main() -> None:
    args = sys.argv[1:]
    run = _LONG_RUNNING.get(args[0]) if len(args) == 1 else None
    if run is None:
        # A command line lives for seconds and imports most of its stack first (`taskline purge`'s
        # wall time starts with it): collecting cycles during those imports is a tenth of their CPU
        # and frees nothing. Collection resumes once they are done, with what they built frozen out
        # of it (gc.freeze: never scanned again).
        gc.disable()
        from worker.cli.app import main as cli_main

        gc.freeze()
        gc.enable()
        cli_main()
        return
    # structlog imports rich (and pygments) when it can, for pretty tracebacks in a terminal;
    # taskline formats tracebacks itself (worker/logs.py), so a long-running process blocks that
    # import and saves about 4 MiB. `sys.modules[name] = None` is Python's documented way.
    sys.modules.setdefault("rich", None)  # type: ignore[arg-type]
    from worker.config.settings import SettingsError

    try:
        run()
    except SettingsError as exc:
        print(
            f"error: configuration: {exc}\n  Fix that variable in the environment (README: Settings).", file=sys.stderr
        )
        raise SystemExit(2) from None
