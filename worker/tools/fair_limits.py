"""Fairness limits and what the fair turns hold back: written by `taskline fairness`, read by every
claim (worker/arq_seam/fair_turns.py) and shown by `taskline status`, the web page and the metrics.

A limit is stored in `<queue>:fair:limits` as `<commands per second> <burst> <weight>` under its
fairness key, or under `*` for every key without a limit of its own. Because each claim reads the
hash, a change applies fleet-wide at the next claim, with no restart.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, Final, cast

from redis.asyncio import Redis
from taskline_producer import keys
from taskline_producer.wire import check_fairness_key

from worker.text import reply_text

__all__ = [
    "DEFAULT_LIMIT_KEY",
    "FairLimit",
    "FairnessView",
    "HeldKey",
    "clear_limit",
    "read_fairness",
    "read_limits",
    "set_limit",
]

DEFAULT_LIMIT_KEY: Final = "*"
"""The limits hash's field for every fairness key without a limit of its own."""
VIEW_KEYS: Final = 200
"""How many keys a view reads per kind (held, waiting): bounds what one status costs Redis."""


@dataclass(frozen=True)
class FairLimit:
    rate: float
    """Commands per second the key may start, on average; 0: no rate limit."""
    burst: float = 1.0
    """How many commands it may start at once after a quiet spell (the bucket's size)."""
    weight: float = 1.0
    """Its share of turns against other keys with jobs waiting (2: twice as many)."""

    def __post_init__(self) -> None:
        for name, value, low in (("rate", self.rate, 0.0), ("burst", self.burst, 1.0), ("weight", self.weight, 0.001)):
            if not math.isfinite(value) or value < low or value > 1e9:
                raise ValueError(f"a fairness limit's {name} is a number from {low:g} to 1e9, got {value!r}")

    def stored(self) -> str:
        return f"{self.rate:g} {self.burst:g} {self.weight:g}"

    @classmethod
    def parse(cls, raw: str) -> FairLimit | None:
        parts = raw.split()
        try:
            return cls(*(float(part) for part in parts)) if len(parts) == 3 else None
        except ValueError:
            return None

    def describe(self) -> str:
        rate = f"{self.rate:g} commands/s (burst {self.burst:g})" if self.rate > 0 else "no rate limit"
        return f"{rate}, weight {self.weight:g}"


async def set_limit(redis: Redis, queue: str, fairness_key: str, limit: FairLimit) -> None:
    """Set a key's limit (or the default, `*`); the next claim of any worker applies it."""
    if fairness_key != DEFAULT_LIMIT_KEY:
        check_fairness_key(fairness_key)
    await cast(Awaitable[int], redis.hset(keys.fair_limits_key(queue), fairness_key, limit.stored()))


async def clear_limit(redis: Redis, queue: str, fairness_key: str) -> bool:
    """Remove a key's own limit (it falls back on the default); whether it had one."""
    return bool(await cast(Awaitable[int], redis.hdel(keys.fair_limits_key(queue), fairness_key)))


async def read_limits(redis: Redis, queue: str) -> dict[str, FairLimit | None]:
    """Every limit set, by key; None for a value that is not a limit (written by hand)."""
    raw = await cast(Awaitable[dict[bytes, bytes]], redis.hgetall(keys.fair_limits_key(queue)))  # a handful
    return {reply_text(key): FairLimit.parse(reply_text(value)) for key, value in sorted(raw.items())}


@dataclass(frozen=True)
class HeldKey:
    key: str
    waiting: int
    """Jobs in its lane (a bulk job counts once here)."""
    until_ms: int = 0
    """When its rate limit lets it go again (epoch ms); 0: it waits for its turn, not for a limit."""


@dataclass(frozen=True)
class FairnessView:
    keys_waiting: int
    """Keys with jobs in their lanes, waiting their turn."""
    held: list[HeldKey]
    """Keys held back by their rate limit, soonest release first (at most VIEW_KEYS)."""
    largest: list[HeldKey]
    """The keys with the most jobs waiting their turn, most first (among the first VIEW_KEYS)."""
    jobs_waiting: int
    """Jobs in the lanes of the keys read (all of them unless more than VIEW_KEYS keys wait)."""
    held_count: int
    limits: dict[str, FairLimit | None]

    @property
    def empty(self) -> bool:
        return not self.keys_waiting and not self.held_count and not self.limits

    def as_dict(self) -> dict[str, Any]:
        return {
            "keys_waiting": self.keys_waiting,
            "jobs_waiting": self.jobs_waiting,
            "held_count": self.held_count,
            "held": [
                {**asdict(h), "until": datetime.fromtimestamp(h.until_ms / 1000, UTC).isoformat()} for h in self.held
            ],
            "largest": [asdict(h) for h in self.largest],
            "limits": {key: (asdict(limit) if limit else None) for key, limit in self.limits.items()},
        }


async def read_fairness(redis: Redis, queue: str, *, top: int = 10) -> FairnessView:
    """What the fair turns hold back now, in two round trips."""
    async with redis.pipeline(transaction=False) as pipe:
        pipe.zcard(keys.fair_turns_key(queue))
        pipe.zcard(keys.fair_held_key(queue))
        pipe.zrange(keys.fair_turns_key(queue), 0, VIEW_KEYS - 1)
        pipe.zrange(keys.fair_held_key(queue), 0, VIEW_KEYS - 1, withscores=True)
        pipe.hgetall(keys.fair_limits_key(queue))
        waiting_count, held_count, waiting_raw, held_raw, limits_raw = await pipe.execute()
    waiting_keys = [reply_text(key) for key in waiting_raw]
    held_pairs = [(reply_text(key), int(score)) for key, score in held_raw]
    async with redis.pipeline(transaction=False) as pipe:
        for key in waiting_keys:
            pipe.llen(keys.fair_lane_key(queue, key))
        for key, _ in held_pairs:
            pipe.llen(keys.fair_lane_key(queue, key))
        lengths = await pipe.execute() if waiting_keys or held_pairs else []
    waiting = [HeldKey(key, int(n)) for key, n in zip(waiting_keys, lengths, strict=False)]
    held = [
        HeldKey(key, int(n), until)
        for (key, until), n in zip(held_pairs, lengths[len(waiting_keys) :], strict=True)
        if key not in {w.key for w in waiting}
    ]
    largest = sorted(waiting, key=lambda h: (-h.waiting, h.key))[:top]
    limits = {reply_text(k): FairLimit.parse(reply_text(v)) for k, v in sorted(limits_raw.items())}
    return FairnessView(
        keys_waiting=int(waiting_count),
        held=held,
        largest=largest,
        jobs_waiting=sum(h.waiting for h in waiting) + sum(h.waiting for h in held),
        held_count=int(held_count),
        limits=limits,
    )
