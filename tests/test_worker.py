"""The delivery worker against a real SMTP server on loopback, the file outbox, leases and retries."""

from __future__ import annotations

import asyncio
import email.policy
import random
import string
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import compat32
from typing import Any, cast

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update

from invitelink.app import create_app
from invitelink.config import Settings
from invitelink.db import Database, transaction
from invitelink.models import Contact, Delivery, Event, Mailing, Participation, Suppression, Survey, utcnow
from invitelink.services import accounts, contacts, events, surveys
from invitelink.services.deliveries import enqueue
from invitelink.services.links import issue_token
from invitelink.worker import queue
from invitelink.worker.messages import COMPAT32_SMTP, build_email
from invitelink.worker.runner import Worker
from invitelink.worker.transports import Outgoing, SmtpMailer
from tests.smtp_server import RecordingHandler, SmtpSink, free_port


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    with SmtpSink() as s:
        yield s


def seed(database: Database, addresses: list[str], *, status: str = "active", body: str = "") -> tuple[int, str]:
    """A survey with one mailing queued to each address; returns (survey id, project)."""
    with transaction(database.sessions) as session:
        ws, _ = accounts.create_admin(session, f"o{len(addresses)}@example.org", "password123", "Acme Lab")
        survey, _ = surveys.create_survey(
            session, ws.id, {"title": "Sleep study", "questionnaire_url": "https://q.example.org", "status": "active"}
        )
        survey.status = status
        mailing = Mailing(
            survey_id=survey.id,
            subject="Invitation to {{survey_title}}",
            body=body or "Hi {{recipient_name}} from {{workspace_name}}: {{survey_link}}",
        )
        session.add(mailing)
        session.flush()
        for i, address in enumerate(addresses):
            contact = contacts.create_contact(session, survey, contacts.ContactInput(email=address, name=f"P{i}"))
            enqueue(session, mailing, contact, issue_token(session, contact, mailing_id=mailing.id))
        return survey.id, survey.project


def statuses(database: Database) -> dict[str, str]:
    with database.read_sessions() as session:
        rows = session.execute(select(Contact.email, Delivery.status).join(Contact, Contact.id == Delivery.contact_id))
        return {email: status for email, status in rows}


def smtp_settings(settings: Settings, sink: SmtpSink) -> Settings:
    return settings.model_copy(
        update={
            "smtp_host": "127.0.0.1",
            "smtp_port": sink.port,
            "smtp_starttls": False,
            "smtp_from": "Lab <lab@example.org>",
        }
    )


def test_mail_reaches_a_real_smtp_server_with_the_personal_link(
    arun: Any, settings: Settings, database: Database, sink: SmtpSink
) -> None:
    _sid, project = seed(database, ["ann@example.org", "bob@example.org"])
    worker = Worker(smtp_settings(settings, sink), database)
    assert arun(worker.run_once()) == 2
    arun(worker.close())
    assert sorted(m["To"] for m in sink.messages) == ["P0 <ann@example.org>", "P1 <bob@example.org>"]
    message = next(m for m in sink.messages if "ann@" in m["To"])
    assert message["Subject"] == "Invitation to Sleep study"
    assert message["From"] == "Lab <lab@example.org>"
    assert message["Date"] and message["Message-ID"].startswith("<il.")
    text = cast(EmailMessage, message.get_body(("plain",))).get_content()
    html = cast(EmailMessage, message.get_body(("html",))).get_content()
    with database.read_sessions() as session:
        code = session.scalar(
            select(Delivery).join(Contact, Contact.id == Delivery.contact_id).where(Contact.email == "ann@example.org")
        )
        assert code is not None and code.message_id == message["Message-ID"]
    link_prefix = f"http://testserver/{project}/?d="
    assert f"Hi P0 from Acme Lab: {link_prefix}" in text
    assert f'<a href="{link_prefix}' in html
    assert statuses(database) == {"ann@example.org": "sent", "bob@example.org": "sent"}


