"""A relay that is down pauses the queue instead of failing mail; a recipient's 4xx is retried until the give-up time.

Against real servers on loopback: aiosmtpd answering 421/451/550 where a test wants it, a closed port for a relay
that is down, an HTTP server for the SMS gateway. Time is simulated, never slept: the worker's probe clock is a
counter the test moves on, and a delivery's tries so far are its ``attempts`` in the database.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import pytest
from aiosmtpd.controller import Controller
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY
from sqlalchemy import select, update

from invitelink.app import create_app
from invitelink.config import Settings
from invitelink.db import Database, transaction
from invitelink.models import Contact, Delivery, Mailing, Survey, utcnow
from invitelink.services import accounts, contacts, surveys
from invitelink.services.deliveries import enqueue
from invitelink.services.links import issue_token
from invitelink.worker.queue import retry_delay
from invitelink.worker.runner import Worker
from tests.smtp_server import RecordingHandler, free_port

OWNER, OWNER_PASSWORD = "owner@example.org", "password123"


class Clock:
    """The worker's monotonic clock for its relay probes, moved on by the test."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Relay(RecordingHandler):
    """RecordingHandler that can also refuse MAIL FROM (every message) or DATA with a chosen reply."""

    mail_from: str | None = None
    mail_from_once: str | None = None  # the reply to the next MAIL FROM only (421: the client ends the session)
    data: str | None = None

    async def handle_MAIL(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        if self.mail_from:
            return self.mail_from
        if self.mail_from_once:
            reply, self.mail_from_once = self.mail_from_once, None
            return reply
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.data:
            return self.data
        return await super().handle_DATA(server, session, envelope)


class SmtpOn:
    """A real SMTP server on a chosen port, started and stopped when the test says."""

    def __init__(self, port: int) -> None:
        self.handler = Relay()
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=port)

    def __enter__(self) -> Relay:
        self.controller.start()
        return self.handler

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()


def seed(database: Database, emails: Sequence[str], mobiles: Sequence[str] = ()) -> int:
    """An active survey with one mailing queued to each address and mobile number; returns the survey id."""
    with transaction(database.sessions) as session:
        ws, _ = accounts.create_admin(session, OWNER, OWNER_PASSWORD, "Acme Lab")
        survey, _ = surveys.create_survey(
            session, ws.id, {"title": "Sleep study", "questionnaire_url": "https://q.example.org", "status": "active"}
        )
        mailing = Mailing(survey_id=survey.id, subject="Invitation", body="Hi {{recipient_name}}: {{survey_link}}")
        session.add(mailing)
        session.flush()
        people = [contacts.ContactInput(email=e, name=e) for e in emails]
        people += [contacts.ContactInput(mobile=m, name=m) for m in mobiles]
        for person in people:
            contact = contacts.create_contact(session, survey, person)
            enqueue(session, mailing, contact, issue_token(session, contact, mailing_id=mailing.id))
        return survey.id


def rows(database: Database) -> dict[str, tuple[str, int, str | None]]:
    """Each delivery by its address: (status, attempts, last error)."""
    with database.read_sessions() as session:
        found = session.execute(
            select(Contact.email, Contact.mobile, Delivery.status, Delivery.attempts, Delivery.last_error).join(
                Contact, Contact.id == Delivery.contact_id
            )
        )
        return {email or mobile: (status, attempts, error) for email, mobile, status, attempts, error in found}


def smtp(settings: Settings, port: int, **more: Any) -> Settings:
    return settings.model_copy(
        update={
            "smtp_host": "127.0.0.1",
            "smtp_port": port,
            "smtp_starttls": False,
            "smtp_from": "Lab <lab@example.org>",
            **more,
        }
    )


def worker_lines(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    """The worker's own lines at ``level`` (its progress lines are another matter)."""
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "invitelink.worker" and r.levelno == level and "worker started" not in r.getMessage()
    ]


def relay_up(channel: str = "email") -> float | None:
    return REGISTRY.get_sample_value("invitelink_worker_relay_up", {"channel": channel})


def make_due(database: Database) -> None:
    """Time passes: every queued delivery is due."""
    with transaction(database.sessions) as session:
        session.execute(update(Delivery).where(Delivery.status == "queued").values(due_at=utcnow()))


def set_attempts(database: Database, attempts: int) -> None:
    """The delivery was already tried ``attempts`` times (the retries of that many hours) and is due again."""
    with transaction(database.sessions) as session:
        session.execute(update(Delivery).values(attempts=attempts, due_at=utcnow()))


