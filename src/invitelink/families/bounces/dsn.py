"""Reading a delivery status notification (RFC 3464) as MTAs send them back: which of our messages bounced, for
which address, and whether for good. Only the standard library's ``email`` package: DSNs are plain MIME."""

from __future__ import annotations

import re
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import Message
from email.parser import HeaderParser

_STATUS = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
_MESSAGE_ID = re.compile(r"^Message-ID:\s*(<[^>\s]{1,250}>)", re.IGNORECASE | re.MULTILINE)


@dataclass(frozen=True)
class Bounce:
    message_id: str
    recipient: str | None
    status: str  # e.g. "5.1.1"
    diagnostic: str

    @property
    def permanent(self) -> bool:
        return self.status.startswith("5.")


class NotADsn(ValueError):
    """The body names none of our messages, or gives no delivery status."""


class NotABounce(ValueError):
    """A well-formed notification of something other than a failure (a delay, a successful delivery)."""


def _original_message_id(report: Message) -> str | None:
    for part in report.walk():
        content_type = part.get_content_type()
        if content_type == "message/rfc822":
            payload = part.get_payload()
            inner = payload[0] if isinstance(payload, list) and payload else None
            if isinstance(inner, Message) and inner.get("Message-ID"):
                return str(inner["Message-ID"]).strip()
        elif content_type == "text/rfc822-headers":
            headers = HeaderParser().parsestr(_text(part))
            if headers.get("Message-ID"):
                return str(headers["Message-ID"]).strip()
    return None


def _text(part: Message) -> str:
    raw = part.get_payload(decode=True)
    if isinstance(raw, bytes):
        return raw.decode(part.get_content_charset() or "utf-8", "replace")
    payload = part.get_payload()
    return payload if isinstance(payload, str) else ""


def _status_fields(report: Message) -> tuple[str | None, str | None, str]:
    """Status, Final-Recipient and Diagnostic-Code of the first failed recipient of a message/delivery-status."""
    for part in report.walk():
        if part.get_content_type() != "message/delivery-status":
            continue
        blocks = part.get_payload()
        for block in blocks if isinstance(blocks, list) else []:
            if not isinstance(block, Message) or not block.get("Status"):
                continue
            action = str(block.get("Action", "failed")).strip().lower()
            if action != "failed":
                # "delayed" (the MTA still tries), "delivered", "relayed", "expanded": not a bounce.
                raise NotABounce(f"the notification reports '{action}', not a failure: nothing to record")
            final = str(block.get("Final-Recipient") or block.get("Original-Recipient") or "")
            recipient = final.split(";", 1)[-1].strip() or None
            return str(block["Status"]).strip(), recipient, str(block.get("Diagnostic-Code", "")).strip()
    return None, None, ""


def parse(raw: bytes) -> Bounce:
    """The bounce a DSN reports. Falls back to the text for the non-standard ones (a status code and a quoted
    Message-ID in the body), as some providers send."""
    report = message_from_bytes(raw, policy=policy.compat32)
    message_id = _original_message_id(report)
    status, recipient, diagnostic = _status_fields(report)
    if message_id is None or status is None:
        text = "\n".join(_text(part) for part in report.walk() if part.get_content_maintype() == "text")
        if message_id is None:
            found = _MESSAGE_ID.search(text)
            message_id = found.group(1) if found else None
        if status is None:
            code = _STATUS.search(text)
            status = code.group(0) if code else None
            diagnostic = diagnostic or text.strip()[:500]
        recipient = recipient or (str(report.get("X-Failed-Recipients", "")).strip() or None)
    if message_id is None:
        raise NotADsn("the body quotes no Message-ID: send the whole delivery status notification (RFC 3464)")
    if status is None or not _STATUS.fullmatch(status):
        raise NotADsn("the body gives no delivery status code (like 5.1.1)")
    return Bounce(message_id=message_id, recipient=recipient, status=status, diagnostic=diagnostic[:500])
