"""How every `taskline` listing fits the screen it is read on, or the pipe it goes into.

The width is the COLUMNS variable when set, else the terminal's width, else 80 (a pipe, a file,
a log). A table's short columns (ids, names, counts, times) are never cut; its long columns
(reasons, titles) take the width left over, wrapped inside their column, or, when too little is
left, go under their row as indented lines. When even the short columns do not fit, each row is
printed as a record, one `heading: value` line per column. Nothing is ever cut short: a long
column's word too long for a line is folded onto the next; a short column's value (an id, to be
pasted back) is never broken, and goes whole on a line of its own when it is wider than the screen.
"""

from __future__ import annotations

import os
import shutil
import sys
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

__all__ = ["Column", "fill", "table_lines", "width"]

PIPE_WIDTH: Final = 80
"""The width of a listing that goes into a pipe or a file."""
GAP: Final = "  "
LONG_MIN: Final = 24
"""The narrowest a long column may be beside the others; narrower, it goes under its row."""
UNDER_INDENT: Final = "    "


@dataclass(frozen=True, slots=True)
class Column:
    """One column of a listing: its heading, whether its values are long text that may wrap, and
    for a long one the narrowest it may be beside the others (a word in it that must stay whole)."""

    heading: str
    long: bool = False
    right: bool = False
    narrowest: int = LONG_MIN


def width() -> int:
    """The width listings are laid out for: COLUMNS, else the terminal's, else 80."""
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit() and int(columns) > 0:
        return int(columns)
    if sys.stdout.isatty():
        return shutil.get_terminal_size((PIPE_WIDTH, 24)).columns
    return PIPE_WIDTH


def fill(text: str, line_width: int, indent: str = "", first_indent: str = "") -> list[str]:
    """`text` wrapped to `line_width`, its first line after `first_indent`, the others after
    `indent` (a word longer than a line is folded, not cut)."""
    first = first_indent
    usable = max(line_width, max(len(indent), len(first)) + 10)
    lines = textwrap.wrap(text, width=usable, initial_indent=first, subsequent_indent=indent, break_on_hyphens=False)
    return lines or [first.rstrip()]


def _cell(value: str, size: int, right: bool) -> str:
    return value.rjust(size) if right else value.ljust(size)


def _join(cells: Sequence[str]) -> str:
    return GAP.join(cells).rstrip()


def table_lines(columns: Sequence[Column], rows: Sequence[Sequence[str]], line_width: int) -> list[str]:
    """The rows laid out in `line_width` columns (see the module's docstring for how)."""
    natural = [max([len(c.heading), *(len(row[i]) for row in rows)]) for i, c in enumerate(columns)]
    if sum(natural) + len(GAP) * (len(columns) - 1) <= line_width:
        return _side_by_side(columns, rows, natural)
    short = [i for i, c in enumerate(columns) if not c.long]
    long = [i for i, c in enumerate(columns) if c.long]
    short_width = sum(natural[i] for i in short) + len(GAP) * max(0, len(short) - 1)
    if long:
        left = line_width - short_width - len(GAP) * len(long)
        share = left // len(long)
        if share >= max(max(columns[i].narrowest, len(columns[i].heading)) for i in long):
            sizes = [share if c.long else natural[i] for i, c in enumerate(columns)]
            return _wrapped_in_place(columns, rows, sizes)
    if short and short_width <= line_width:
        return _long_under_row(columns, rows, natural, short, long, line_width)
    return _records(columns, rows, line_width)


def _side_by_side(columns: Sequence[Column], rows: Sequence[Sequence[str]], sizes: Sequence[int]) -> list[str]:
    lines = [_join([_cell(c.heading, sizes[i], c.right) for i, c in enumerate(columns)])]
    lines += [_join([_cell(row[i], sizes[i], c.right) for i, c in enumerate(columns)]) for row in rows]
    return lines


def _wrapped_in_place(columns: Sequence[Column], rows: Sequence[Sequence[str]], sizes: Sequence[int]) -> list[str]:
    lines = [_join([_cell(c.heading, sizes[i], c.right) for i, c in enumerate(columns)])]
    for row in rows:
        pieces = [fill(row[i], sizes[i]) if c.long else [row[i]] for i, c in enumerate(columns)]
        for depth in range(max(len(piece) for piece in pieces)):
            cells = [piece[depth] if depth < len(piece) else "" for piece in pieces]
            lines.append(_join([_cell(cells[i], sizes[i], c.right) for i, c in enumerate(columns)]))
    return lines


def _long_under_row(
    columns: Sequence[Column],
    rows: Sequence[Sequence[str]],
    natural: Sequence[int],
    short: Sequence[int],
    long: Sequence[int],
    line_width: int,
) -> list[str]:
    lines = [_join([_cell(columns[i].heading, natural[i], columns[i].right) for i in short])]
    for row in rows:
        lines.append(_join([_cell(row[i], natural[i], columns[i].right) for i in short]))
        for i in long:
            if row[i]:
                lines += fill(f"{columns[i].heading}: {row[i]}", line_width, UNDER_INDENT + "  ", UNDER_INDENT)
    return lines


def _records(columns: Sequence[Column], rows: Sequence[Sequence[str]], line_width: int) -> list[str]:
    lines: list[str] = []
    for number, row in enumerate(rows):
        if number:
            lines.append("")
        for i, column in enumerate(columns):
            line = f"{column.heading}: {row[i]}"
            if column.long:
                lines += fill(line, line_width, "  ")
            elif len(line) <= line_width:
                lines.append(line)
            else:  # an id too long for the line: whole on a line of its own, to paste back
                lines += [f"{column.heading}:", row[i]]
    return lines