def test_without_smtp_mail_goes_to_the_outbox(arun: Any, settings: Settings, database: Database) -> None:
    seed(database, ["ann@example.org"])
    worker = Worker(settings, database)
    arun(worker.run_once())
    files = list((settings.var_dir / "outbox").glob("*.eml"))
    assert len(files) == 1
    assert b"To: P0 <ann@example.org>" in files[0].read_bytes()
    assert statuses(database) == {"ann@example.org": "sent"}


def test_4xx_is_retried_with_backoff_and_5xx_fails(
    arun: Any, settings: Settings, database: Database, sink: SmtpSink
) -> None:
    seed(database, ["ok@example.org", "later@example.org", "gone@example.org"])
    sink.handler.refuse = {"later@example.org": "451 4.3.0 greylisted", "gone@example.org": "550 5.1.1 no such user"}
    worker = Worker(smtp_settings(settings, sink), database)
    arun(worker.run_once())
    assert statuses(database) == {"ok@example.org": "sent", "later@example.org": "queued", "gone@example.org": "failed"}
    with database.read_sessions() as session:
        later = session.scalar(select(Delivery).join(Contact).where(Contact.email == "later@example.org"))
        assert later is not None
        assert later.attempts == 1 and "451" in (later.last_error or "")
        assert later.due_at > utcnow() + timedelta(seconds=20)  # backed off, not due at once
    # Not due yet: another round sends nothing.
    assert arun(worker.run_once()) == 0
    # Once due and accepted, it is sent.
    sink.handler.refuse = {}
    with transaction(database.sessions) as session:
        session.execute(update(Delivery).where(Delivery.status == "queued").values(due_at=utcnow()))
    arun(worker.run_once())
    arun(worker.close())
    assert statuses(database)["later@example.org"] == "sent"
    assert sorted(m["To"] for m in sink.messages) == ["P0 <ok@example.org>", "P1 <later@example.org>"]


def test_smtp_down_keeps_the_delivery_queued_without_using_an_attempt(
    arun: Any, settings: Settings, database: Database
) -> None:
    seed(database, ["ann@example.org"])
    down = settings.model_copy(update={"smtp_host": "127.0.0.1", "smtp_port": free_port(), "smtp_starttls": False})
    arun(Worker(down, database).run_once())
    with database.read_sessions() as session:
        delivery = session.scalar(select(Delivery))
        assert delivery is not None
        # Given back untried (tests/test_smtp_outage.py: the pause, the probes, the log lines).
        assert (delivery.status, delivery.attempts, delivery.locked_until) == ("queued", 0, None)


def test_draft_and_closed_surveys_hold_their_deliveries(arun: Any, settings: Settings, database: Database) -> None:
    survey_id, _ = seed(database, ["ann@example.org"], status="draft")
    worker = Worker(settings, database)
    assert arun(worker.run_once()) == 0
    for status, expected in (("closed", 0), ("active", 1)):
        with transaction(database.sessions) as session:
            session.execute(update(Survey).where(Survey.id == survey_id).values(status=status))
        assert arun(worker.run_once()) == expected


def test_suppressed_addresses_are_skipped(arun: Any, settings: Settings, database: Database) -> None:
    seed(database, ["ann@example.org", "bob@example.org"])
    with transaction(database.sessions) as session:
        ws_id = session.scalar(select(Survey.workspace_id))
        session.add(Suppression(workspace_id=ws_id, address="bob@example.org"))
    arun(Worker(settings, database).run_once())
    assert statuses(database) == {"ann@example.org": "sent", "bob@example.org": "skipped"}


def test_an_expired_lease_goes_back_to_the_queue(arun: Any, settings: Settings, database: Database) -> None:
    seed(database, ["ann@example.org"])
    with transaction(database.sessions) as session:
        jobs = queue.claim(session, "crashed-worker", 10, timedelta(minutes=5))
    assert len(jobs) == 1
    # Another worker does not take a leased row...
    with transaction(database.sessions) as session:
        assert queue.claim(session, "other", 10, timedelta(minutes=5)) == []
    # ...until the lease expires (the first worker died).
    with transaction(database.sessions) as session:
        session.execute(update(Delivery).values(locked_until=utcnow() - timedelta(seconds=1)))
    worker = Worker(settings, database)
    assert arun(worker.run_once()) == 1
    assert statuses(database) == {"ann@example.org": "sent"}
    # The crashed worker's late outcome does not overwrite the newer one.
    with transaction(database.sessions) as session:
        queue.mark_failed(session, jobs[0].delivery_id, "crashed-worker", "late")
    assert statuses(database) == {"ann@example.org": "sent"}