def test_a_relay_that_is_down_pauses_the_queue_and_costs_no_attempt(
    arun: Any, settings: Settings, database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()  # nothing listens there: connection refused
    addresses = [f"p{i}@example.org" for i in range(20)]
    seed(database, addresses)
    clock = Clock()
    worker = Worker(smtp(settings, port), database, clock=clock)
    caplog.set_level(logging.INFO, logger="invitelink.worker")
    # Ten minutes of outage in steps of a minute: the worker probes with its own backoff (5 s, 10 s, 20 s, …) and
    # claims nothing meanwhile.
    for _ in range(10):
        arun(worker.run_once())
        clock.advance(60)
        make_due(database)
    assert rows(database) == {a: ("queued", 0, None) for a in addresses}
    warnings = worker_lines(caplog, logging.WARNING)
    assert len(warnings) == 1, warnings
    assert f"mail relay 127.0.0.1:{port} is down" in warnings[0]
    assert "Connect" in warnings[0] and "20 deliveries waiting" in warnings[0]
    assert worker_lines(caplog, logging.INFO) == []  # not one line per delivery
    with TestClient(create_app(settings)) as client:  # the worker embedded in serve would share this process
        assert 'invitelink_worker_relay_up{channel="email"} 0.0' in client.get("/metrics").text

    with SmtpOn(port) as relay:
        for _ in range(3):
            clock.advance(300)  # the probe delay's cap
            arun(worker.run_once())
        arun(worker.close())
    assert rows(database) == {a: ("sent", 1, None) for a in addresses}
    assert len(relay.messages) == 20
    back = worker_lines(caplog, logging.INFO)
    assert len(back) == 1 and f"mail relay 127.0.0.1:{port} back after 15 min 0 s" in back[0], back
    assert "deliveries waiting" in back[0]
    assert len(worker_lines(caplog, logging.WARNING)) == 1
    assert relay_up() == 1


def test_a_long_outage_reminds_at_most_every_n_minutes(
    arun: Any, settings: Settings, database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    seed(database, ["ann@example.org", "bob@example.org"])
    clock = Clock()
    worker = Worker(smtp(settings, free_port(), relay_reminder_minutes=30), database, clock=clock)
    caplog.set_level(logging.WARNING, logger="invitelink.worker")
    for _ in range(71 * 6 + 1):  # 71 hours in steps of 10 minutes
        arun(worker.run_once())
        clock.advance(600)
    warnings = worker_lines(caplog, logging.WARNING)
    assert len(warnings) == 1 + 71 * 2  # the first, then one every 30 minutes
    assert "still down after 30 min 0 s" in warnings[1] and "2 deliveries waiting" in warnings[1]
    assert "still down after 2 d 23 h" in warnings[-1]
    assert rows(database) == {a: ("queued", 0, None) for a in ["ann@example.org", "bob@example.org"]}


@pytest.mark.parametrize(
    ("stage", "reply"),
    [
        ("mail_from", "421 4.3.2 service shutting down"),
        ("mail_from", "451 4.3.0 local error, try later"),
        ("mail_from", "550 5.7.1 sender not allowed"),  # our sender, for every message: configuration, not a recipient
        ("rcpt", "421 4.4.5 too many connections"),
        ("data", "421 4.3.2 going away"),
    ],
)
def test_refusals_of_the_relay_itself_pause_instead_of_failing_mail(
    arun: Any, settings: Settings, database: Database, caplog: pytest.LogCaptureFixture, stage: str, reply: str
) -> None:
    addresses = ["ann@example.org", "bob@example.org", "cid@example.org"]
    seed(database, addresses)
    port = free_port()
    clock = Clock()
    caplog.set_level(logging.INFO, logger="invitelink.worker")
    with SmtpOn(port) as relay:
        if stage == "rcpt":
            relay.refuse = dict.fromkeys(addresses, reply)
        else:
            setattr(relay, stage, reply)
        worker = Worker(smtp(settings, port), database, clock=clock)
        arun(worker.run_once())
        clock.advance(5)
        arun(worker.run_once())  # the probe passes MAIL FROM for mail_from's cases only when fixed
        if stage == "mail_from":
            assert rows(database) == {a: ("queued", 0, None) for a in addresses}
        warnings = worker_lines(caplog, logging.WARNING)
        assert len(warnings) == 1 and reply.split()[0] in warnings[0], warnings
        assert relay_up() == 0
        relay.mail_from, relay.data, relay.refuse = None, None, {}
        for _ in range(3):
            clock.advance(300)
            make_due(database)
            arun(worker.run_once())
        arun(worker.close())
    statuses = rows(database)
    assert {s for s, _a, _e in statuses.values()} == {"sent"}
    # None failed; only a message sent just after a passed probe (the relay answered, then refused it) may have
    # counted one try: the rest went back untried.
    assert sum(a for _s, a, _e in statuses.values()) <= len(addresses) + 1
    assert len(worker_lines(caplog, logging.WARNING)) == 1
    assert len([line for line in worker_lines(caplog, logging.INFO) if "back after" in line]) == 1
    assert relay_up() == 1


def test_a_connection_the_relay_closed_while_idle_is_reopened_without_an_outage(
    arun: Any, settings: Settings, database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    seed(database, ["ann@example.org", "bob@example.org"])
    with transaction(database.sessions) as session:
        later = select(Contact.id).where(Contact.email == "bob@example.org").scalar_subquery()
        session.execute(
            update(Delivery).where(Delivery.contact_id == later).values(due_at=utcnow() + timedelta(hours=1))
        )
    port = free_port()
    caplog.set_level(logging.INFO, logger="invitelink.worker")
    with SmtpOn(port) as relay:
        worker = Worker(smtp(settings, port), database)
        arun(worker.run_once())  # ann's message; the worker keeps the connection for the next
        # Meanwhile the relay timed the idle session out: its next command gets a 421, and the session ends.
        relay.mail_from_once = "421 4.4.2 idle timeout, closing"
        make_due(database)
        arun(worker.run_once())
        arun(worker.close())
    assert relay.mail_from_once is None  # the kept connection was tried, then a new one sent the message
    assert len(relay.messages) == 2
    assert rows(database) == {"ann@example.org": ("sent", 1, None), "bob@example.org": ("sent", 1, None)}
    assert worker_lines(caplog, logging.WARNING) == []


def test_a_recipients_4xx_is_retried_past_eight_attempts_until_the_give_up_time(
    arun: Any, settings: Settings, database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    seed(database, ["later@example.org"])
    port = free_port()
    caplog.set_level(logging.INFO, logger="invitelink.worker")
    with SmtpOn(port) as relay:
        relay.refuse = {"later@example.org": "451 4.2.1 mailbox busy"}
        worker = Worker(smtp(settings, port), database)
        # The ninth try (the old code's limit was eight), 3 h 3 min after the first: queued again an hour later.
        set_attempts(database, 8)
        arun(worker.run_once())
        status, attempts, error = rows(database)["later@example.org"]
        assert (status, attempts) == ("queued", 9) and error == "451 4.2.1 mailbox busy"
        with database.read_sessions() as session:
            due = session.scalar(select(Delivery.due_at))
        assert due is not None and timedelta(minutes=59) < due - utcnow() <= timedelta(hours=1)
        # The 77th try, 71 h 3 min after the first: the next falls on the give-up time (72 h), not past it.
        set_attempts(database, 76)
        arun(worker.run_once())
        assert rows(database)["later@example.org"][:2] == ("queued", 77)
        with database.read_sessions() as session:
            due = session.scalar(select(Delivery.due_at))
        assert due is not None and timedelta(minutes=56) < due - utcnow() <= timedelta(minutes=57)
        # The 78th, at the give-up time, fails again: the delivery fails, saying why.
        make_due(database)
        arun(worker.run_once())
        arun(worker.close())
    assert rows(database)["later@example.org"] == (
        "failed",
        78,
        "gave up after 72 h (78 attempts); last error: 451 4.2.1 mailbox busy",
    )
    assert relay.messages == []
    assert worker_lines(caplog, logging.WARNING) == []  # a recipient's refusal is no outage
    assert relay_up() == 1


def test_the_retry_window_is_a_setting_and_retries_back_off_to_an_hour() -> None:
    def schedule(window: timedelta) -> list[timedelta]:
        waits: list[timedelta] = []
        while (wait := retry_delay(len(waits) + 1, window)) is not None:
            waits.append(wait)
        return waits

    waits = schedule(timedelta(hours=72))
    assert [w.total_seconds() / 60 for w in waits[:8]] == [1, 2, 4, 8, 16, 32, 60, 60]
    assert max(waits) == timedelta(hours=1)
    assert sum(waits, timedelta(0)) == timedelta(hours=72)  # the last try falls on the give-up time
    assert len(waits) + 1 == 78
    assert sum(schedule(timedelta(hours=120)), timedelta(0)) == timedelta(hours=120)
    assert [w.total_seconds() / 60 for w in schedule(timedelta(hours=1))] == [1, 2, 4, 8, 16, 29]


def test_a_recipients_5xx_fails_at_once_and_the_relay_stays_up(
    arun: Any, settings: Settings, database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    seed(database, ["gone@example.org", "ann@example.org"])
    port = free_port()
    caplog.set_level(logging.INFO, logger="invitelink.worker")
    with SmtpOn(port) as relay:
        relay.refuse = {"gone@example.org": "550 5.1.1 no such user"}
        worker = Worker(smtp(settings, port), database)
        arun(worker.run_once())
        arun(worker.close())
    assert rows(database) == {
        "gone@example.org": ("failed", 1, "550 5.1.1 no such user"),
        "ann@example.org": ("sent", 1, None),
    }
    warnings = worker_lines(caplog, logging.WARNING)
    assert len(warnings) == 1 and "failed: 550 5.1.1" in warnings[0]  # the delivery's own line, no outage
    assert relay_up() == 1


def test_a_delivery_requeued_after_its_give_up_time_gets_a_fresh_window(
    arun: Any, settings: Settings, database: Database
) -> None:
    survey_id = seed(database, ["later@example.org"])
    port = free_port()
    with SmtpOn(port) as relay:
        relay.refuse = {"later@example.org": "451 4.2.1 mailbox busy"}
        worker = Worker(smtp(settings, port), database)
        set_attempts(database, 77)
        arun(worker.run_once())
        status, _attempts, error = rows(database)["later@example.org"]
        assert status == "failed" and error is not None and error.startswith("gave up after 72 h (78 attempts)")
        with TestClient(create_app(settings)) as client:
            with database.read_sessions() as session:
                workspace_id = session.scalar(select(Survey.workspace_id).where(Survey.id == survey_id))
            token = client.post(
                "/admin/v1/auth/token",
                data={"username": OWNER, "password": OWNER_PASSWORD, "scope": f"workspace:{workspace_id}"},
            ).json()["access_token"]
            requeued = client.post(
                f"/admin/v1/surveys/{survey_id}/deliveries/requeue", headers={"Authorization": f"Bearer {token}"}
            )
        assert requeued.status_code == 200 and requeued.json() == {"requeued": 1}
        assert rows(database)["later@example.org"][:2] == ("queued", 0)
        # Still busy: a fresh window, so the first try after the requeue is retried a minute later, not failed.
        arun(worker.run_once())
        assert rows(database)["later@example.org"][:2] == ("queued", 1)
        relay.refuse = {}
        make_due(database)
        arun(worker.run_once())
        arun(worker.close())
    assert rows(database)["later@example.org"][:2] == ("sent", 2)
    assert len(relay.messages) == 1


class Gateway(BaseHTTPRequestHandler):
    """An SMS gateway that takes every message."""

    received: ClassVar[list[bytes]] = []

    def do_HEAD(self) -> None:
        self.send_response(405)
        self.end_headers()

    def do_POST(self) -> None:
        Gateway.received.append(self.rfile.read(int(self.headers["Content-Length"])))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        return None


def test_an_sms_gateway_that_is_down_pauses_sms_only(
    arun: Any, settings: Settings, database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    seed(database, ["ann@example.org"], ["+4915112345678", "+4915112345679"])
    gateway_port, smtp_port = free_port(), free_port()
    clock = Clock()
    caplog.set_level(logging.INFO, logger="invitelink.worker")
    url = f"http://127.0.0.1:{gateway_port}/send?key=GATEWAY-SECRET"
    with SmtpOn(smtp_port) as relay:
        worker = Worker(smtp(settings, smtp_port, sms_webhook_url=url), database, clock=clock)
        for _ in range(3):
            arun(worker.run_once())
            clock.advance(10)
        # Mail went out; SMS waits, untried, behind one warning that does not show the gateway's key.
        assert rows(database) == {
            "ann@example.org": ("sent", 1, None),
            "+4915112345678": ("queued", 0, None),
            "+4915112345679": ("queued", 0, None),
        }
        warnings = worker_lines(caplog, logging.WARNING)
        assert len(warnings) == 1 and f"SMS gateway http://127.0.0.1:{gateway_port} is down" in warnings[0]
        assert not [line for line in warnings if "SECRET" in line or "key=" in line]
        assert relay_up("sms") == 0 and relay_up("email") == 1

        Gateway.received = []
        server = ThreadingHTTPServer(("127.0.0.1", gateway_port), Gateway)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            clock.advance(300)
            arun(worker.run_once())
            arun(worker.close())
        finally:
            server.shutdown()
            server.server_close()
    assert {s for s, _a, _e in rows(database).values()} == {"sent"}
    assert len(Gateway.received) == 2 and len(relay.messages) == 1
    assert len([line for line in worker_lines(caplog, logging.INFO) if "SMS gateway" in line]) == 1
    assert relay_up("sms") == 1
