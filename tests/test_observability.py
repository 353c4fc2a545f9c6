"""Request ids, the access log's redaction, /metrics and the worker's progress lines, through the ASGI app."""

from __future__ import annotations

import asyncio
import logging
import re

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from invitelink.access_log import redacted_target
from invitelink.app import create_app
from invitelink.config import Settings
from invitelink.db import Database
from invitelink.logs import RequestIdFilter
from invitelink.models import Delivery
from invitelink.worker.progress import Progress
from invitelink.worker.runner import Worker
from tests.conftest import Admin
from tests.test_worker import seed


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """What the app logs at INFO and up, each record stamped by the filter the configured handler carries."""
    caplog.handler.addFilter(RequestIdFilter("json"))
    caplog.set_level(logging.INFO)
    return caplog


def test_request_id_is_echoed_or_generated(client: TestClient) -> None:
    assert client.get("/healthz", headers={"X-Request-ID": "lb-7f3a.1"}).headers["x-request-id"] == "lb-7f3a.1"
    generated = client.get("/healthz").headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", generated)
    assert client.get("/healthz").headers["x-request-id"] != generated
    # An id that could break or forge a log line is replaced.
    for odd in ("a" * 200, "two words", "x;y"):
        answered = client.get("/healthz", headers={"X-Request-ID": odd}).headers["x-request-id"]
        assert answered != odd and re.fullmatch(r"[0-9a-f]{32}", answered)
    # Error answers carry it too.
    assert "x-request-id" in client.get("/admin/v1/surveys").headers


def test_every_log_record_of_a_request_carries_its_id(
    app: FastAPI, client: TestClient, logs: pytest.LogCaptureFixture
) -> None:
    @app.get("/probe/log")
    def probe() -> dict[str, bool]:
        logging.getLogger("invitelink.test").warning("inside the request")
        return {"ok": True}

    logs.clear()
    assert client.get("/probe/log", headers={"X-Request-ID": "req-1"}).status_code == 200
    mine = [r for r in logs.records if r.name in ("invitelink.test", "invitelink.access")]
    assert [r.name for r in mine] == ["invitelink.test", "invitelink.access"]
    assert all(getattr(r, "request_id", None) == "req-1" for r in mine)
    assert mine[-1].__dict__["family"] == "sosci"  # a two-segment path no family prefixes: SoSci owns "/"


def test_access_line_redacts_query_secrets_and_token_like_segments(
    client: TestClient, logs: pytest.LogCaptureFixture, admin: Admin
) -> None:
    logs.clear()
    client.get("/demo-project/?act=K3yS3cr3tValue123&uid=u1&d=QS33T6XMVS4KLA9S")
    client.get("/admin/v1/surveys", headers=admin.headers)
    lines = [r.getMessage() for r in logs.records if r.name == "invitelink.access"]
    assert lines[0].startswith("GET /demo-project/?act=*** &uid=u1&d=*** ".replace(" &", "&"))
    assert " sosci" in lines[0] and lines[1].endswith(" admin")
    text = "\n".join(r.getMessage() for r in logs.records if r.name != "httpx")  # the test's client logs URLs
    assert "K3yS3cr3tValue123" not in text and "QS33T6XMVS4KLA9S" not in text and admin.token not in text
    assert redacted_target("/a/ilk_abc/QS33T6XMVS4KLA9S/12/sleep-study-2024", "") == "/a/***/***/12/sleep-study-2024"
    assert redacted_target("/survey/letdosurvey", "sid=1&security_code=ab&PID=p&x=1") == (
        "/survey/letdosurvey?sid=***&security_code=***&PID=***&x=1"
    )
    assert redacted_target("/", "callback=sit_abc&token&u=") == "/?callback=***&token&u=***"


def scrape(client: TestClient, **headers: str) -> dict[str, float]:
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    values = {}
    for line in response.text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    return values


def test_metrics_is_not_shadowed_and_counts_requests_per_family(client: TestClient, admin: Admin) -> None:
    before = scrape(client)
    client.get("/admin/v1/surveys", headers=admin.headers)
    client.get("/admin/v1/surveys", headers=admin.headers)
    client.post("/api/invitation-trigger", json={})
    after = scrape(client)
    admin_ok = 'invitelink_http_requests_total{family="admin",status="200"}'
    assert after[admin_ok] - before.get(admin_ok, 0) == 2
    trigger = [k for k in after if k.startswith('invitelink_http_requests_total{family="trigger"')]
    assert sum(after[k] - before.get(k, 0) for k in trigger) == 1
    count = 'invitelink_http_request_duration_seconds_count{family="admin"}'
    assert after[count] - before.get(count, 0) >= 2
    assert 'invitelink_http_requests_total{family="app",status="200"}' in after  # the scrape itself