def test_concurrent_claims_never_share_a_delivery(arun: Any, settings: Settings, database: Database) -> None:
    addresses = [f"p{i}@example.org" for i in range(60)]
    seed(database, addresses)
    claimed: dict[str, list[int]] = {}
    barrier = threading.Barrier(3)

    def claimer(name: str) -> None:
        barrier.wait()
        mine: list[int] = []
        while True:
            with transaction(database.sessions) as session:
                jobs = queue.claim(session, name, 7, timedelta(minutes=5))
            if not jobs:
                break
            mine += [j.delivery_id for j in jobs]
        claimed[name] = mine

    threads = [threading.Thread(target=claimer, args=(f"w{i}",)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    everything = [d for ids in claimed.values() for d in ids]
    assert len(everything) == len(set(everything)) == 60


def test_release_gives_unsent_jobs_back_without_costing_an_attempt(
    arun: Any, settings: Settings, database: Database
) -> None:
    seed(database, ["ann@example.org", "bob@example.org"])
    worker = Worker(settings, database)
    stop = asyncio.Event()
    stop.set()  # stop before the first send: the whole claimed batch goes back
    assert arun(worker.run_once(stop)) == 2
    with database.read_sessions() as session:
        rows = session.scalars(select(Delivery)).all()
        assert {(d.status, d.attempts, d.locked_until) for d in rows} == {("queued", 0, None)}


def test_reminders_go_to_those_who_have_not_completed(
    arun: Any, settings: Settings, database: Database, sink: SmtpSink
) -> None:
    seed(database, ["done@example.org", "pending@example.org", "reported@example.org"])
    with transaction(database.sessions) as session:
        session.execute(update(Mailing).values(reminder_days=3))
    worker = Worker(smtp_settings(settings, sink), database)
    assert arun(worker.run_once()) == 3
    with database.read_sessions() as session:
        reminders = session.execute(
            select(Contact.email, Delivery.due_at, Delivery.token_id).join(Contact).where(Delivery.sequence == 1)
        ).all()
    assert sorted(r.email for r in reminders) == ["done@example.org", "pending@example.org", "reported@example.org"]
    for reminder in reminders:
        assert timedelta(days=3) - timedelta(minutes=1) < reminder.due_at - utcnow() <= timedelta(days=3)
    assert arun(worker.run_once()) == 0  # not due yet
    done_token = next(r.token_id for r in reminders if r.email == "done@example.org")
    with transaction(database.sessions) as session:
        survey_id = session.scalar(select(Mailing.survey_id))
        session.add(Participation(survey_id=survey_id, token_id=done_token, status="completed"))
        # A completion the browser reported on a survey that waits for the questionnaire's confirmation.
        reported_token = next(r.token_id for r in reminders if r.email == "reported@example.org")
        session.add(
            Participation(survey_id=survey_id, token_id=reported_token, status="started", reported_status="completed")
        )
        session.execute(update(Delivery).where(Delivery.sequence == 1).values(due_at=utcnow()))
    assert arun(worker.run_once()) == 1  # the completed and the reported participants' reminders are skipped
    arun(worker.close())
    reminder_mail = sink.messages[-1]
    assert reminder_mail["To"] == "P1 <pending@example.org>"
    assert reminder_mail["Subject"] == "Reminder: Invitation to Sleep study"
    with database.read_sessions() as session:
        rows = dict(
            session.execute(select(Contact.email, Delivery.status).join(Contact).where(Delivery.sequence == 1))
            .tuples()
            .all()
        )
        assert rows == {"done@example.org": "skipped", "pending@example.org": "sent", "reported@example.org": "skipped"}
        # A reminder does not schedule another one.
        assert session.scalar(select(func.count()).select_from(Delivery).where(Delivery.sequence > 1)) == 0


def test_one_click_unsubscribe_suppresses_the_address(
    arun: Any, settings: Settings, database: Database, sink: SmtpSink
) -> None:
    seed(database, ["leave@example.org"])
    worker = Worker(smtp_settings(settings, sink), database)
    arun(worker.run_once())
    message = sink.messages[0]
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    url = message["List-Unsubscribe"].strip("<>")
    assert url.startswith("http://testserver/unsubscribe?u=") and "leave@" not in url
    assert url in cast(EmailMessage, message.get_body(("plain",))).get_content()
    path = url.removeprefix("http://testserver")
    with TestClient(create_app(settings)) as client:
        form = client.get(path)  # a link scanner's GET changes nothing
        assert form.status_code == 200 and "<form method=post" in form.text
        with database.read_sessions() as session:
            assert session.scalar(select(func.count()).select_from(Suppression)) == 0
        tampered = path[:-1] + ("0" if path[-1] != "0" else "1")
        assert client.post(tampered, data={"List-Unsubscribe": "One-Click"}).status_code == 404
        for _ in range(2):  # idempotent
            done = client.post(path, data={"List-Unsubscribe": "One-Click"})
            assert done.status_code == 200 and "Unsubscribed" in done.text
    with database.read_sessions() as session:
        assert session.scalars(select(Suppression.address)).all() == ["leave@example.org"]
    # The next mailing to that address is skipped at claim.
    with transaction(database.sessions) as session:
        contact = session.scalar(select(Contact))
        assert contact is not None
        mailing = Mailing(survey_id=contact.survey_id, subject="Again")
        session.add(mailing)
        session.flush()
        enqueue(session, mailing, contact, issue_token(session, contact, mailing_id=mailing.id))
    assert arun(worker.run_once()) == 0
    arun(worker.close())
    assert len(sink.messages) == 1


def test_names_subjects_and_bodies_outside_ascii_arrive_intact(
    arun: Any, settings: Settings, database: Database
) -> None:
    """Messages to ASCII addresses are built with the compat32 MIME classes (fast), the rest with the modern API
    (SMTPUTF8): both must carry non-ASCII names, subjects and bodies through to the receiving server."""
    seed(database, ["jose@example.org", "josé@example.org"], body="Grüße, {{recipient_name}}: {{survey_link}}")
    with database.sessions() as session, session.begin():
        session.execute(update(Contact).values(name="Zoë Ørsted"))
        session.execute(update(Mailing).values(subject="Einladung zur Umfrage: {{survey_title}} ✓"))
    with SmtpSink(smtputf8=True) as sink:
        worker = Worker(smtp_settings(settings, sink), database)
        assert arun(worker.run_once()) == 2
        arun(worker.close())
    assert statuses(database) == {"jose@example.org": "sent", "josé@example.org": "sent"}
    assert sorted(sink.handler.recipients) == [["jose@example.org"], ["josé@example.org"]]
    assert len(sink.messages) == 2

    def utf8(text: str) -> str:
        # The parser reads raw UTF-8 headers (an SMTPUTF8 message's) as surrogate escapes; RFC 2047 ones decode.
        return text.encode("utf-8", "surrogateescape").decode("utf-8")

    for message in sink.messages:
        assert utf8(message["Subject"]) == "Einladung zur Umfrage: Sleep study ✓"
        assert utf8(message["To"].addresses[0].display_name) == "Zoë Ørsted"
        text = cast(EmailMessage, message.get_body(("plain",))).get_content()
        html = cast(EmailMessage, message.get_body(("html",))).get_content()
        assert utf8(text).startswith("Grüße, Zoë Ørsted: http://") and "Grüße" in utf8(html)


def test_connections_send_in_parallel_and_each_message_once(
    arun: Any, settings: Settings, database: Database, sink: SmtpSink
) -> None:
    addresses = [f"p{i}@example.org" for i in range(25)]
    seed(database, addresses)
    worker = Worker(smtp_settings(settings, sink).model_copy(update={"smtp_connections": 3}), database)
    assert len(worker.mailers) == 3
    assert arun(worker.run_once()) == 25
    arun(worker.close())
    assert sorted(m["To"].addresses[0].addr_spec for m in sink.messages) == sorted(addresses)
    assert set(statuses(database).values()) == {"sent"}
    assert sink.handler.connections == 3  # every connection carried messages


class RefusesSecondConnection(RecordingHandler):
    """A relay that takes at most one connection from this client at a time: MAIL FROM on any other session gets
    421, as relays with a per-client connection cap answer."""

    def __init__(self) -> None:
        super().__init__()
        self.first: int | None = None

    async def handle_MAIL(self, server: Any, session: Any, envelope: Any, address: str, mail_options: Any) -> str:
        if self.first is None:
            self.first = id(session)
        if id(session) != self.first:
            return "421 4.7.0 too many connections from you"
        envelope.mail_from = address
        return "250 OK"


def test_a_relay_refusing_one_connection_sends_nothing_twice(arun: Any, settings: Settings, database: Database) -> None:
    """One connection meets the relay down (421) while the others are sending: only messages no connection has
    taken go back to the queue. Before, the messages then in flight on the other connections went back too, were
    accepted all the same, and stayed queued, to be sent again."""
    addresses = [f"q{i}@example.org" for i in range(30)]
    seed(database, addresses)
    sink = SmtpSink()
    sink.handler = sink.controller.handler = RefusesSecondConnection()
    with sink:
        worker = Worker(smtp_settings(settings, sink).model_copy(update={"smtp_connections": 3}), database)
        arun(worker.run_once())
        arun(worker.close())
        accepted = {m["Message-ID"] for m in sink.messages}
    assert accepted, "the first connection sent"
    with database.read_sessions() as session:
        recorded = set(session.scalars(select(Delivery.message_id).where(Delivery.status == "sent")))
    assert accepted == recorded  # every message the relay took is recorded as sent, none left to go again
    assert worker.relays["email"].paused


def test_header_and_body_edge_cases_arrive_as_written(
    arun: Any, settings: Settings, database: Database, sink: SmtpSink
) -> None:
    """A body line starting "From " is not turned into ">From " (compat32's mbox habit); a line longer than SMTP's
    998 octets arrives whole (quoted-printable); a name with a vertical tab, which compat32 would split into a
    header of its own, fails that message alone."""
    long_line = "x" * 1500
    seed(database, ["a@example.org", "b@example.org"], body="From today on: {{survey_link}}\n" + long_line)
    with database.sessions() as session, session.begin():
        session.execute(update(Contact).where(Contact.email == "b@example.org").values(name="X\x0bReply-To: e@x.org"))
    worker = Worker(smtp_settings(settings, sink), database)
    assert arun(worker.run_once()) == 2
    arun(worker.close())
    assert statuses(database) == {"a@example.org": "sent", "b@example.org": "failed"}
    (message,) = sink.messages
    assert "Reply-To" not in message
    text = cast(EmailMessage, message.get_body(("plain",))).get_content()
    assert text.startswith("From today on: http://") and long_line in text


def test_short_ascii_headers_are_written_as_compat32_would_fold_them() -> None:
    """The SMTP policy writes a short printable ASCII value as it is, skipping compat32's folding: for every such
    value, and for longer ones (which still go through the folding), the bytes must be compat32's own."""
    reference = compat32.clone(linesep="\r\n", mangle_from_=False)
    rng = random.Random(7)
    alphabet = string.printable[:-5] + "  =?_"  # printable ASCII with runs of spaces, no tab or line break
    for _ in range(5000):
        name = rng.choice(["Subject", "To", "From", "Message-ID", "List-Unsubscribe-Post", "X"])
        value = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 100)))
        assert COMPAT32_SMTP.fold_binary(name, value) == reference.fold_binary(name, value), (name, value)
    for value in ["tab\there", "trailing  ", "  leading", "x" * 200, "Grüße"]:
        assert COMPAT32_SMTP.fold_binary("Subject", value) == reference.fold_binary("Subject", value), value


