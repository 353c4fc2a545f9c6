"""Where messages go: SMTP (aiosmtplib, one reused connection), a file outbox, an SMS webhook.

A transport tells three kinds of failure apart, because they call for different things: ``PermanentError`` (this
recipient will never take the message: fail it), ``TransientError`` (this message, later: retry it with backoff) and
``RelayUnavailable`` (the relay itself takes nothing now: the worker pauses the channel and probes the relay, and
no delivery loses an attempt; ``worker/relay.py``)."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from email.utils import parseaddr
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

import aiosmtplib
import httpx

from invitelink.config import Settings


class TransientError(Exception):
    """This message, later: the relay answered, but not yet for this recipient or message (SMTP 4xx to RCPT TO or
    DATA)."""


class PermanentError(Exception):
    """This address will not take the message (SMTP 5xx to RCPT TO or DATA, gateway 4xx)."""


class RelayUnavailable(Exception):
    """The relay takes no message now, whichever it is: no connection, a timeout, TLS or login refused, a 4xx or 421
    before the recipient, the server going away, a gateway's 5xx. Its text names no secret (it is logged)."""


@dataclass(frozen=True)
class Outgoing:
    """A message ready to go: its envelope and its bytes (CRLF lines), serialised once when it is built, so that
    whatever its data does to the e-mail library fails while it is rendered, and the relay gets exactly these."""

    sender: str
    recipient: str
    data: bytes
    smtputf8: bool
    """An address outside ASCII: sent with SMTPUTF8 (refused, for good, by a relay that lacks it)."""


Settle = Callable[[], Awaitable[None]]
"""Awaited by a transport just before it hands its message over (SMTP DATA, the file write, the gateway's POST):
the worker passes the record of the connection's previous message, so that record is written while this message's
envelope goes out, and yet at most one message per connection is ever handed over and not yet recorded."""


async def settled() -> None:
    return None


SEND_ERRORS = (aiosmtplib.SMTPException, OSError, TimeoutError, ValueError)


class Mailer(Protocol):
    # What the worker's outage lines call this transport ("mail relay smtp.example.org:587"): no secrets.
    label: str

    async def send(self, message: Outgoing, key: str, settle: Settle = settled) -> None: ...
    async def probe(self) -> None:
        """Return when the relay would take mail again; raise ``RelayUnavailable`` otherwise. Sends nothing."""

    async def close(self) -> None: ...


class SmsSender(Protocol):
    label: str

    async def send(self, to: str, body: str, key: str) -> None: ...
    async def probe(self) -> None: ...
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


def _write_to_outbox(path: Path, data: bytes) -> None:
    # A directory that cannot be written (full disk, permissions) refuses every message alike: a relay failure.
    try:
        _write_atomically(path, data)
    except OSError as exc:
        raise RelayUnavailable(f"outbox not writable: {type(exc).__name__}: {exc.strerror or exc}") from exc