def test_delivery_gauges_match_the_rows(settings: Settings, client: TestClient) -> None:
    database: Database = client.app.state.database  # type: ignore[attr-defined]
    seed(database, ["a@example.org", "b@example.org", "c@example.org"])
    figures = scrape(client)
    with database.read_sessions() as session:
        grouped = session.execute(select(Delivery.status, func.count()).group_by(Delivery.status))
        rows = {status: count for status, count in grouped}
    assert rows == {"queued": 3}
    assert figures['invitelink_deliveries{status="queued"}'] == 3
    assert figures["invitelink_queue_due_deliveries"] == 3
    assert figures["invitelink_queue_oldest_due_age_seconds"] >= 0
    assert not [k for k in figures if k.startswith("invitelink_webhook_messages{")]


def test_metrics_token_is_required_when_set(settings: Settings) -> None:
    app = create_app(settings.model_copy(update={"metrics_token": "scrape-me"}))
    with TestClient(app) as client:
        assert client.get("/metrics").status_code == 401
        assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert client.get("/metrics", headers={"Authorization": "Bearer scrape-me"}).status_code == 200


def test_worker_logs_progress_while_sending_and_nothing_while_idle(
    settings: Settings, logs: pytest.LogCaptureFixture
) -> None:
    database = Database(settings.database_url, pool_size=2)
    try:
        seed(database, [f"p{i}@example.org" for i in range(4)])
        worker = Worker(settings, database, batch=2)
        worker.progress.interval = 0.0  # a line after every message instead of every few seconds

        async def drain() -> list[int]:
            claimed = [await worker.run_once(), await worker.run_once()]
            busy.extend(r for r in logs.records if r.name == "invitelink.worker.progress")
            logs.clear()
            claimed.append(await worker.run_once())
            await worker.close()
            return claimed

        busy: list[logging.LogRecord] = []
        logs.clear()
        assert asyncio.run(drain()) == [2, 2, 0]
    finally:
        database.dispose()
    # Outcomes are counted as their records are stored, which may be after the lane's next look: a line covers
    # one message or several, every message is in one, and each batch's last ones are reported with it.
    assert 2 <= len(busy) <= 4
    assert all(r.__dict__["sent"] >= 1 for r in busy)
    assert sum(r.__dict__["sent"] for r in busy) == 4
    assert busy[0].__dict__["queue_depth"] == 2 and busy[-1].__dict__["queue_depth"] == 0  # claimed ones are not due
    assert "sent" in busy[0].getMessage() and "queue depth" in busy[0].getMessage()
    assert not [r for r in logs.records if r.name == "invitelink.worker.progress"]  # the empty claim: silence


def test_progress_lines_written_at_once_each_count_an_outcome_once(
    settings: Settings, logs: pytest.LogCaptureFixture
) -> None:
    """Connections ask for a progress line concurrently, and a line reads the queue depth before it is written:
    the second of two lines asked for at once must neither write "0 sent" nor drop an outcome counted meanwhile."""
    database = Database(settings.database_url, pool_size=2)
    try:
        progress = Progress(database, interval=0.0)

        async def scenario() -> None:
            for _ in range(3):
                progress.count("sent")
            first = asyncio.create_task(progress.report())
            await asyncio.sleep(0)  # the first line is reading the depth now
            progress.count("failed")  # an outcome stored meanwhile
            await asyncio.gather(first, progress.report())
            await progress.report()

        logs.clear()
        asyncio.run(scenario())
    finally:
        database.dispose()
    lines = [(r.__dict__["sent"], r.__dict__["failed"]) for r in logs.records if r.name == "invitelink.worker.progress"]
    # Each line reads the depth in a thread of its own, so either may be written first.
    assert sorted(lines) == [(0, 1), (3, 0)]


def test_the_access_line_can_be_turned_off_and_requests_are_still_counted(
    settings: Settings, logs: pytest.LogCaptureFixture
) -> None:
    app = create_app(settings.model_copy(update={"access_log": False}))
    with TestClient(app) as client:
        before = scrape(client)
        assert client.get("/healthz").status_code == 200
        after = scrape(client)
    assert not [r for r in logs.records if r.name == "invitelink.access"]
    counted = 'invitelink_http_requests_total{family="app",status="200"}'
    assert after[counted] - before.get(counted, 0) >= 2  # /healthz and the first scrape
