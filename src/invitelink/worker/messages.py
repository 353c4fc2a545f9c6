"""Rendering a job into an e-mail or SMS text."""

from __future__ import annotations

import html
import re
import secrets
from dataclasses import dataclass
from email.charset import QP, Charset
from email.header import Header
from email.headerregistry import Address
from email.message import EmailMessage, Message
from email.mime.multipart import MIMEMultipart
from email.mime.nonmultipart import MIMENonMultipart
from email.mime.text import MIMEText
from email.policy import SMTPUTF8, Compat32
from email.utils import format_datetime, formataddr, parseaddr
from functools import cache
from typing import Any
from urllib.parse import urlsplit

from invitelink.config import Settings
from invitelink.models import utcnow
from invitelink.security import derive_key, sign
from invitelink.services.links import personal_link
from invitelink.services.templates import render
from invitelink.services.unsubscribe import unsubscribe_url
from invitelink.worker.queue import Job
from invitelink.worker.transports import Outgoing

DEFAULT_SUBJECT = "Your invitation: {{survey_title}}"
DEFAULT_BODY = "Hello {{recipient_name}},\n\nyou are invited to take part in {{survey_title}}:\n{{survey_link}}\n"
_URL = re.compile(r"(https?://[^\s<]+)")
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
UTF8_QP = Charset("utf-8")
UTF8_QP.body_encoding = QP


class _Compat32Smtp(Compat32):
    """compat32 for SMTP: CRLF lines, a body line starting "From " left as it is (compat32's own default writes
    ">From ", an mbox convention that does not belong on the wire), and short ASCII header values written as they
    are. compat32 folds every value through email.header.Header, which for a value that fits on its line returns
    it unchanged (tests/test_worker.py checks that over generated values) but cost a third of building a message."""

    def fold_binary(self, name: str, value: Any) -> bytes:
        if (
            isinstance(value, str)
            and value.isascii()
            and len(name) + 2 + len(value) <= (self.max_line_length or 0)
            and value.isprintable()
        ):
            return f"{name}: {value}{self.linesep}".encode("ascii")
        return super().fold_binary(name, value)


COMPAT32_SMTP = _Compat32Smtp(linesep="\r\n", mangle_from_=False)


def texts(job: Job, public_url: str) -> tuple[str, str, str]:
    """(subject, text body, link) with the template placeholders filled."""
    link = personal_link(public_url, job.project, job.token)
    values = {
        "recipient_name": job.recipient_name or "",
        "workspace_name": job.workspace_name,
        "survey_title": job.survey_title,
        "survey_link": link,
    }
    subject = render(job.subject or DEFAULT_SUBJECT, values, job.attributes).replace("\n", " ").strip()
    if job.sequence > 0:
        subject = f"Reminder: {subject}"
    template = job.body or DEFAULT_BODY
    body = render(template, values, job.attributes)
    if "survey_link" not in template:
        body = f"{body.rstrip()}\n\n{link}\n"  # a message without its link would be useless
    return subject, body, link


def message_id(settings: Settings, job: Job) -> str:
    """Stable per delivery (and reminder), so a re-send after a crash is recognisable as the same message."""
    host = urlsplit(settings.public_url).hostname or "invitelink.local"
    tag = sign(derive_key(settings.server_secret, "message-id"), f"{job.delivery_id}.{job.sequence}")[:12]
    return f"<il.{job.delivery_id}.{job.sequence}.{tag}@{host}>"


@cache
def _sender(smtp_from: str) -> tuple[str, str]:
    return parseaddr(smtp_from)


