"""Listings fit the width they are laid out for and never lose a word: short columns whole, long
ones wrapped beside them or under their row, records when even the short columns do not fit."""

from __future__ import annotations

import pytest

from worker.cli.layout import Column, fill, table_lines, width

REASON = (
    "forbidden: the user 42 does not own task 6f1c2b9e-0000-4000-8000-000000000000; send the"
    " command under the task's owner or fix user_id"
)
JOB_ID = "6f1c2b9e-1111-4000-8000-000000000001"
COLUMNS = [
    Column("job_id"),
    Column("function"),
    Column("failed_at"),
    Column("tries", right=True),
    Column("reason", long=True),
]
ROW = [JOB_ID, "update_task", "2026-12-08 00:10:00", "3", REASON]


def words(lines: list[str]) -> list[str]:
    return " ".join(lines).split()


@pytest.mark.parametrize("line_width", [40, 60, 80, 120, 300])
def test_no_line_is_wider_than_asked_and_every_word_of_the_reason_is_kept(line_width):
    """At any width the job id is whole on one line and the reason's words all appear, in order."""
    lines = table_lines(COLUMNS, [ROW, ROW], line_width)
    assert max(len(line) for line in lines) <= line_width, "\n".join(lines)
    assert sum(JOB_ID in line for line in lines) == 2
    text = " ".join(words(lines))
    assert text.count(REASON) == 2 or text.count(" ".join(REASON.split()[1:])) == 2


def test_a_wide_screen_gets_one_line_per_row():
    """With room for everything, each row is one line under one heading line."""
    lines = table_lines(COLUMNS, [ROW], 300)
    assert len(lines) == 2
    assert lines[0].split() == ["job_id", "function", "failed_at", "tries", "reason"]


def test_at_80_columns_the_reason_goes_under_its_row_rather_than_into_a_sliver():
    """No long column narrower than 24 characters: at 80 columns the reason is indented under the row."""
    lines = table_lines(COLUMNS, [ROW], 80)
    assert lines[1].startswith(JOB_ID)
    assert lines[2].startswith("    reason: forbidden:")


def test_a_long_column_with_room_wraps_inside_its_column():
    """With at least 24 columns left over, the reason wraps beside the short columns."""
    lines = table_lines([Column("n", right=True), Column("reason", long=True)], [["7", REASON]], 50)
    assert lines[1].startswith("7  forbidden:")
    assert all(line.startswith("   ") for line in lines[2:])
    assert max(len(line) for line in lines) <= 50


def test_rows_become_records_when_the_short_columns_do_not_fit():
    """Too narrow even for the short columns: one `heading: value` line per column."""
    lines = table_lines(COLUMNS, [ROW], 50)
    assert lines[0] == f"job_id: {JOB_ID}"
    assert "function: update_task" in lines
    assert max(len(line) for line in lines) <= 50


def test_an_id_wider_than_the_screen_is_whole_on_its_own_line():
    """A short column's value is never broken: wider than the line, it follows its heading alone."""
    lines = table_lines(COLUMNS, [ROW], 30)
    assert lines[:2] == ["job_id:", JOB_ID]


def test_a_word_longer_than_the_line_is_folded_not_cut():
    """An unbreakable value is folded onto the next line, every character kept."""
    lines = fill("x" * 50, 20)
    assert "".join(lines) == "x" * 50
    assert max(len(line) for line in lines) <= 20


def test_the_width_is_columns_else_80_in_a_pipe(monkeypatch):
    """COLUMNS wins; without it, output that is not a terminal is laid out for 80 columns."""
    monkeypatch.setenv("COLUMNS", "132")
    assert width() == 132
    monkeypatch.delenv("COLUMNS")
    assert width() == 80  # pytest captures stdout: not a terminal


@pytest.mark.parametrize("line_width", range(60, 140, 7))
def test_a_long_column_never_narrower_than_what_must_stay_whole(line_width):
    """A long column that holds an id is given at least the id's width beside the others, or goes
    under its row: the id is never broken, whatever the width."""
    columns = [Column("issued at"), Column("won"), Column("command", long=True, narrowest=len(JOB_ID))]
    lines = table_lines(columns, [["2026-12-08 00:10:00.000", "title", f"{JOB_ID} applied by vm:1:a"]], line_width)
    assert any(JOB_ID in line for line in lines), "\n".join(lines)
    assert max(len(line) for line in lines) <= line_width