def test_each_message_has_a_boundary_of_its_own_outside_its_parts(settings: Settings) -> None:
    """The multipart boundary is chosen per message, not by the generator searching the parts for a free one: it
    must differ between messages and delimit exactly the two parts, whatever the body holds."""
    job = queue.Job(
        delivery_id=1, channel="email", sequence=0, attempts=0, to="p@example.org", recipient_name="P",
        subject="Hi", body="--=_ lines that look like a boundary\n--=_\n{{survey_link}}", sender_name="",
        token="TOKEN", project="study", survey_title="Study", workspace_name="Lab",
    )  # fmt: skip
    boundaries = set()
    for _ in range(20):
        message = message_from_bytes(build_email(settings, job).data, policy=email.policy.SMTP)
        boundary = message.get_boundary()
        assert boundary is not None
        boundaries.add(boundary)
        parts = [part.get_content_type() for part in message.iter_parts()]
        assert parts == ["text/plain", "text/html"]
        text = cast(EmailMessage, message.get_body(("plain",))).get_content().replace("\r\n", "\n")
        assert text.startswith("--=_ lines that look like a boundary\n--=_\nhttp")
    assert len(boundaries) == 20


def test_outcome_events_from_the_claim_match_the_stored_delivery(
    arun: Any, settings: Settings, database: Database, sink: SmtpSink
) -> None:
    """The worker writes a delivery's event from what it read when it claimed the delivery, without reading it
    again: every field must be what the database holds after the outcome, as the event of any other writer (which
    reads the row) would say it. Sent and failed, with metadata, a uid, a mobile number and an anonymous contact."""
    seed(database, ["ok@example.org", "gone@example.org", "anon@example.org"])
    with database.sessions() as session, session.begin():
        session.execute(update(Mailing).values(meta={"order": "4711"}))
        session.execute(update(Contact).where(Contact.email == "ok@example.org").values(uid="u-1", mobile="+4915100"))
        session.execute(update(Contact).where(Contact.email == "anon@example.org").values(anonymous=True))
    sink.handler.refuse = {"gone@example.org": "550 5.1.1 no such user"}
    worker = Worker(smtp_settings(settings, sink), database)
    assert arun(worker.run_once()) == 3
    arun(worker.close())
    with database.read_sessions() as session:
        written = {e.payload["data"]["delivery_id"]: e.payload for e in session.scalars(select(Event))}
    assert {p["type"] for p in written.values()} == {"delivery.sent", "delivery.failed"}
    assert len(written) == 3
    for delivery_id, payload in written.items():
        with database.sessions() as check:
            events.delivery_changed(check, delivery_id, payload["type"])  # reads the row, as other writers do
            newest = check.scalars(select(Event).order_by(Event.id.desc()).limit(1)).one()
            assert newest.payload["data"] == payload["data"]
            check.rollback()
    by_status = {p["data"]["status"]: p["data"] for p in written.values()}
    assert by_status["failed"]["error"] and by_status["failed"]["message_id"] is None
    assert by_status["sent"]["metadata"] == {"order": "4711"}