class OutboxMailer:
    """``./var/outbox/<key>.eml``: the embedded default when no SMTP host is configured."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.label = f"mail outbox {directory}"

    async def send(self, message: Outgoing, key: str, settle: Settle = settled) -> None:
        await settle()
        _write_to_outbox(self.directory / f"{key}.eml", message.data)

    async def probe(self) -> None:
        _write_to_outbox(self.directory / ".probe", b"")

    async def close(self) -> None:
        return None


# SMTP replies to MAIL FROM that concern the message rather than the relay: its size (552) or its parameters (555).
MESSAGE_REFUSED_AT_MAIL_FROM = frozenset({552, 555})


def _reply(exc: aiosmtplib.SMTPResponseException) -> str:
    return f"{exc.code} {exc.message}"


def _relay(stage: str, exc: BaseException) -> RelayUnavailable:
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return RelayUnavailable(f"{stage}: {_reply(exc)}")
    return RelayUnavailable(f"{stage}: {type(exc).__name__}: {exc}")


def classify_send_error(exc: Exception) -> Exception:
    """What a failure of ``send_message`` on an open connection means (the connection itself is ``_connect``'s).

    The recipient's or the message's own answers (RCPT TO, DATA; 552/555 to MAIL FROM: the size or parameters) fail or
    retry that message. Everything before the recipient (MAIL FROM with our sender, EHLO), any 421 ("closing the
    channel") and a connection that goes away concern the relay: the same would happen to every other message."""
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        codes = [r.code for r in exc.recipients]
        text = "; ".join(f"{r.code} {r.message}" for r in exc.recipients)
        if 421 in codes:
            return RelayUnavailable(f"RCPT TO: {text}")
        return PermanentError(text) if all(500 <= c < 600 for c in codes) else TransientError(text)
    if isinstance(exc, aiosmtplib.SMTPSenderRefused):
        if exc.code in MESSAGE_REFUSED_AT_MAIL_FROM:
            return PermanentError(_reply(exc))
        # A 5xx here too: our sender address or our account is refused, which a fixed configuration cures; failing
        # every queued message for good would lose whole mailings to it.
        return _relay("MAIL FROM", exc)
    if isinstance(exc, aiosmtplib.SMTPDataError):
        if exc.code == 421:
            return _relay("DATA", exc)
        return PermanentError(_reply(exc)) if 500 <= exc.code < 600 else TransientError(_reply(exc))
    if isinstance(exc, aiosmtplib.SMTPNotSupported):
        return PermanentError(f"the relay cannot take this message: {exc}")  # e.g. SMTPUTF8 for this address
    if isinstance(exc, ValueError):
        return PermanentError(f"the address cannot be sent: {exc}")  # aiosmtplib's check of the envelope addresses
    # EHLO, AUTH, a 421 or another reply outside a recipient's, a timeout, a dropped connection.
    return _relay("SMTP", exc)


class SmtpMailer:
    """One SMTP connection, opened lazily and reused across messages; reopened after a relay failure."""

    def __init__(self, settings: Settings) -> None:
        assert settings.smtp_host
        self.settings = settings
        self.label = f"mail relay {settings.smtp_host}:{settings.smtp_port}"
        self.sender = parseaddr(settings.smtp_from)[1]
        self.client: aiosmtplib.SMTP | None = None

    async def _connect(self) -> tuple[aiosmtplib.SMTP, bool]:
        """The open connection and True, or a new one (greeting, EHLO, STARTTLS, AUTH) and False."""
        if self.client is not None and self.client.is_connected:
            return self.client, True
        await self._drop()
        s = self.settings
        client = aiosmtplib.SMTP(
            hostname=s.smtp_host,
            port=s.smtp_port,
            start_tls=s.smtp_starttls,
            timeout=30,
            username=s.smtp_username,
            password=s.smtp_password,
        )
        try:
            await client.connect()
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:  # ssl.SSLError is an OSError
            raise _relay("connect", exc) from exc
        self.client = client
        return client, False

    async def send(self, message: Outgoing, key: str, settle: Settle = settled) -> None:
        for fresh_try in (False, True):
            client, reused = await self._connect()
            # Servers close connections that idled (often with a 421 to the next command): a reused connection
            # gets one more try on a new one before the relay counts as down.
            may_retry = reused and not fresh_try
            try:
                await self._envelope(client, message)
            except SEND_ERRORS as exc:
                await self._failed(client, exc, may_retry)
                continue
            except BaseException:
                await self._drop()  # cancelled mid-command: the connection's state is unknown
                raise
            # While MAIL FROM and RCPT TO went back and forth, the previous message's outcome was being recorded;
            # the relay takes this one only once that record is stored.
            try:
                await settle()
            except BaseException:
                await self._drop()  # an open envelope must not meet the next message
                raise
            try:
                await client.data(message.data)
            except SEND_ERRORS as exc:
                await self._failed(client, exc, may_retry)
                continue
            except BaseException:
                await self._drop()
                raise
            return

    async def _envelope(self, client: aiosmtplib.SMTP, message: Outgoing) -> None:
        """MAIL FROM and RCPT TO, with the options ``sendmail`` would give them (SIZE, SMTPUTF8)."""
        if client.is_ehlo_or_helo_needed:
            try:
                await client.ehlo()
            except aiosmtplib.SMTPHeloError:
                if not client.is_connected:
                    raise
                await client.helo()
        options = []
        if client.supports_extension("size"):
            options.append(f"SIZE={len(message.data)}")
        encoding = "ascii"
        if message.smtputf8:
            if not client.supports_extension("smtputf8"):
                raise aiosmtplib.SMTPNotSupported("SMTPUTF8 is not supported by this server")
            options.append("SMTPUTF8")
            encoding = "utf-8"
        await client.mail(message.sender, options=options, encoding=encoding)
        try:
            await client.rcpt(message.recipient, encoding=encoding)
        except aiosmtplib.SMTPRecipientRefused as exc:
            raise aiosmtplib.SMTPRecipientsRefused([exc]) from exc

    async def _failed(self, client: aiosmtplib.SMTP, exc: Exception, may_retry: bool) -> None:
        """Raise what ``exc`` means for the message; return only when the relay failed on a reused connection,
        to try once more on a new one."""
        error = classify_send_error(exc)
        if not isinstance(error, RelayUnavailable):
            # This message's own refusal: end its envelope, so the connection can carry the next one.
            try:
                await client.rset()
            except (aiosmtplib.SMTPException, OSError, TimeoutError):
                await self._drop()
            raise error from exc
        await self._drop()
        if not may_retry:
            raise error from exc

    async def probe(self) -> None:
        """Connect as a send would (EHLO, STARTTLS, AUTH), then MAIL FROM our sender and RSET: every stage that
        concerns the relay rather than a recipient. The connection stays open for the sends that follow."""
        await self._drop()
        client, _reused = await self._connect()
        try:
            await client.mail(self.sender)
            await client.rset()
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            await self._drop()
            raise _relay("MAIL FROM", exc) from exc

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
            except (aiosmtplib.SMTPException, OSError, TimeoutError):
                self.client.close()
        self.client = None


class OutboxSms:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.label = f"SMS outbox {directory}"

    async def send(self, to: str, body: str, key: str) -> None:
        _write_to_outbox(self.directory / f"{key}.sms.json", json.dumps({"to": to, "body": body}).encode())

    async def probe(self) -> None:
        _write_to_outbox(self.directory / ".probe", b"")

    async def close(self) -> None:
        return None


def _gateway_down(status: int) -> bool:
    # The gateway's own trouble (5xx), its rate limit (429) or our credentials (401): not the number's.
    return status >= 500 or status in (401, 429)


class WebhookSms:
    """HTTP POST ``{to, body}`` to the configured gateway. No answer, 5xx, 429 and 401 concern the gateway (the
    channel pauses); another 4xx refuses this message for good."""

    def __init__(self, url: str) -> None:
        self.url = url
        # The URL's path or query may carry the gateway's key: the log lines name scheme, host and port only.
        parts = urlsplit(url)
        self.label = f"SMS gateway {parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")
        self.client = httpx.AsyncClient(timeout=15)

    async def send(self, to: str, body: str, key: str) -> None:
        try:
            response = await self.client.post(self.url, json={"to": to, "body": body}, headers={"Idempotency-Key": key})
        except httpx.TransportError as exc:
            raise RelayUnavailable(f"SMS gateway: {type(exc).__name__}") from exc
        except httpx.HTTPError as exc:
            raise TransientError(f"SMS gateway: {type(exc).__name__}") from exc
        if _gateway_down(response.status_code):
            raise RelayUnavailable(f"SMS gateway answered {response.status_code}")
        if response.status_code >= 400:
            raise PermanentError(f"SMS gateway refused: {response.status_code}")

    async def probe(self) -> None:
        """A HEAD request: any answer but the ones that pause the channel means the gateway is back. Sends nothing."""
        try:
            response = await self.client.head(self.url)
        except httpx.HTTPError as exc:
            raise RelayUnavailable(f"SMS gateway: {type(exc).__name__}") from exc
        if _gateway_down(response.status_code):
            raise RelayUnavailable(f"SMS gateway answered {response.status_code}")

    async def close(self) -> None:
        await self.client.aclose()


def make_mailer(settings: Settings) -> Mailer:
    return SmtpMailer(settings) if settings.smtp_host else OutboxMailer(settings.outbox_dir)


def make_sms(settings: Settings) -> SmsSender:
    return WebhookSms(settings.sms_webhook_url) if settings.sms_webhook_url else OutboxSms(settings.outbox_dir)
