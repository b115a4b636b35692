"""`taskline dead-letters list|show|replay|discard`.

Job ids can be given whole or as a unique prefix (the first characters the table or the demo
shows); a prefix that fits several dead letters is an error that lists them. Replaying or
discarding every dead letter (no id, no filter) asks first; `--yes` answers for you, and
without a terminal to ask on, nothing is done unless `--yes` is given.
"""

from __future__ import annotations

import asyncio
import getpass
import json
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console

from worker.cli.errors import fail
from worker.cli.layout import Column, fill, table_lines, width
from worker.config.settings import Settings
from worker.text import payload_text

__all__ = ["app"]

app = typer.Typer(help="List, show, replay and discard dead letters.", no_args_is_help=True)
out = Console()
T = TypeVar("T")
_CANDIDATES_SHOWN = 10

FunctionOpt = Annotated[str | None, typer.Option("--function", help="Only this job function.")]
ReasonOpt = Annotated[str | None, typer.Option("--reason", help="Only reasons containing this text.")]
OlderOpt = Annotated[str | None, typer.Option("--older-than", help="Only dead letters older than this (e.g. 1h).")]
NewerOpt = Annotated[str | None, typer.Option("--newer-than", help="Only dead letters newer than this (e.g. 1d).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="JSON instead of a table or a sentence.")]
IdsArg = Annotated[list[str] | None, typer.Argument(help="Job ids or unique prefixes of them; or use the filters.")]
YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask before acting on every dead letter.")]
DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="Only list what would be done.")]


def _settings() -> Settings:
    from worker.cli.errors import load_cli_settings

    return load_cli_settings()


def _run(settings: Settings, work: Callable[[Any], Awaitable[T]]) -> T:
    """Run `work(session)` in one transaction of a short-lived engine."""
    from worker.store.engine import make_engine, make_sessions

    async def main() -> T:
        engine = make_engine(settings)
        try:
            async with make_sessions(engine)() as session, session.begin():
                return await work(session)
        finally:
            await engine.dispose()

    return asyncio.run(main())


def _resolve(settings: Settings, given: list[str]) -> list[str]:
    """Whole job ids for the ids or prefixes given; exits with the candidates when one is ambiguous."""
    from worker.store.dead_letter_queries import match_job_ids

    async def work(session: Any) -> list[list[str]]:
        return [await match_job_ids(session, text, limit=_CANDIDATES_SHOWN + 1) for text in given]

    resolved: list[str] = []
    for text, matches in zip(given, _run(settings, work), strict=True):
        if not matches:
            fail(
                f"no dead letter has a job id starting with {text!r}",
                "`taskline dead-letters list` shows them; `taskline trace ID` follows any other id.",
            )
        if len(matches) > 1:
            shown = ", ".join(matches[:_CANDIDATES_SHOWN]) + (", …" if len(matches) > _CANDIDATES_SHOWN else "")
            fail(f"{text!r} is the start of several job ids: {shown}", "Give more of the id.", code=2)
        resolved.append(matches[0])
    return resolved


def _filter(
    function: str | None,
    reason: str | None,
    older_than: str | None,
    newer_than: str | None,
    job_ids: list[str] | None = None,
) -> Any:
    from worker.cli.arguments import parse_age
    from worker.store.dead_letter_queries import DeadLetterFilter

    now = datetime.now(UTC)
    return DeadLetterFilter(
        function=function,
        reason_contains=reason,
        older_than=now - parse_age(older_than) if older_than else None,
        newer_than=now - parse_age(newer_than) if newer_than else None,
        job_ids=job_ids or None,
    )


def _confirm_everything(verb: str, yes: bool, dry_run: bool) -> None:
    """Replaying or discarding every dead letter: ask, or refuse without a terminal to ask on."""
    if yes or dry_run:
        return
    if not sys.stdin.isatty():
        fail(
            f"refusing to {verb} every dead letter without --yes (no terminal to ask on)",
            "Give job ids or filters, or --dry-run to see what it would do.",
            code=2,
        )
    typer.confirm(f"{verb.capitalize()} ALL dead letters?", abort=True)


def _as_dict(letter: Any, with_payload: bool = False) -> dict[str, Any]:
    data = {
        "job_id": letter.job_id,
        "function": letter.function,
        "reason": letter.reason,
        "category": letter.category,
        "attempts": letter.attempts,
        "payload_size": letter.payload_size,
        "queue": letter.queue,
        "failed_at": letter.failed_at.isoformat(),
        "signed_by": letter.signed_by,
    }
    if with_payload:
        data["payload"] = payload_text(letter.payload)
    return data


_LIST_COLUMNS = [
    Column("job_id"),  # whole, to paste back
    Column("function"),
    Column("failed_at"),
    Column("tries", right=True),
    Column("reason", long=True),
]