class ChecksRecordsAtData(RecordingHandler):
    """A relay that, on each connection, looks up the messages it took before on that connection: when a new
    envelope arrives (RCPT TO), and when it is about to take the new message (DATA)."""

    def __init__(self, database: Database) -> None:
        super().__init__()
        self.database = database
        self.taken: dict[int, list[str]] = {}  # session -> Message-IDs it took
        self.unrecorded_at_data = 0  # taken messages not yet recorded when the relay took another
        self.unrecorded_at_rcpt = 0  # the same when a new envelope began: the record and the envelope overlap

    def _unrecorded(self, session: Any) -> int:
        taken = self.taken.get(id(session), [])
        with self.database.read_sessions() as db:
            recorded = db.scalar(
                select(func.count())
                .select_from(Delivery)
                .where(Delivery.message_id.in_(taken), Delivery.status == "sent")
            )
        return len(taken) - int(recorded or 0)

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: Any) -> str:
        self.unrecorded_at_rcpt += self._unrecorded(session)
        return await super().handle_RCPT(server, session, envelope, address, rcpt_options)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.unrecorded_at_data += self._unrecorded(session)
        answer = await super().handle_DATA(server, session, envelope)
        self.taken.setdefault(id(session), []).append(str(self.messages[-1]["Message-ID"]))
        return answer


