"""docs/contract.md shows the enqueue script producers in other languages should run, and that
copy is the one the Python producer runs."""

from __future__ import annotations

from pathlib import Path

from taskline_producer.wire import ENQUEUE_FAIR_SCRIPT, ENQUEUE_SCRIPT

CONTRACT = Path(__file__).resolve().parents[2] / "docs" / "contract.md"
START, END = "<!-- enqueue-script:start -->", "<!-- enqueue-script:end -->"
REGENERATE = (
    "regenerate the block between the markers: ```lua + taskline_producer.wire.ENQUEUE_SCRIPT + ```"
    " (the script starts and ends with a newline)"
)


def test_the_enqueue_script_in_the_contract_is_the_one_the_producer_runs() -> None:
    """The Lua block between the enqueue-script markers is exactly ENQUEUE_SCRIPT."""
    text = CONTRACT.read_text(encoding="utf-8")
    assert text.count(START) == 1, f"{CONTRACT} has no (or several) {START} markers"
    block = text.split(START, 1)[1].split(END, 1)[0]
    assert block == f"\n```lua{ENQUEUE_SCRIPT}```\n", f"{CONTRACT}'s enqueue script is stale; {REGENERATE}"


def test_the_fair_enqueue_script_in_the_contract_is_the_one_the_producer_runs() -> None:
    """The Lua block between the enqueue-fair-script markers is exactly ENQUEUE_FAIR_SCRIPT."""
    start, end = "<!-- enqueue-fair-script:start -->", "<!-- enqueue-fair-script:end -->"
    text = CONTRACT.read_text(encoding="utf-8")
    assert text.count(start) == 1, f"{CONTRACT} has no (or several) {start} markers"
    block = text.split(start, 1)[1].split(end, 1)[0]
    assert block == f"\n```lua{ENQUEUE_FAIR_SCRIPT}```\n", f"{CONTRACT}'s fair enqueue script is stale"
