"""A real SMTP server on loopback (aiosmtpd) that records what it accepts and can refuse chosen recipients."""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class RecordingHandler:
    messages: list[EmailMessage] = field(default_factory=list)
    recipients: list[list[str]] = field(default_factory=list)  # each accepted message's envelope recipients
    sessions: set[int] = field(default_factory=set)  # the SMTP sessions (connections) that carried a message
    # recipient address -> SMTP reply to RCPT TO, e.g. "451 4.3.0 try later"
    refuse: dict[str, str] = field(default_factory=dict)

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: Any) -> str:
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(message_from_bytes(envelope.content, policy=policy.default))
        self.recipients.append(list(envelope.rcpt_tos))
        self.sessions.add(id(session))
        return "250 Message accepted"

    @property
    def connections(self) -> int:
        return len(self.sessions)


class SmtpSink:
    def __init__(self, *, smtputf8: bool = False) -> None:
        self.handler = RecordingHandler()
        self.port = free_port()
        # SMTPUTF8 (internationalised addresses) only when asked for, as many real relays are configured.
        self.controller = Controller(
            self.handler, hostname="127.0.0.1", port=self.port, enable_SMTPUTF8=smtputf8, decode_data=False
        )

    def __enter__(self) -> SmtpSink:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()

    @property
    def messages(self) -> list[EmailMessage]:
        return self.handler.messages
