"""Rendering a job into an e-mail or SMS text."""

from __future__ import annotations

import html
import re
from email.message import EmailMessage
from email.utils import format_datetime, formataddr, parseaddr
from urllib.parse import urlsplit

from invitelink.config import Settings
from invitelink.models import utcnow
from invitelink.security import derive_key, sign
from invitelink.services.links import personal_link
from invitelink.services.templates import render
from invitelink.services.unsubscribe import unsubscribe_url
from invitelink.worker.queue import Job

DEFAULT_SUBJECT = "Your invitation: {{survey_title}}"
DEFAULT_BODY = "Hello {{recipient_name}},\n\nyou are invited to take part in {{survey_title}}:\n{{survey_link}}\n"
_URL = re.compile(r"(https?://[^\s<]+)")


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


def build_email(settings: Settings, job: Job) -> EmailMessage:
    subject, body, _link = texts(job, settings.public_url)
    sender_name, sender_address = parseaddr(settings.smtp_from)
    message = EmailMessage()
    message["From"] = formataddr((job.sender_name or sender_name, sender_address))
    message["To"] = formataddr((job.recipient_name, job.to)) if job.recipient_name else job.to
    message["Subject"] = subject
    message["Date"] = format_datetime(utcnow())
    message["Message-ID"] = message_id(settings, job)
    message["Auto-Submitted"] = "auto-generated"
    # RFC 8058 one-click unsubscribe: mail clients POST "List-Unsubscribe=One-Click" to the URL.
    unsubscribe = unsubscribe_url(settings.public_url, settings.server_secret, job.delivery_id)
    message["List-Unsubscribe"] = f"<{unsubscribe}>"
    message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    body = f"{body.rstrip()}\n\n--\nNo more invitations from {job.workspace_name}: {unsubscribe}\n"
    message.set_content(body)
    linked = _URL.sub(lambda m: f'<a href="{m.group(1)}">{m.group(1)}</a>', html.escape(body, quote=False))
    message.add_alternative(
        f"<!doctype html><html><body><p>{linked.replace(chr(10), '<br>')}</p></body></html>", subtype="html"
    )
    return message


def build_sms(settings: Settings, job: Job) -> str:
    _subject, body, _link = texts(job, settings.public_url)
    return body.strip()
