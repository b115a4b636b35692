"""Configuration from the environment, validated once at startup.

Every setting is documented in the README's "Settings" table; the names of the platform
variables (`DATABASE_URL`, `REDIS_URL`) are the ones Heroku and friends already set.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal, Self

from pydantic import AliasChoices, Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from taskline_producer.connection import SENTINEL_SCHEMES
from taskline_producer.contract import CONTRACT_VERSION, DEFAULT_MAX_PAYLOAD_BYTES, DEFAULT_QUEUE, OUTCOME_TTL_MAX_S
from taskline_producer.redaction import redact_text, redact_url
from taskline_producer.signing import SigningKey

from worker.config.durations import parse_duration
from worker.config.pooler import PoolerMode, PoolerSetting, pooler_mode
from worker.config.redis_connection import arq_redis_settings
from worker.config.retention import redelivery_horizon, schedule_for
from worker.config.signing_keys import KeyConfig, parse_signing_keys

__all__ = ["Settings", "SettingsError", "load_settings", "redact_url"]

_URL_VARIABLES = {
    "database_secret": "DATABASE_URL",
    "redis_secret": "REDIS_URL",
    "outbox_database_secret": "TASKLINE_OUTBOX_DATABASE_URL",
}
_HORIZON_INPUTS = ("job_timeout", "not_yet_window", "transient_tries", "retry_max_delay")


class SettingsError(RuntimeError):
    """The environment does not describe a usable configuration; the message names the variable."""


def normalise_database_url(url: str) -> str:
    """Accept postgres://, postgresql:// and postgresql+asyncpg:// and return the asyncpg form."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ValueError("must look like postgresql://user:password@host:5432/dbname")
    if scheme in ("postgres", "postgresql", "postgresql+asyncpg"):
        # libpq's ?sslmode= (in many platforms' URLs) is asyncpg's ?ssl=, with the same values;
        # SQLAlchemy passes query parameters to asyncpg.connect(), which has no `sslmode`.
        base, query_sep, query = rest.partition("?")
        query = "&".join("ssl=" + p[len("sslmode=") :] if p.startswith("sslmode=") else p for p in query.split("&"))
        return f"postgresql+asyncpg://{base}{query_sep}{query}"
    raise ValueError(f"scheme {scheme!r} is not PostgreSQL; use postgresql://…")


