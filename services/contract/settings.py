"""Pacesetter's one frozen settings object, read from ``PACESETTER_*`` environment variables."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict
from pydantic_settings import SettingsError as SourceError

from services.contract.errors import PacesetterError

ENV_PREFIX = "PACESETTER_"
LINE_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,31}$"
ROLES = ("viewer", "supervisor", "scheduler", "admin")
SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


class SettingsError(PacesetterError):
    """Settings that cannot work; the message names the environment variable and the fix."""


class LineProfile(BaseModel):
    """Thresholds of one line (METRICS.md, "Line profiles")."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    threshold_seconds: float = Field(default=60.0, gt=0)
    service_level_target: float = Field(default=0.80, gt=0, le=1)
    short_abandon_seconds: float = Field(default=5.0, ge=0)
    abandonment_standard: float | None = Field(default=0.05, ge=0, le=1)
    longest_wait_alert_seconds: float = Field(default=600.0, gt=0)
    failure_demand_limit: float = Field(default=0.20, ge=0, le=1)
    # the severity of this line's service-level and long-wait alerts
    alert_severity: Literal["warning", "critical"] = "warning"


DEFAULT_PROFILE = LineProfile()
DEFAULT_LINE_PROFILES: dict[str, LineProfile] = {
    "999": LineProfile(
        threshold_seconds=10,
        service_level_target=0.90,
        short_abandon_seconds=5,
        abandonment_standard=None,
        longest_wait_alert_seconds=60,
        alert_severity="critical",
    ),
    "101": LineProfile(),
}


@dataclass(frozen=True)
class ApiToken:
    """One API bearer token and the role it grants."""

    role: str
    token: SecretStr
    name: str | None = None  # who holds it: recorded with their acknowledgements