@app.command("list")
def list_dead_letters(
    function: FunctionOpt = None,
    reason: ReasonOpt = None,
    older_than: OlderOpt = None,
    newer_than: NewerOpt = None,
    limit: int = 100,
    as_json: JsonOpt = False,
) -> None:
    """List dead letters, newest first."""
    from worker.store.dead_letter_queries import find_dead_letters

    where = _filter(function, reason, older_than, newer_than)
    letters = _run(_settings(), lambda s: find_dead_letters(s, where, limit=limit))
    if as_json:
        for letter in letters:
            print(json.dumps(_as_dict(letter)))
        return
    rows = [
        [
            letter.job_id,
            letter.function or "-",
            letter.failed_at.strftime("%Y-%m-%d %H:%M:%S"),
            str(letter.attempts),
            letter.reason,
        ]
        for letter in letters
    ]
    line_width = width()
    if rows:
        print("\n".join(table_lines(_LIST_COLUMNS, rows, line_width)))
    print(f"{len(letters)} dead letter(s)")


@app.command("show")
def show_dead_letter(
    job_id: Annotated[str, typer.Argument(help="The job id, or a unique prefix of it.")], as_json: JsonOpt = False
) -> None:
    """Show one dead letter with its payload."""
    from worker.store.dead_letter_queries import find_dead_letters

    settings = _settings()
    (whole,) = _resolve(settings, [job_id])
    letters = _run(settings, lambda s: find_dead_letters(s, _filter(None, None, None, None, [whole])))
    if not letters:
        fail(f"no dead letter with job id {whole!r}", "It was discarded or replayed meanwhile.")
    data = _as_dict(letters[0], with_payload=True)
    if as_json:
        print(json.dumps(data))
    else:
        line_width = width()
        for key, value in data.items():
            print("\n".join(fill(f"{key}: {value}", line_width, "  ")))


def _operator() -> str:
    """Who the audit record (operator_action) names for a command line: the OS user."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no passwd entry and no USER/LOGNAME
        return "cli:?"


@app.command("replay")
def replay(
    job_ids: IdsArg = None,
    function: FunctionOpt = None,
    reason: ReasonOpt = None,
    older_than: OlderOpt = None,
    newer_than: NewerOpt = None,
    yes: YesOpt = False,
    dry_run: DryRunOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Re-enqueue dead letters' original payloads under the same job id, and remove them.
    A replayed job that fails again comes back as exactly one dead letter."""
    from worker.tools.replay import replay_dead_letters

    settings = _settings()
    if not job_ids and not any((function, reason, older_than, newer_than)):
        _confirm_everything("replay", yes, dry_run)
    whole = _resolve(settings, job_ids) if job_ids else None
    where = _filter(function, reason, older_than, newer_than, whole)
    report = asyncio.run(replay_dead_letters(settings, where, dry_run=dry_run, who=None if dry_run else _operator()))
    if as_json:
        print(json.dumps(report.as_dict()))
        return
    if dry_run:
        out.print(f"dry run: would replay {len(report.replayed)}, skip {len(report.skipped)}", highlight=False)
        for job_id in report.replayed:
            out.print(f"  would replay {job_id}", markup=False, highlight=False)
    else:
        out.print(f"replayed {len(report.replayed)}, skipped {len(report.skipped)}", highlight=False)
    for job_id, why in report.skipped.items():
        out.print(f"  skipped {job_id}: {why}", markup=False, highlight=False)


@app.command("discard")
def discard(
    job_ids: IdsArg = None,
    function: FunctionOpt = None,
    reason: ReasonOpt = None,
    older_than: OlderOpt = None,
    newer_than: NewerOpt = None,
    yes: YesOpt = False,
    dry_run: DryRunOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Delete dead letters for good."""
    from worker.store.dead_letter_queries import discard_dead_letters, find_job_ids
    from worker.store.operator_actions import record_actions

    settings = _settings()
    if not job_ids and not any((function, reason, older_than, newer_than)):
        _confirm_everything("discard", yes, dry_run)
    whole = _resolve(settings, job_ids) if job_ids else None
    where = _filter(function, reason, older_than, newer_than, whole)

    async def work(session: Any) -> list[str]:
        if dry_run:
            return await find_job_ids(session, where)
        found = await discard_dead_letters(session, where)
        targets: list[tuple[str | None, str]] = [(job_id, "discarded") for job_id in found]
        await record_actions(session, who=_operator(), action="discard", queue=settings.queue, targets=targets)
        return found

    found = _run(settings, work)
    if as_json:
        print(json.dumps({"would_discard": found, "dry_run": True} if dry_run else {"discarded": len(found)}))
    elif dry_run:
        out.print(f"dry run: would discard {len(found)}", highlight=False)
        for job_id in found:
            out.print(f"  would discard {job_id}", markup=False, highlight=False)
    else:
        out.print(f"discarded {len(found)}", highlight=False)
