"""Searching a bytea column (a dead letter's payload) for a byte string, in PostgreSQL."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

__all__ = ["BytesPosition", "holds_text"]


class BytesPosition(FunctionElement[int]):
    """PostgreSQL's `position(needle IN haystack)`, the one way it searches a bytea: Core has no
    construct for it (`func.position(a, b)` renders a call PostgreSQL's grammar refuses)."""

    name = "position"
    type = sa.Integer()
    inherit_cache = True


@compiles(BytesPosition)
def _render_position(element: BytesPosition, compiler: SQLCompiler, **kw: Any) -> str:
    needle, haystack = element.clauses
    return f"position({compiler.process(needle, **kw)} IN {compiler.process(haystack, **kw)})"


def holds_text(column: Any, *texts: str) -> Any:
    """A clause true when the bytea `column` holds any of `texts` (UTF-8)."""
    return sa.or_(*(BytesPosition(sa.func.convert_to(text, sa.literal_column("'UTF8'")), column) > 0 for text in texts))
