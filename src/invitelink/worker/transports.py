"""Where messages go: SMTP (aiosmtplib, one reused connection), a file outbox, an SMS webhook."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from email.message import EmailMessage
from pathlib import Path
from typing import Protocol

import aiosmtplib
import httpx

from invitelink.config import Settings


class TransientError(Exception):
    """Try again later (SMTP 4xx, connection trouble, gateway 5xx)."""


class PermanentError(Exception):
    """This address will not take the message (SMTP 5xx, gateway 4xx)."""


class Mailer(Protocol):
    async def send(self, message: EmailMessage, key: str) -> None: ...
    async def close(self) -> None: ...


class SmsSender(Protocol):
    async def send(self, to: str, body: str, key: str) -> None: ...
    async def close(self) -> None: ...


def _write_atomically(path: Path, data: bytes) -> None:
    """Write then rename: a reader never sees half a file, and a re-send replaces rather than duplicates."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class OutboxMailer:
    """``./var/outbox/<key>.eml``: the embedded default when no SMTP host is configured."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    async def send(self, message: EmailMessage, key: str) -> None:
        try:
            _write_atomically(self.directory / f"{key}.eml", bytes(message))
        except OSError as exc:
            raise TransientError(f"outbox not writable: {exc}") from exc

    async def close(self) -> None:
        return None


class SmtpMailer:
    """One SMTP connection, opened lazily and reused across messages; reopened after any error."""

    def __init__(self, settings: Settings) -> None:
        assert settings.smtp_host
        self.settings = settings
        self.client: aiosmtplib.SMTP | None = None

    async def _connect(self) -> aiosmtplib.SMTP:
        if self.client is not None and self.client.is_connected:
            return self.client
        s = self.settings
        client = aiosmtplib.SMTP(
            hostname=s.smtp_host,
            port=s.smtp_port,
            start_tls=s.smtp_starttls,
            timeout=30,
            username=s.smtp_username,
            password=s.smtp_password,
        )
        await client.connect()
        self.client = client
        return client

    async def send(self, message: EmailMessage, key: str) -> None:
        try:
            client = await self._connect()
            errors, _response = await client.send_message(message)
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [r.code for r in exc.recipients]
            cls = PermanentError if all(500 <= c < 600 for c in codes) else TransientError
            raise cls("; ".join(f"{r.code} {r.message}" for r in exc.recipients)) from exc
        except aiosmtplib.SMTPResponseException as exc:
            await self._drop()
            if 500 <= exc.code < 600:
                raise PermanentError(f"{exc.code} {exc.message}") from exc
            raise TransientError(f"{exc.code} {exc.message}") from exc
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            await self._drop()
            raise TransientError(f"SMTP connection: {type(exc).__name__}: {exc}") from exc
        if errors:
            raise PermanentError("; ".join(f"{addr}: {code} {text}" for addr, (code, text) in errors.items()))

    async def _drop(self) -> None:
        client, self.client = self.client, None
        if client is not None:
            # A broken connection may fail to close; it is dropped either way.
            with contextlib.suppress(Exception):
                client.close()

    async def close(self) -> None:
        if self.client is not None and self.client.is_connected:
            try:
                await self.client.quit()
            except aiosmtplib.SMTPException:
                self.client.close()
        self.client = None


class OutboxSms:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    async def send(self, to: str, body: str, key: str) -> None:
        _write_atomically(self.directory / f"{key}.sms.json", json.dumps({"to": to, "body": body}).encode())

    async def close(self) -> None:
        return None


class WebhookSms:
    """HTTP POST ``{to, body}`` to the configured gateway; 5xx and network errors retry, 4xx fail."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.client = httpx.AsyncClient(timeout=15)

    async def send(self, to: str, body: str, key: str) -> None:
        try:
            response = await self.client.post(self.url, json={"to": to, "body": body}, headers={"Idempotency-Key": key})
        except httpx.HTTPError as exc:
            raise TransientError(f"SMS gateway: {type(exc).__name__}") from exc
        if response.status_code >= 500 or response.status_code == 429:
            raise TransientError(f"SMS gateway answered {response.status_code}")
        if response.status_code >= 400:
            raise PermanentError(f"SMS gateway refused: {response.status_code}")

    async def close(self) -> None:
        await self.client.aclose()


def make_mailer(settings: Settings) -> Mailer:
    return SmtpMailer(settings) if settings.smtp_host else OutboxMailer(settings.outbox_dir)


def make_sms(settings: Settings) -> SmsSender:
    return WebhookSms(settings.sms_webhook_url) if settings.sms_webhook_url else OutboxSms(settings.outbox_dir)