class Settings(BaseSettings):
    """Everything configurable, built once at an entry point and passed down.

    Faust reads its own environment variables (``BROKER_URL`` …) and they override its
    constructor arguments, so Pacesetter is configured through ``PACESETTER_*`` only.
    """

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, frozen=True, extra="ignore", validate_default=True
    )

    bootstrap_servers: str = Field(default="127.0.0.1:9092", min_length=3)
    topic_events: str = "pacesetter.events"
    topic_intervals: str = "pacesetter.intervals"
    topic_live: str = "pacesetter.live"
    topic_alerts: str = "pacesetter.alerts"
    topic_deadletter: str = "pacesetter.deadletter"
    partitions: int = Field(default=8, ge=1, le=1024)
    replication_factor: int = Field(default=1, ge=1, le=16)

    # How every Kafka client connects (services/kafka/clients.py builds them all from these).
    kafka_security_protocol: SecurityProtocol = "PLAINTEXT"
    kafka_sasl_mechanism: SaslMechanism = "SCRAM-SHA-512"
    kafka_sasl_username: str = ""
    kafka_sasl_password: SecretStr = SecretStr("")
    kafka_sasl_password_file: str = ""
    kafka_ssl_ca_file: str = ""
    kafka_ssl_cert_file: str = ""
    kafka_ssl_key_file: str = ""
    # How long the broker may hold a fetch with no new records: the worst part of an event's
    # delay before the worker sees it (Faust's own 1,500 ms made freshness 0.4-3 s).
    kafka_fetch_max_wait_ms: int = Field(default=10, ge=0, le=5000)
    # The same for the API's read model: tansu holds a fetch for up to about half of it, so 25 ms
    # adds at most ~15 ms to a live message, as 10 ms does, at 40 % less CPU polling 3 topics.
    api_fetch_max_wait_ms: int = Field(default=25, ge=0, le=5000)
    worker_metrics_host: str = "127.0.0.1"
    # 0 turns the worker's /metrics, /healthz and /readyz off.
    worker_metrics_port: int = Field(default=9101, ge=0, le=65535)
    # How often the worker saves each of its partitions' room state to the history store, so
    # that a rebuild replays only what came after it; 0: never, and rebuilds replay everything.
    checkpoint_seconds: float = Field(default=300.0, ge=0)
    # The largest share of the event loop's time taking checkpoints may pause it: after a pause
    # of p seconds the next waits p / share (a national week's partition pauses ~2 s).
    checkpoint_loop_share: float = Field(default=0.005, gt=0, le=1)

    grace_seconds: float = Field(default=7200.0, ge=0)
    repeat_window_seconds: float = Field(default=7 * 86400.0, gt=0)
    max_queue_seconds: float = Field(default=3600.0, gt=0)
    max_future_seconds: float = Field(default=86400.0, gt=0)
    live_lag_seconds: float = Field(default=300.0, gt=0)
    attendance_horizon_seconds: float = Field(default=50 * 3600.0, gt=0)
    max_occupancy: float = Field(default=0.85, gt=0, le=1)
    shrinkage: float = Field(default=0.35, ge=0, lt=1)
    line_profiles: dict[str, LineProfile] = Field(default_factory=dict)
    room_regions: str = ""

    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8000, ge=0, le=65535)
    api_tokens: SecretStr = SecretStr("")
    session_key: SecretStr | None = None
    session_seconds: float = Field(default=12 * 3600.0, ge=60, le=7 * 86400.0)
    store_url: str = "sqlite:///data/pacesetter.db"
    # Days of records the API keeps in memory (older ones come from the store); the output
    # topics keep two days more (``output_retention_ms``), the API reads only this many.
    read_model_days: int = Field(default=8, ge=1, le=366)
    caller_key: SecretStr | None = None
    worker_id: str = "pacesetter-worker"
    data_dir: str = "data"

    @field_validator("line_profiles", mode="before")
    @classmethod
    def _parse_profiles(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = json.loads(value) if value.strip() else {}
        if isinstance(value, dict):
            # A partial profile of a well-known line keeps that line's other defaults: setting
            # 999's threshold must not silently give 999 the generic target and standards.
            value = {
                line: {**DEFAULT_LINE_PROFILES[line].model_dump(), **given}
                if line in DEFAULT_LINE_PROFILES and isinstance(given, dict)
                else given
                for line, given in value.items()
            }
        return value

    @field_validator("line_profiles")
    @classmethod
    def _check_line_names(cls, value: dict[str, LineProfile]) -> dict[str, LineProfile]:
        import re

        for line in value:
            if not re.match(LINE_PATTERN, line):
                raise ValueError(f"line {line!r} must match {LINE_PATTERN}")
        return value

    @field_validator("room_regions")
    @classmethod
    def _check_regions(cls, value: str) -> str:
        from services.planning.calendar import UnknownRegion, parse_room_regions

        try:
            parse_room_regions(value)
        except UnknownRegion as exc:
            raise ValueError(f"{exc}; give room:REGION pairs like north:GB-ENG,seattle:US-WA") \
                from None
        return value

    @field_validator("api_tokens")
    @classmethod
    def _check_tokens(cls, value: SecretStr) -> SecretStr:
        _parse_tokens(value.get_secret_value())
        return value

    @field_validator("session_key")
    @classmethod
    def _check_session_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 32:
            raise ValueError("must be at least 32 characters (e.g. the output of "
                             "'python -c \"import secrets; print(secrets.token_hex(32))\"')")
        return value

    @property
    def output_retention_ms(self) -> int:
        """Retention of the intervals, live and alerts topics: the API's days and 2 days more.

        A record published longer ago than that is in the history store (intervals, attendance,
        handlers, alert episodes) or superseded (live states); the margin covers an API that
        starts while a worker is rebuilding.
        """
        return (self.read_model_days + 2) * 86_400_000

    def output_topic_configs(self) -> dict[str, dict[str, str]]:
        """Topic configs of the output topics: compacted, and bounded in time."""
        config = {"cleanup.policy": "compact,delete", "retention.ms": str(self.output_retention_ms),
                  "segment.ms": "3600000", "min.cleanable.dirty.ratio": "0.1"}
        return {t: dict(config) for t in (self.topic_intervals, self.topic_live, self.topic_alerts)}

    @field_validator("kafka_sasl_password_file", "kafka_ssl_ca_file", "kafka_ssl_cert_file",
                     "kafka_ssl_key_file")
    @classmethod
    def _check_readable(cls, value: str) -> str:
        if value and not os.access(value, os.R_OK):
            raise ValueError(f"{value!r} is not a readable file: give the path of one")
        if value and not os.path.isfile(value):
            raise ValueError(f"{value!r} is not a file: give the path of one")
        return value

    @model_validator(mode="after")
    def _check_kafka_security(self) -> Settings:
        protocol = self.kafka_security_protocol
        uses_ssl = protocol in ("SSL", "SASL_SSL")
        tls_files = ("ssl_ca_file", "ssl_cert_file", "ssl_key_file")
        if not uses_ssl:
            given = [name for name in tls_files if getattr(self, f"kafka_{name}")]
            if given:
                raise ValueError(
                    f"{ENV_PREFIX}KAFKA_{given[0].upper()} is set but "
                    f"{ENV_PREFIX}KAFKA_SECURITY_PROTOCOL is {protocol}: set it to SSL or "
                    f"SASL_SSL, or unset the TLS files")
        if bool(self.kafka_ssl_cert_file) != bool(self.kafka_ssl_key_file):
            raise ValueError(
                f"{ENV_PREFIX}KAFKA_SSL_CERT_FILE and {ENV_PREFIX}KAFKA_SSL_KEY_FILE go together "
                "(a client certificate and its private key, for mutual TLS): set both or neither")
        if protocol.startswith("SASL_"):
            if not self.kafka_sasl_username:
                raise ValueError(
                    f"{ENV_PREFIX}KAFKA_SECURITY_PROTOCOL is {protocol}: set "
                    f"{ENV_PREFIX}KAFKA_SASL_USERNAME")
            has_password = bool(self.kafka_sasl_password.get_secret_value())
            if has_password == bool(self.kafka_sasl_password_file):
                raise ValueError(
                    f"{ENV_PREFIX}KAFKA_SECURITY_PROTOCOL is {protocol}: set exactly one of "
                    f"{ENV_PREFIX}KAFKA_SASL_PASSWORD and {ENV_PREFIX}KAFKA_SASL_PASSWORD_FILE")
        elif self.kafka_sasl_username or self.kafka_sasl_password.get_secret_value():
            raise ValueError(
                f"{ENV_PREFIX}KAFKA_SASL_USERNAME/_PASSWORD are set but "
                f"{ENV_PREFIX}KAFKA_SECURITY_PROTOCOL is {protocol}: set it to SASL_SSL "
                "(or SASL_PLAINTEXT), or unset them")
        return self

    def kafka_sasl_secret(self) -> str:
        """The SASL password: given directly, or read from its file (a mounted secret).

        Raises:
            SettingsError: the password file cannot be read or is empty.
        """
        if not self.kafka_sasl_password_file:
            return self.kafka_sasl_password.get_secret_value()
        try:
            with open(self.kafka_sasl_password_file, encoding="utf-8") as handle:
                secret = handle.read().rstrip("\r\n")
        except OSError as exc:
            raise SettingsError(f"{ENV_PREFIX}KAFKA_SASL_PASSWORD_FILE: cannot read "
                                f"{self.kafka_sasl_password_file!r} ({exc})") from None
        if not secret:
            raise SettingsError(f"{ENV_PREFIX}KAFKA_SASL_PASSWORD_FILE: "
                                f"{self.kafka_sasl_password_file!r} is empty")
        return secret

    def profile(self, line: str) -> LineProfile:
        """The profile of ``line``: configured, else the well-known default, else the default."""
        found = self.line_profiles.get(line)
        if found is not None:
            return found
        return DEFAULT_LINE_PROFILES.get(line, DEFAULT_PROFILE)

    def region(self, room: str) -> str:
        """The room's region (time zone and public holidays): configured, else England."""
        from services.planning.calendar import DEFAULT_REGION, parse_room_regions

        return parse_room_regions(self.room_regions).get(room, DEFAULT_REGION)

    def tokens(self) -> list[ApiToken]:
        """The configured API tokens (``role:token`` pairs, comma-separated)."""
        return _parse_tokens(self.api_tokens.get_secret_value())

    @property
    def bootstrap_list(self) -> list[str]:
        """Bootstrap servers as a list."""
        return [s.strip() for s in self.bootstrap_servers.split(",") if s.strip()]


def _parse_tokens(text: str) -> list[ApiToken]:
    tokens = []
    for pair in filter(None, (p.strip() for p in text.split(","))):
        holder, sep, token = pair.partition(":")
        if not sep or not token:
            raise ValueError("each token must be 'role:token' or 'name=role:token', "
                             "comma-separated")
        name, named, role = holder.rpartition("=")
        if role not in ROLES:
            raise ValueError(f"role {role!r} is not one of {', '.join(ROLES)}")
        if named and not name.strip():
            raise ValueError("a name before '=' must not be empty: 'name=role:token'")
        if len(token) < 8:
            raise ValueError("a token must be at least 8 characters")
        tokens.append(ApiToken(role=role, token=SecretStr(token),
                               name=name.strip() if named else None))
    return tokens


def load_settings(**overrides: Any) -> Settings:
    """Build settings from the environment (and overrides), with errors naming the variable.

    Raises:
        SettingsError: a variable is malformed; the message names it and what it needs.
    """
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            if not err["loc"]:  # a check across settings: its message names them
                problems.append(str(err["msg"]).removeprefix("Value error, "))
                continue
            field = str(err["loc"][0])
            problems.append(f"{ENV_PREFIX}{field.upper()}: {err['msg']}")
        raise SettingsError("invalid settings: " + "; ".join(problems)) from None
    except (json.JSONDecodeError, SourceError) as exc:
        # pydantic-settings decodes a dict-typed variable as JSON itself, before any validator.
        cause = exc if isinstance(exc, json.JSONDecodeError) else exc.__cause__
        detail = cause.msg if isinstance(cause, json.JSONDecodeError) else str(exc)
        raise SettingsError(
            f"invalid settings: {ENV_PREFIX}LINE_PROFILES must be a JSON object "
            f'like {{"999": {{"threshold_seconds": 10}}}} ({detail})'
        ) from None
