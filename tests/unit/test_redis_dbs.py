"""TASKLINE_TEST_REDIS_DBS bounds the Redis databases tests and benchmarks may claim."""

from __future__ import annotations

import pytest

from tests.support.services import allowed_redis_databases, parse_redis_dbs


@pytest.mark.parametrize(
    ("text", "numbers"),
    [("3-7", [3, 4, 5, 6, 7]), ("3,5,9", [3, 5, 9]), ("3-5, 9", [3, 4, 5, 9]), ("9,3", [3, 9]), ("4", [4])],
)
def test_ranges_and_lists_are_read(text, numbers):
    """A range, a list, or both, in any order, give the numbers ascending."""
    assert parse_redis_dbs(text) == numbers


@pytest.mark.parametrize("text", ["", "a", "7-3", "3-", "-1"])
def test_a_bad_value_names_the_variable(text):
    """Anything else is an error naming TASKLINE_TEST_REDIS_DBS and showing the forms it takes."""
    with pytest.raises(ValueError, match="TASKLINE_TEST_REDIS_DBS"):
        parse_redis_dbs(text)


def test_the_default_is_1_to_15(monkeypatch):
    """Unset, the databases 1 to 15 may be claimed (0 is left to people)."""
    monkeypatch.delenv("TASKLINE_TEST_REDIS_DBS", raising=False)
    assert allowed_redis_databases() == list(range(1, 16))
