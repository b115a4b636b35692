"""Statements built from the table models, rendered once into SQL text for the hot path.

A Core statement is checked against the models when it is built (a renamed column is an
`AttributeError` at import), but executing it makes SQLAlchemy walk the whole expression for
its cache key on every call. `compiled_text` renders it once, in PostgreSQL's dialect, into a
`text()` clause with the same `:name` parameters: each call then sends the same SQL text, so
asyncpg's prepared-statement cache hits, and nothing is rebuilt per call.
"""

from __future__ import annotations

from typing import Final

from sqlalchemy import TextClause, text
from sqlalchemy.dialects.postgresql.base import PGDialect
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler

__all__ = ["compiled_text", "render"]

_DIALECT: Final = PGDialect(paramstyle="named")  # type: ignore[no-untyped-call]  # (SQLAlchemy leaves it untyped)


def render(statement: ClauseElement) -> str:
    """The statement's SQL in PostgreSQL's dialect, with `:name` parameters."""
    return str(statement.compile(dialect=_DIALECT))


def compiled_text(statement: ClauseElement) -> TextClause:
    """The statement rendered once (see the module docstring), ready to execute with parameters.

    Every parameter must be one the caller passes, `bindparam(name)` without a value or a type
    (cast it instead: `cast(bindparam(name), type)`). A Python constant in the expression
    (`column + 1`) would become a parameter nobody passes, and a typed parameter renders as
    `:name::TYPE`, which text() does not read as a parameter: both are refused here."""
    compiled = statement.compile(dialect=_DIALECT)
    if not isinstance(compiled, SQLCompiler):
        raise TypeError(f"not a SQL statement: {type(statement).__name__}")
    fixed = sorted(name for bind, name in compiled.bind_names.items() if not bind.required)
    if fixed:
        raise ValueError(
            f"the statement binds values when it is built ({', '.join(fixed)}): write constants"
            " with literal_column(), true(), false() or null(), and pass the rest as parameters"
        )
    clause = text(str(compiled))
    expected, parsed = set(compiled.bind_names.values()), set(clause.compile().params)
    if expected != parsed:
        raise ValueError(
            f"parameters {sorted(expected ^ parsed)} do not survive as text: bind them untyped"
            " inside a cast, cast(bindparam(name), type), rather than bindparam(name, type_=type)"
        )
    return clause
