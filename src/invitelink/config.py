"""Settings read from the environment (prefix ``INVITELINK_``) and an optional ``.env`` file."""

from __future__ import annotations

import os
import secrets
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

SECRET_KEY_FILE = "secret_key"  # noqa: S105 (a file name)


class Settings(BaseSettings):
    # hide_input_in_errors: a rejected value (a database or Redis URL) may carry a password; errors name the field.
    model_config = SettingsConfigDict(
        env_prefix="INVITELINK_", env_file=".env", extra="ignore", hide_input_in_errors=True
    )

    database_url: str = "sqlite:///./var/invitelink.db"
    public_url: str = "http://127.0.0.1:8000"
    # None means: generate once and keep it in ``var_dir`` so links stay valid across restarts.
    secret_key: str | None = Field(default=None, repr=False)
    var_dir: Path = Path("./var")

    smtp_host: str | None = None
    smtp_port: int = 587
    smtp_username: str | None = None
    smtp_password: str | None = Field(default=None, repr=False)
    smtp_starttls: bool = True
    smtp_from: str = "invitelink <noreply@localhost>"
    # Connections a worker keeps open to the relay, each sending one message at a time and recording its outcome
    # before the next: a killed worker re-sends at most one message per connection.
    smtp_connections: int = Field(default=4, ge=1, le=64)

    sms_webhook_url: str | None = None
    worker: Literal["embedded", "off"] = "embedded"
    # Deliveries a worker claims at once, and how long its claim holds: a killed worker's unsent claims return to
    # the queue after the lease.
    worker_batch: int = 50
    # Renewed every third of it while the worker works: a SIGKILLed worker's claims come free within this time.
    worker_lease_seconds: int = 45
    # A message refused for a temporary reason (SMTP 4xx for its recipient) is retried for this long after its
    # first try, then fails. A relay that is down (no connection, TLS, login, 421) pauses sending instead and
    # costs no delivery anything: the worker probes it, 5 s after the failure and then twice as long each time,
    # up to relay_probe_max_seconds, and while it stays down repeats its warning every relay_reminder_minutes
    # (0: never).
    delivery_retry_hours: float = Field(default=72, gt=0)
    relay_probe_max_seconds: float = Field(default=300, gt=0)
    relay_reminder_minutes: float = Field(default=60, ge=0)

    # Limits, documented in README and OpenAPI.
    max_body_bytes: int = 1_048_576
    max_import_bytes: int = 10_485_760
    # A request body (or each piece of a chunked one) must arrive within this many seconds, else 408.
    body_read_timeout_seconds: float = Field(default=30.0, gt=0)
    admin_session_hours: int = 12
    # Trigger API: recipients per call, and flood protection per trigger token (counted in the database, so the
    # limits hold across app instances).
    trigger_max_recipients: int = 1000
    trigger_flood_batches_per_minute: int = 60
    trigger_flood_recipients_per_hour: int = 20_000
    # Rate limits (invitelink.rate_limits): counted in Redis when redis_url is set, so every process and instance
    # shares one count; unset, each process counts its own. A limit of 0 turns it off.
    redis_url: str | None = Field(default=None, repr=False)  # may carry a password
    redis_key_prefix: str = "invitelink"
    # Supplier API: calls per key and minute.
    supplier_requests_per_minute: int = 600
    # SoSci API: send_mail calls per API access key, a burst per minute and a ceiling per hour.
    # As generous as the trigger's flood limit (20,000 recipients an hour): a lab mailing its whole panel through
    # send_mail stays under it; a leaked key cannot mail the world.
    sosci_send_mail_per_minute: int = 600
    sosci_send_mail_per_hour: int = 20_000
    # Admin login: failed logins per account (the e-mail) and per client address within the window.
    login_failures_per_account: int = 10
    login_failures_per_address: int = 50
    login_failure_window_seconds: int = Field(default=900, ge=1)
    # argon2id runs at once per process (64 MiB each), and how long a login waits for a turn before it is a 503.
    password_hash_concurrency: int = Field(default=4, ge=1)
    password_hash_wait_seconds: float = Field(default=2.0, gt=0)
    # Webhooks: targets on private, loopback or link-local addresses are refused unless this is set (development
    # and tests); a request to an endpoint gives up after this many seconds.
    webhook_allow_private: bool = False
    webhook_timeout_seconds: float = 10.0
    # POST /api/v1/bounces: the bearer secret an operator's MTA pipe sends; unset, the endpoint answers 401.
    bounce_secret: str | None = Field(default=None, repr=False)
    # Logs (invitelink.logs): every line of the process as text or as one JSON object, from this level up.
    log_format: Literal["text", "json"] = "text"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    # One redacted line per request (invitelink.access); off, only the request counters of /metrics remain.
    access_log: bool = True
    # GET /metrics: unset, anyone who reaches the port may scrape; set, it requires "Authorization: Bearer <token>".
    metrics_token: str | None = Field(default=None, repr=False)

    @field_validator("log_format", "log_level", mode="before")
    @classmethod
    def _case_insensitive(cls, value: object, info: ValidationInfo) -> object:
        # INVITELINK_LOG_LEVEL=info and INVITELINK_LOG_FORMAT=JSON mean what they say.
        if isinstance(value, str):
            return value.upper() if info.field_name == "log_level" else value.lower()
        return value

    @field_validator("public_url")
    @classmethod
    def _strip_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        try:
            url = make_url(value)
        except ArgumentError:
            raise ValueError(
                "not a database URL; use sqlite:///./var/invitelink.db or postgresql+psycopg://user:password@host/db"
            ) from None
        if url.get_backend_name() not in ("sqlite", "postgresql"):
            raise ValueError(f"{url.get_backend_name()} is not supported; use SQLite or PostgreSQL")
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        if value and not value.startswith(("redis://", "rediss://")):
            raise ValueError("not a Redis URL; use redis://host:6379/0 (or rediss:// for TLS)")
        return value or None

    @property
    def outbox_dir(self) -> Path:
        return self.var_dir / "outbox"

    @cached_property
    def server_secret(self) -> bytes:
        """The server's HMAC key: the configured one, else one generated once and stored under var_dir."""
        if self.secret_key:
            return self.secret_key.encode()
        path = self.var_dir / SECRET_KEY_FILE
        if not path.exists():
            self.var_dir.mkdir(parents=True, exist_ok=True)
            # O_EXCL: two processes starting together must not each write a different key.
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                pass
            else:
                with os.fdopen(fd, "w") as fh:
                    fh.write(secrets.token_urlsafe(48))
        return path.read_text().strip().encode()
