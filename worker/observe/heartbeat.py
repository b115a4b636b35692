"""The heartbeat document: what every taskline process writes to Redis, and how its age is read.

Every worker and scheduler process writes `taskline:worker:<queue>:<worker id>` = a JSON document
every `TASKLINE_HEARTBEAT_INTERVAL` seconds (worker/observe/monitor.py writes it), and adds the id to
the index `taskline:workers:<queue>` (a sorted set), so that the fleet's readers (worker/tools/)
find the live workers without scanning the keyspace; every key name is in
`taskline_producer.keys`.

A worker is live while its key is younger than `BEATS_PER_TTL` intervals. The document records the
time to live it was written with (`key_ttl_ms`), so readers judge its age from the key's PTTL,
measured by Redis, whatever the machines' clocks say. A command worker writes its key with a
longer time to live (three intervals plus its jobs' claim expiry plus one interval): after a
crash, its last document, with its running job ids, stays readable until every claim it held has
expired (worker/tools/claims.py).

The document holds the process's ids, host, version, job counts, the ids of the jobs it is
running, its database state, the newest contract version it applies, and `metrics`: a snapshot of
its own metrics (`metrics_snapshot`), without the fleet's gauges, which the fleet's page reads
afresh.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from worker.observe.metric_names import FLEET_GAUGES

if TYPE_CHECKING:  # kept out of the import of `taskline health`, an exec probe that should start fast
    from prometheus_client import CollectorRegistry

__all__ = ["BEATS_PER_TTL", "heartbeat_age_s", "is_live", "metrics_snapshot"]

BEATS_PER_TTL: Final = 3
"""A heartbeat key lives this many intervals; liveness and readiness allow the same age."""


def heartbeat_age_s(document: dict[str, Any], pttl_ms: int) -> float:
    """Seconds since the document was written: the TTL it was written with minus what is left.
    A document without `key_ttl_ms` was written with three intervals."""
    interval = float(document.get("interval_s") or 0)
    written_ttl = document.get("key_ttl_ms")
    if not isinstance(written_ttl, int | float):
        written_ttl = interval * BEATS_PER_TTL * 1000
    return max(0.0, (float(written_ttl) - max(0, pttl_ms)) / 1000)


def is_live(document: dict[str, Any]) -> bool:
    """Whether a document, its `age_s` measured, is younger than `BEATS_PER_TTL` intervals."""
    return float(document.get("age_s", 0.0)) <= float(document.get("interval_s") or 0) * BEATS_PER_TTL


def metrics_snapshot(registry: CollectorRegistry) -> list[dict[str, Any]]:
    """The registry's samples as JSON-able families (without the fleet gauges and `_created`)."""
    families = []
    for family in registry.collect():
        if family.name in FLEET_GAUGES:
            continue
        samples = [[s.name, s.labels, s.value] for s in family.samples if not s.name.endswith("_created")]
        if samples:
            families.append(
                {"name": family.name, "type": family.type, "help": family.documentation, "samples": samples}
            )
    return families