def test_a_message_is_recorded_while_the_next_envelope_goes_out_and_before_the_relay_takes_it(
    arun: Any, settings: Settings, database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each connection records a message's outcome while the next message's MAIL FROM and RCPT TO go out, and the
    relay gets the next DATA only once that record is stored: so a crash can make the next worker repeat at most one
    message per connection. Outcome records are slowed down here, so that taking a message before its predecessor's
    record was stored would be seen."""
    record = queue.record_outcome

    def slow_record(*args: Any, **kwargs: Any) -> None:
        time.sleep(0.02)
        record(*args, **kwargs)

    monkeypatch.setattr(queue, "record_outcome", slow_record)
    addresses = [f"r{i}@example.org" for i in range(24)]
    seed(database, addresses)
    sink = SmtpSink()
    handler = ChecksRecordsAtData(database)
    sink.handler = sink.controller.handler = handler
    with sink:
        worker = Worker(smtp_settings(settings, sink).model_copy(update={"smtp_connections": 3}), database)
        assert arun(worker.run_once()) == 24
        arun(worker.close())
    assert set(statuses(database).values()) == {"sent"}
    assert len(handler.messages) == 24
    assert handler.unrecorded_at_data == 0
    assert handler.unrecorded_at_rcpt > 0  # the records did overlap the next envelopes


class RefusesSomeData(RecordingHandler):
    """Refuses DATA (554) for messages to the given recipients, after accepting their RCPT TO."""

    def __init__(self, refuse_data: set[str]) -> None:
        super().__init__()
        self.refuse_data = refuse_data

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if set(envelope.rcpt_tos) & self.refuse_data:
            return "554 5.7.1 message rejected"
        return await super().handle_DATA(server, session, envelope)


def test_one_connection_carries_on_after_refusals_at_rcpt_and_at_data(
    arun: Any, settings: Settings, database: Database
) -> None:
    """The worker runs the SMTP transaction itself (MAIL FROM, RCPT TO, then DATA once the previous record is
    stored): a refused recipient and a refused message fail alone, and the envelope is reset so the same connection
    takes the messages after them."""
    seed(database, ["a@example.org", "norcpt@example.org", "b@example.org", "nodata@example.org", "c@example.org"])
    sink = SmtpSink()
    handler = RefusesSomeData({"nodata@example.org"})
    handler.refuse = {"norcpt@example.org": "550 5.1.1 no such user"}
    sink.handler = sink.controller.handler = handler
    with sink:
        worker = Worker(smtp_settings(settings, sink).model_copy(update={"smtp_connections": 1}), database)
        assert arun(worker.run_once()) == 5
        arun(worker.close())
    assert statuses(database) == {
        "a@example.org": "sent",
        "norcpt@example.org": "failed",
        "b@example.org": "sent",
        "nodata@example.org": "failed",
        "c@example.org": "sent",
    }
    assert [m["To"].addresses[0].addr_spec for m in handler.messages] == [
        "a@example.org",
        "b@example.org",
        "c@example.org",
    ]
    assert handler.connections == 1  # the refusals did not cost the connection
    with database.read_sessions() as session:
        rows = session.execute(select(Contact.email, Delivery.last_error).join(Contact)).all()
        errors = {email: error for email, error in rows}
    assert "550" in (errors["norcpt@example.org"] or "") and "554" in (errors["nodata@example.org"] or "")


def test_a_record_that_fails_before_data_sends_nothing_and_drops_the_envelope(
    arun: Any, settings: Settings, sink: SmtpSink
) -> None:
    """When the previous message's record fails, the message waiting for it is not handed over, and its open
    envelope does not stay on the connection: the next message goes out on a new one."""
    mailer = SmtpMailer(smtp_settings(settings, sink))
    message = Outgoing("lab@example.org", "p@example.org", b"Subject: hi\r\n\r\nbody\r\n", smtputf8=False)

    async def record_failed() -> None:
        raise RuntimeError("the database went away")

    async def scenario() -> None:
        with pytest.raises(RuntimeError):
            await mailer.send(message, "k1", record_failed)
        assert mailer.client is None  # dropped, not left with MAIL FROM and RCPT TO open
        await mailer.send(message, "k2")
        await mailer.close()

    arun(scenario())
    assert len(sink.messages) == 1
