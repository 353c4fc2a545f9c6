"""The real command line, end to end: demo, create-admin, serve (with its embedded worker), worker."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import cast

import httpx
import pytest
from sqlalchemy import select

from invitelink.db import Database, transaction
from invitelink.models import Contact, Delivery, Mailing, Survey, utcnow
from invitelink.services.deliveries import enqueue
from invitelink.services.links import issue_token
from invitelink.services.mailings import send_to_contacts
from invitelink.services.supplier_redirects import verify_redirect
from tests.smtp_server import SmtpSink, free_port


def cli_env(db_url: str, tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INVITELINK_")}
    env.update({"INVITELINK_DATABASE_URL": db_url, "INVITELINK_SECRET_KEY": "cli-test-secret", **extra})
    return env


def run_cli(args: list[str], db_url: str, tmp_path: Path, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "invitelink.cli", *args],
        cwd=tmp_path,
        env=cli_env(db_url, tmp_path, **extra),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_demo_json_prints_one_object_with_working_credentials(db_url: str, tmp_path: Path) -> None:
    first = run_cli(["demo", "--json"], db_url, tmp_path)
    assert first.returncode == 0, first.stderr
    demo = json.loads(first.stdout)  # stdout is exactly one JSON object
    assert {"workspace", "admin", "survey", "serial_codes"} <= demo.keys()
    assert demo["workspace"]["name"] == "Demo"
    assert set(demo["admin"]) >= {"email", "password", "token"}
    assert set(demo["survey"]) >= {"id", "project", "questionnaire_url", "callback_secret"}
    assert len(demo["serial_codes"]) == 5
    second = json.loads(run_cli(["demo", "--json"], db_url, tmp_path).stdout)
    assert second["workspace"]["id"] != demo["workspace"]["id"]
    assert second["survey"]["project"] != demo["survey"]["project"]


def test_create_admin_refuses_a_short_password_with_a_message(db_url: str, tmp_path: Path) -> None:
    result = run_cli(["create-admin", "--email", "a@example.org", "--password", "short"], db_url, tmp_path)
    assert result.returncode == 2
    assert "at least 8 characters" in result.stderr


def start_cli(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "invitelink.cli", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def smtp_env(sink: SmtpSink) -> dict[str, str]:
    return {
        "INVITELINK_SMTP_HOST": "127.0.0.1",
        "INVITELINK_SMTP_PORT": str(sink.port),
        "INVITELINK_SMTP_STARTTLS": "false",
    }


def wait_for_mail(sink: SmtpSink, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not sink.messages and time.monotonic() < deadline:
        time.sleep(0.2)


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    with SmtpSink() as s:
        yield s


def wait_ready(base: str, process: subprocess.Popen[str], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"serve exited early:\n{process.stderr.read() if process.stderr else ''}")
        try:
            if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError("serve did not become ready")


def queue_one(db_url: str, survey_id: int, email: str) -> None:
    database = Database(db_url, pool_size=1)
    try:
        with transaction(database.sessions) as session:
            survey = session.get(Survey, survey_id)
            assert survey is not None
            mailing = Mailing(survey_id=survey.id, subject="Hello", body="Take part: {{survey_link}}")
            contact = Contact(survey_id=survey.id, email=email, name="Pat")
            session.add_all([mailing, contact])
            session.flush()
            enqueue(session, mailing, contact, issue_token(session, contact, mailing_id=mailing.id))
    finally:
        database.dispose()


def test_serve_migrates_serves_docs_and_its_embedded_worker_mails(db_url: str, tmp_path: Path, sink: SmtpSink) -> None:
    created = run_cli(["create-admin", "--email", "boss@example.org", "--password", "s3cret-pass"], db_url, tmp_path)
    assert created.returncode == 0, created.stderr
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = cli_env(db_url, tmp_path, INVITELINK_PUBLIC_URL=base, **smtp_env(sink))
    process = start_cli(["serve", "--port", str(port)], env, tmp_path)
    try:
        wait_ready(base, process)
        assert "swagger-ui" in httpx.get(f"{base}/docs").text
        token = httpx.post(
            f"{base}/admin/v1/auth/token", data={"username": "boss@example.org", "password": "s3cret-pass"}
        ).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        survey = httpx.post(
            f"{base}/admin/v1/surveys",
            headers=headers,
            json={"title": "E2E", "questionnaire_url": "https://q.example.org", "status": "active"},
        ).json()
        queue_one(db_url, survey["id"], "pat@example.org")
        wait_for_mail(sink)
        assert len(sink.messages) == 1
        body = cast(EmailMessage, sink.messages[0].get_body(("plain",))).get_content()
        assert f"{base}/{survey['project']}/?d=" in body
    finally:
        process.send_signal(signal.SIGTERM)
        _out, err = process.communicate(timeout=30)
    # uvicorn shuts down gracefully, then re-raises the SIGTERM it caught.
    assert process.returncode in (0, -signal.SIGTERM), err
    assert "Application shutdown complete" in err
    # Personal links are credentials: the server's own output never carries one.
    assert "?d=" not in err


def test_worker_process_sends_and_stops_on_sigterm(db_url: str, tmp_path: Path, sink: SmtpSink) -> None:
    demo = json.loads(run_cli(["demo", "--json"], db_url, tmp_path).stdout)
    queue_one(db_url, demo["survey"]["id"], "w@example.org")
    process = start_cli(["worker"], cli_env(db_url, tmp_path, **smtp_env(sink)), tmp_path)
    try:
        wait_for_mail(sink)
        assert [m["To"] for m in sink.messages] == ["Pat <w@example.org>"]
    finally:
        process.send_signal(signal.SIGTERM)
        _out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert "stopped after 1 messages" in err


def test_demo_credentials_drive_the_trigger_and_supplier_apis_on_a_real_server(
    db_url: str, tmp_path: Path, sink: SmtpSink
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = cli_env(db_url, tmp_path, INVITELINK_PUBLIC_URL=base, **smtp_env(sink))
    demo = json.loads(run_cli(["demo", "--json"], db_url, tmp_path, INVITELINK_PUBLIC_URL=base).stdout)
    assert demo["trigger"]["url"] == f"{base}/api/invitation-trigger" and demo["trigger"]["secret"].startswith("sit_")
    supplier = demo["supplier"]
    assert supplier["sandbox_key"].startswith("R4I_TEST_") and supplier["production_key"].startswith("R4I_LIVE_")
    assert supplier["sandbox_base"] == f"{base}/sandbox/v1/" and supplier["survey_id"].startswith("PROJ-")
    process = start_cli(["serve", "--port", str(port)], env, tmp_path)
    try:
        wait_ready(base, process)
        auth = {"Authorization": f"Bearer {demo['trigger']['secret']}"}
        body = {"email": "person@example.com", "name": "Pat", "metadata": {"source_id": "evt_12345"}}
        queued = httpx.post(demo["trigger"]["url"], json=body, headers=auth)
        assert queued.status_code == 200 and queued.json()["batch"]["status"] == "queued"
        cooldown = httpx.post(demo["trigger"]["url"], json=body, headers=auth)  # the demo token waits 2 s
        assert cooldown.status_code == 429 and int(cooldown.headers["retry-after"]) <= 2
        wait_for_mail(sink)
        mail = sink.messages[0]
        assert mail["To"] == "Pat <person@example.com>"
        assert f"{base}/{demo['survey']['project']}/?d=" in cast(EmailMessage, mail.get_body(("plain",))).get_content()

        key = {"Authorization": f"Bearer {supplier['production_key']}"}
        ids = {"survey_id": supplier["survey_id"], "supplier_id": supplier["supplier_id"]}
        link = httpx.post(f"{supplier['production_base']}generate_survey_url", json=ids, headers=key)
        assert link.status_code == 200, link.text
        entered = httpx.get(link.json()["data"]["survey_link"].replace("[%%pid%%]", "PANEL-1"))
        assert entered.status_code == 302
        token = entered.headers["location"].split("token=")[1]
        end = httpx.get(f"{base}/survey/end", params={"token": token, "status": "complete"})
        assert end.status_code == 302 and "status=C&uid=PANEL-1&hmac=" in end.headers["location"]
        assert verify_redirect(end.headers["location"], supplier["hmac_secret"])
        stats = httpx.post(
            f"{supplier['production_base']}survey_stats", json={"supplier_id": supplier["supplier_id"]}, headers=key
        ).json()["data"]
        assert (stats["clicks"], stats["completes"], stats["Conversion"]) == (1, 1, 100)
    finally:
        process.send_signal(signal.SIGTERM)
        _out, err = process.communicate(timeout=30)
    # Neither personal links nor secrets reach the server's output: the access log writes their values as ***.
    assert not re.search(r"[?&](d|security_code)=(?!\*\*\*)", err)
    for secret in (demo["trigger"]["secret"], supplier["production_key"]):
        assert secret not in err


def queue_many(db_url: str, survey_id: int, count: int) -> None:
    database = Database(db_url, pool_size=1)
    try:
        with transaction(database.sessions) as session:
            mailing = Mailing(survey_id=survey_id, subject="Wave", body="Take part: {{survey_link}}")
            session.add(mailing)
            session.add_all(Contact(survey_id=survey_id, email=f"k{i}@example.org") for i in range(count))
            session.flush()
            assert send_to_contacts(session, mailing, None, utcnow()).queued == count
    finally:
        database.dispose()


def test_sigkilled_workers_lose_nothing_and_repeat_at_most_one_message_per_connection(
    db_url: str, tmp_path: Path, sink: SmtpSink
) -> None:
    """Each connection records a message's outcome before it sends the next, so a SIGKILL can repeat at most the
    message each connection had in flight."""
    total, kills, connections = 300, 3, 4
    demo = json.loads(run_cli(["demo", "--json"], db_url, tmp_path).stdout)
    queue_many(db_url, demo["survey"]["id"], total)
    env = cli_env(
        db_url,
        tmp_path,
        INVITELINK_WORKER_LEASE_SECONDS="2",
        INVITELINK_WORKER_BATCH="20",
        INVITELINK_SMTP_CONNECTIONS=str(connections),
        **smtp_env(sink),
    )
    for kill in range(1, kills + 1):
        process = start_cli(["worker"], env, tmp_path)
        deadline = time.monotonic() + 30
        while len(sink.messages) < kill * 50 and time.monotonic() < deadline:
            time.sleep(0.01)
        process.kill()  # SIGKILL: no graceful release; its claims come back when the lease runs out
        process.wait(timeout=10)
        assert len(sink.messages) < total, "the worker finished before it could be killed"
    process = start_cli(["worker"], env, tmp_path)
    try:
        deadline = time.monotonic() + 60
        while len({m["Message-ID"] for m in sink.messages}) < total and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=30)
    ids = [m["Message-ID"] for m in sink.messages]
    duplicates = len(ids) - len(set(ids))
    print(f"SIGKILL x{kills}: {len(set(ids))} of {total} delivered, {duplicates} duplicates")
    assert len(set(ids)) == total  # every queued message delivered
    assert duplicates <= kills * connections, f"{duplicates} duplicates"
    database = Database(db_url, pool_size=1)
    try:
        with database.read_sessions() as session:
            statuses = session.scalars(select(Delivery.status).where(Delivery.sequence == 0)).all()
        assert statuses.count("sent") >= total
    finally:
        database.dispose()


def test_two_live_workers_never_send_a_delivery_twice(db_url: str, tmp_path: Path, sink: SmtpSink) -> None:
    total = 300
    demo = json.loads(run_cli(["demo", "--json"], db_url, tmp_path).stdout)
    queue_many(db_url, demo["survey"]["id"], total)
    env = cli_env(db_url, tmp_path, INVITELINK_WORKER_BATCH="10", **smtp_env(sink))
    workers = [start_cli(["worker"], env, tmp_path) for _ in range(2)]
    try:
        deadline = time.monotonic() + 60
        while len(sink.messages) < total and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)  # anything sent twice would arrive now
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        logs = [worker.communicate(timeout=30)[1] for worker in workers]
    ids = [m["Message-ID"] for m in sink.messages]
    assert len(ids) == len(set(ids)) == total
    # Both took part: each logs how many it sent when it stops.
    sent = [int(cast("re.Match[str]", re.search(r"stopped after (\d+) messages", log)).group(1)) for log in logs]
    assert sum(sent) == total and min(sent) > 0, sent
