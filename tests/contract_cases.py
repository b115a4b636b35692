"""The contract's cases (tests/contract_cases.json), shared by every side that judges a command:
the worker's decoder, the Python producer and its RecordingProducer, and the TypeScript producer
and its recording producer (producers/typescript/test reads the same file)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CASES_FILE = Path(__file__).resolve().parent / "contract_cases.json"


@dataclass(frozen=True, slots=True)
class ContractCase:
    """One command (a job's single argument) and the verdict every side must give it."""

    name: str
    function: str
    command: dict[str, Any]
    valid: bool
    field: str | None = None
    """The member a refusal names (None: the job as a whole)."""

    def job(self, k: dict[str, Any] | None = None, et: int = 1_764_063_000_000) -> bytes:
        """The case as a job's bytes, written compactly as the producers write them (escaped, so
        that an unpaired surrogate stays what the case says: text a JSON parser must judge)."""
        body = {"f": self.function, "a": [self.command], "k": k or {}, "t": None, "et": et}
        return json.dumps(body, separators=(",", ":"), ensure_ascii=True).encode()


def load_cases() -> list[ContractCase]:
    document = json.loads(CASES_FILE.read_text(encoding="utf-8"))
    return [ContractCase(**case) for case in document["cases"]]


CASES = load_cases()
