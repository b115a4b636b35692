"""The outbox relays as Redis sees them: their heartbeats (`taskline:relay:<queue>:<relay id>`,
listed in `taskline:relays:<queue>`), each carrying the outbox's figures as that relay last read
them and its own counts. `taskline status` and the web page show them (`outbox_status`)."""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis
from taskline_producer import keys

from worker.observe.heartbeat import heartbeat_age_s, is_live
from worker.text import json_object, reply_text

__all__ = ["live_relays", "outbox_status"]


async def live_relays(redis: Redis, queue: str) -> list[dict[str, Any]]:
    """The heartbeat documents of the queue's live relays (each with `age_s`), oldest first."""
    ids = [reply_text(member) for member in await redis.zrange(keys.relays_index_key(queue), 0, -1)]
    if not ids:
        return []
    async with redis.pipeline(transaction=False) as pipe:
        for relay_id in ids:
            pipe.get(keys.relay_key(queue, relay_id))
            pipe.pttl(keys.relay_key(queue, relay_id))
        replies = await pipe.execute()
    found = []
    for raw, pttl in zip(replies[0::2], replies[1::2], strict=True):
        document = json_object(raw)
        if document is None or "relay_id" not in document:
            continue
        document["age_s"] = round(heartbeat_age_s(document, int(pttl)), 3)
        if is_live(document):
            found.append(document)
    found.sort(key=lambda doc: str(doc.get("started_at", "")))
    return found


async def outbox_status(redis: Redis, queue: str) -> dict[str, Any] | None:
    """The outbox for `taskline status` and the page: its figures (from the relay that read them
    last), and each live relay's counts; None when no relay runs."""
    relays = await live_relays(redis, queue)
    if not relays:
        return None
    freshest = min((r for r in relays if r.get("outbox")), key=lambda r: float(r["age_s"]), default=None)
    rows = []
    for relay in relays:
        counts = relay.get("counts") or {}
        confirmed = counts.get("confirmed") or {}
        rows.append(
            {
                "relay_id": relay.get("relay_id"),
                "host": relay.get("host"),
                "pid": relay.get("pid"),
                "published": int(counts.get("published") or 0),
                "republished": int(counts.get("republished") or 0),
                "confirmed": sum(int(v) for v in confirmed.values()),
                "invalid": int(counts.get("invalid") or 0),
                "last_beat_age_s": relay.get("age_s"),
            }
        )
    return {"figures": freshest["outbox"] if freshest else None, "relays": rows}