class Settings(BaseSettings):
    # hide_input_in_errors: a ValidationError never quotes a value (DATABASE_URL with its password)
    model_config = SettingsConfigDict(env_prefix="TASKLINE_", extra="ignore", frozen=True, hide_input_in_errors=True)

    # The two URLs carry passwords: held as secrets (a repr, a dump or a validation error shows
    # **********); `database_url` / `redis_url` below hand the value to what connects.
    database_secret: SecretStr = Field(validation_alias=AliasChoices("DATABASE_URL", "TASKLINE_DATABASE_URL"))
    redis_secret: SecretStr = Field(
        default=SecretStr("redis://127.0.0.1:6379/0"), validation_alias=AliasChoices("REDIS_URL", "TASKLINE_REDIS_URL")
    )
    queue: str = Field(default=DEFAULT_QUEUE, min_length=1)

    # the worker
    max_jobs: int = Field(default=50, ge=1, le=1000)
    job_timeout: float = Field(default=10.0, gt=0, le=300)
    poll_delay: float = Field(default=1.5, gt=0, le=30)
    shutdown_grace: float = Field(default=20.0, ge=0, le=3600)
    db_pool_size: int = Field(default=10, ge=1, le=200)
    db_max_overflow: int = Field(default=0, ge=0, le=200)
    database_pooler: PoolerSetting = "auto"
    """What stands between taskline and PostgreSQL (worker/config/pooler.py): `pgbouncer` (transaction
    pooling: unnamed statements, no statement cache), `none`, or `auto` (decided from DATABASE_URL)."""
    batch_max: int = Field(default=100, ge=1, le=1000)
    commit_concurrency: int = Field(default=2, ge=1, le=32)
    bulk_concurrency: int = Field(default=4, ge=1, le=1000)
    wait_for_create: float = Field(default=4.0, ge=0, le=60)
    """How long an update/complete whose task does not exist yet waits in the worker for its
    create (worker/pipeline/waiting_room.py) before it becomes a not-yet retry; 0: never waits.
    At most half of `job_timeout` is used."""
    fair_in_flight: int = Field(default=400, ge=1, le=1_000_000)
    """Commands of one fairness key (a bulk job counts its commands) one worker holds at once: a
    flood claimed in turn cannot fill the worker with work that others' jobs would wait behind."""

    # the contract
    max_payload_bytes: int = Field(default=DEFAULT_MAX_PAYLOAD_BYTES, ge=1024)
    max_bulk_payload_bytes: int = Field(default=1024 * 1024, ge=1024)
    future_tolerance: float = Field(default=3600.0, ge=0)
    contract_version: int = Field(default=CONTRACT_VERSION, ge=1, le=CONTRACT_VERSION)
    """The newest contract version this worker applies (1..it); newer jobs become dead letters.
    Hold a fleet at the older version while some workers still run the previous release."""

    # signed jobs (docs/contract.md, "Signed jobs"; worker/config/signing_keys.py)
    signing_keys: Annotated[dict[str, KeyConfig], NoDecode] = Field(default_factory=dict)
    """The keys jobs may be signed with, by key id, each with its scope; a JSON object or a file path."""
    require_signatures: bool = False
    """Refuse (dead-letter) every job that is not signed by a known, active key."""

    @field_validator("signing_keys", mode="before")
    @classmethod
    def _signing_keys(cls, value: Any) -> dict[str, KeyConfig]:
        try:
            return parse_signing_keys(value)
        except ValidationError as exc:  # never echo the input: it holds the secrets
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"][1:])
            error = first.get("ctx", {}).get("error")
            raise ValueError(f"{where}: {error if error is not None else first['msg']}") from None

    @field_validator("require_signatures")
    @classmethod
    def _keys_for_required(cls, value: bool, info: ValidationInfo) -> bool:
        keys = info.data.get("signing_keys")
        if value and keys is not None and not any(not key.retired for key in keys.values()):
            raise ValueError(
                "is on but TASKLINE_SIGNING_KEYS holds no active key: every job would be refused;"
                " add the producers' keys first"
            )
        return value

    # failures
    transient_tries: int = Field(default=8, ge=1, le=100)
    not_yet_window: float = Field(default=120.0, gt=0)
    retry_base_delay: float = Field(default=0.2, gt=0)
    retry_max_delay: float = Field(default=15.0, gt=0)

    # purge (worker/purge/purger.py, worker/config/retention.py): durations in seconds, or an age such as 30d, 12h, 15m
    purge_retention: float = Field(default=30 * 86400.0, ge=0)
    purge_batch: int = Field(default=5000, ge=1, le=100_000)
    purge_time_budget: float = Field(default=50.0, gt=0, le=3600)
    purge_every_minutes: int = Field(default=60, ge=1, le=1440)
    processed_retention: float = Field(default=2 * 86400.0, gt=0)  # after the fields its check reads
    dead_letter_retention: float = Field(default=30 * 86400.0, ge=0)

    @field_validator("purge_retention", "processed_retention", "dead_letter_retention", "history_keep", mode="before")
    @classmethod
    def _age(cls, value: object) -> object:
        return parse_duration(value) if isinstance(value, str) else value

    @field_validator("purge_every_minutes")
    @classmethod
    def _every(cls, value: int, info: ValidationInfo) -> int:
        schedule_for(value)  # raises ValueError for a period that does not divide the hour or the day
        budget = info.data.get("purge_time_budget")
        if budget is not None and budget >= value * 60:
            raise ValueError(f"is {value} min, not longer than TASKLINE_PURGE_TIME_BUDGET ({budget:g} s)")
        return value

    @field_validator("processed_retention")
    @classmethod
    def _horizon(cls, value: float, info: ValidationInfo) -> float:
        horizon = redelivery_horizon(**{k: info.data[k] for k in _HORIZON_INPUTS if k in info.data})
        if value < horizon:
            raise ValueError(
                f"is {value:g} s, below the redelivery horizon of {horizon:g} s (job TTL + not-yet window"
                " + retries + arq timeout, see worker/config/retention.py):"
                " a redelivered command would be applied twice"
            )
        return value

    # the outbox relay (worker/relay/, docs/outbox.md): the outbox lives in the producer's database
    outbox_database_secret: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("TASKLINE_OUTBOX_DATABASE_URL", "outbox_database_url")
    )
    """The database holding `taskline_outbox` (TASKLINE_OUTBOX_DATABASE_URL); DATABASE_URL when unset.
    Held as a secret like DATABASE_URL: `outbox_database_url` hands it to what connects."""
    relay_batch: int = Field(default=1000, ge=1, le=10_000)
    relay_poll_delay: float = Field(default=0.2, gt=0, le=30)
    relay_republish_after: float = Field(default=60.0, gt=0)
    relay_outcome_ttl: int = Field(default=86_400, ge=60, le=OUTCOME_TTL_MAX_S)
    relay_retention: float = Field(default=86_400.0, ge=0)

    relay_key_id: str | None = None
    """The key id the relay signs what it publishes with (TASKLINE_RELAY_KEY_ID; docs/outbox.md)."""
    relay_key_secret: SecretStr | None = None
    """That key's secret (TASKLINE_RELAY_KEY_SECRET): in the workers' TASKLINE_SIGNING_KEYS too."""

    @field_validator("relay_key_secret")
    @classmethod
    def _relay_key(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        key_id = info.data.get("relay_key_id")
        if (key_id is None) != (value is None):
            missing = "TASKLINE_RELAY_KEY_SECRET" if value is None else "TASKLINE_RELAY_KEY_ID"
            raise ValueError(
                f"{missing} is not set: set both TASKLINE_RELAY_KEY_ID and TASKLINE_RELAY_KEY_SECRET, or neither"
            )
        if key_id is not None and value is not None:
            SigningKey.of(key_id, value.get_secret_value())  # ValueError naming what is wrong, never the secret
        return value

    @property
    def relay_signing_key(self) -> SigningKey | None:
        """The relay's key (docs/outbox.md, "Signed commands"), or None: it publishes unsigned."""
        if self.relay_key_id is None or self.relay_key_secret is None:
            return None
        return SigningKey.of(self.relay_key_id, self.relay_key_secret.get_secret_value())

    @field_validator("relay_retention", "relay_republish_after", mode="before")
    @classmethod
    def _relay_age(cls, value: object) -> object:
        return parse_duration(value) if isinstance(value, str) else value

    # operations
    log_format: Literal["auto", "json", "console"] = "auto"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    metrics_port: int = Field(default=0, ge=0, le=65535)
    metrics_host: str = Field(default="127.0.0.1", min_length=1)  # 0.0.0.0 for Kubernetes (README)
    heartbeat_interval: float = Field(default=5.0, ge=0.1, le=60)
    history_sample_s: float = Field(default=10.0, ge=0.5, le=300)
    history_keep: float = Field(default=3 * 3600.0, ge=600, le=7 * 86400)
    """How long the plots' history is kept in Redis (seconds, or an age such as 12h, 2d)."""

    # the web page (worker/web): read-only unless a password is set
    web_host: str = Field(default="127.0.0.1", min_length=1)
    web_port: int = Field(default=8000, ge=1, le=65535, validation_alias=AliasChoices("TASKLINE_WEB_PORT", "PORT"))
    web_user: str = Field(default="admin", min_length=1)
    web_password: SecretStr | None = None
    web_allow_open: bool = False
    """Serve the page on a host other than loopback without a password (a trusted network only)."""

    @field_validator("database_secret", mode="before")
    @classmethod
    def _database_url(cls, value: object) -> object:
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        return SecretStr(normalise_database_url(value)) if isinstance(value, str) else value

    @field_validator("outbox_database_secret", mode="before")
    @classmethod
    def _outbox_database_url(cls, value: object) -> object:
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if value is None or value == "":
            return None
        return SecretStr(normalise_database_url(value)) if isinstance(value, str) else value

    @property
    def outbox_database_url(self) -> str | None:
        """TASKLINE_OUTBOX_DATABASE_URL in the asyncpg form, password included (None when unset):
        for connecting, never for printing (`redact_url` it)."""
        return self.outbox_database_secret.get_secret_value() if self.outbox_database_secret else None

    @property
    def outbox_url(self) -> str:
        """Where the relay finds the outbox: TASKLINE_OUTBOX_DATABASE_URL, else DATABASE_URL."""
        return self.outbox_database_url or self.database_url

    @property
    def outbox_setting(self) -> str:
        """The variable that names the outbox's database, for messages."""
        return "TASKLINE_OUTBOX_DATABASE_URL" if self.outbox_database_url else "DATABASE_URL"

    @field_validator("redis_secret", mode="before")
    @classmethod
    def _redis_url(cls, value: object) -> object:
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if not isinstance(value, str):
            return value
        # the scheme by hand: urllib refuses a Sentinel URL's several hosts on some Python 3.11s
        if value.partition("://")[0].lower() not in ("redis", "rediss", "unix", *SENTINEL_SCHEMES):
            raise ValueError(
                "must start with redis:// or rediss:// (TLS), or redis+sentinel:// for Sentinel"
                " (redis+sentinel://[:password@]host1:26379,host2:26379/<master name>/<db>)"
            )
        try:
            arq_redis_settings(value)  # the query's options (?ssl_cert_reqs=none, sentinel_password=) must be valid
        except ValueError as exc:
            raise ValueError(redact_text(str(exc))) from None
        return SecretStr(value)

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        """pydantic's copy, taking `database_url`, `outbox_database_url` and `redis_url` in `update`
        as well (held as the secrets behind them, the database URLs normalised)."""
        if update and ("database_url" in update or "redis_url" in update or "outbox_database_url" in update):
            update = dict(update)
            if "database_url" in update:
                update["database_secret"] = SecretStr(normalise_database_url(update.pop("database_url")))
            if "outbox_database_url" in update:
                outbox = update.pop("outbox_database_url")
                update["outbox_database_secret"] = SecretStr(normalise_database_url(outbox)) if outbox else None
            if "redis_url" in update:
                update["redis_secret"] = SecretStr(update.pop("redis_url"))
        return super().model_copy(update=update, deep=deep)

    @property
    def database_url(self) -> str:
        """DATABASE_URL in the asyncpg form, password included: for connecting, never for printing
        (`redact_url` it)."""
        return self.database_secret.get_secret_value()

    @property
    def database_pooler_mode(self) -> PoolerMode:
        """`database_pooler` with `auto` decided from DATABASE_URL (worker/config/pooler.py)."""
        return pooler_mode(self.database_url, self.database_pooler)

    @property
    def outbox_pooler_mode(self) -> PoolerMode:
        """The same for the outbox's database (TASKLINE_OUTBOX_DATABASE_URL, else DATABASE_URL)."""
        return pooler_mode(self.outbox_url, self.database_pooler)

    @property
    def redis_url(self) -> str:
        """REDIS_URL, password included: for connecting, never for printing (`redact_url` it)."""
        return self.redis_secret.get_secret_value()


def load_settings() -> Settings:
    """Read the environment; raise SettingsError naming every bad variable and how to fix it."""
    try:
        return Settings()
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            field = str(error["loc"][0]) if error["loc"] else "?"
            variable = _URL_VARIABLES.get(field) or (field if field.isupper() else f"TASKLINE_{field.upper()}")
            message = "is not set" if error["type"] == "missing" else error["msg"]
            problems.append(f"{variable} {message}")
        raise SettingsError("; ".join(problems) + " (see the README's Settings table)") from None