def build_email(settings: Settings, job: Job) -> Outgoing:
    subject, body, _link = texts(job, settings.public_url)
    sender_name, sender_address = _sender(settings.smtp_from)
    # RFC 8058 one-click unsubscribe: mail clients POST "List-Unsubscribe=One-Click" to the URL.
    unsubscribe = unsubscribe_url(settings.public_url, settings.server_secret, job.delivery_id)
    body = f"{body.rstrip()}\n\n--\nNo more invitations from {job.workspace_name}: {unsubscribe}\n"
    linked = _URL.sub(lambda m: f'<a href="{m.group(1)}">{m.group(1)}</a>', html.escape(body, quote=False))
    # A line break after each <br>: one line for the whole page would break SMTP's 998-octet line limit.
    page = f"<!doctype html><html><body><p>{linked.replace(chr(10), '<br>' + chr(10))}</p></body></html>\n"
    draft = Draft(
        sender=(job.sender_name or sender_name, sender_address),
        recipient_name=job.recipient_name or "",
        to=job.to,
        body=body,
        page=page,
        headers={
            "Subject": subject,
            "Date": format_datetime(utcnow()),
            "Message-ID": message_id(settings, job),
            "Auto-Submitted": "auto-generated",
            "List-Unsubscribe": f"<{unsubscribe}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        },
    )
    if job.to.isascii() and sender_address.isascii():
        return Outgoing(sender_address, job.to, _plain_mime(draft).as_bytes(policy=COMPAT32_SMTP), smtputf8=False)
    return Outgoing(sender_address, job.to, _modern_mime(draft).as_bytes(policy=SMTPUTF8), smtputf8=True)


@dataclass(frozen=True)
class Draft:
    """What a message says, before it is put into MIME by either builder."""

    sender: tuple[str, str]
    recipient_name: str
    to: str
    headers: dict[str, str]
    body: str
    page: str


def _checked(value: str) -> str:
    # A line break in a header value would start a header of the sender's choosing. The compat32 classes write a
    # value as given, and split it wherever str.splitlines() does (\v, \f, \x1c-\x1e, \x85, \u2028, \u2029 too),
    # so any control character is refused here: the message fails alone, as an unbuildable one.
    if _CONTROL.search(value):
        raise ValueError("a header value contains a control character or a line break")
    return value


def _plain_mime(draft: Draft) -> Message:
    """The message through the compat32 MIME classes, for ASCII addresses (nearly every message): they write
    headers as given where the modern API parses each one through its header registry, which cost 1.7 ms of
    the worker's time per message against 0.5 ms here. Non-ASCII names and subjects are RFC 2047 encoded; a body
    is 7-bit when it is ASCII in short lines and quoted-printable otherwise."""
    # A boundary of our own: left to the generator, it is chosen by compiling a new regular expression for every
    # message to search the parts for it. Random 96 bits after "=_", which quoted-printable text cannot contain
    # ("=" is written "=3D") and a 7-bit body could only contain by guessing them.
    message = MIMEMultipart("alternative", boundary=f"=_{secrets.token_hex(12)}")
    message["From"] = _checked(formataddr(draft.sender, charset="utf-8"))
    recipient = formataddr((draft.recipient_name, draft.to), charset="utf-8") if draft.recipient_name else draft.to
    message["To"] = _checked(recipient)
    for name, value in draft.headers.items():
        _checked(value)
        message[name] = value if value.isascii() else Header(value, "utf-8").encode()
    message.attach(_text(draft.body, "plain"))
    message.attach(_text(draft.page, "html"))
    return message


def _text(content: str, subtype: str) -> MIMENonMultipart:
    # 7bit only for ASCII in short lines; quoted-printable otherwise (SMTP lines stop at 998 octets).
    if content.isascii() and all(len(line) <= 78 for line in content.splitlines()):
        return MIMEText(content, subtype, "us-ascii")
    part = MIMENonMultipart("text", subtype)
    part.set_payload(content, UTF8_QP)
    return part


def _address(name: str, address: str) -> Address:
    # By its parts: Address(addr_spec=...) refuses a non-ASCII local part even under the SMTPUTF8 policy.
    local, _at, domain = address.rpartition("@")
    return Address(name, username=local, domain=domain)


def _modern_mime(draft: Draft) -> EmailMessage:
    """The message through the modern API, for internationalised addresses (sent with SMTPUTF8). Address objects,
    not formataddr, which refuses a non-ASCII address: before, such a message could not be built at all."""
    message = EmailMessage(policy=SMTPUTF8)
    message["From"] = _address(*draft.sender)
    message["To"] = _address(draft.recipient_name, draft.to)
    for name, value in draft.headers.items():
        message[name] = value
    message.set_content(draft.body)
    message.add_alternative(draft.page, subtype="html")
    return message


def build_sms(settings: Settings, job: Job) -> str:
    _subject, body, _link = texts(job, settings.public_url)
    return body.strip()
