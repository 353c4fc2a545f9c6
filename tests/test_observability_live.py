"""The real ``invitelink serve`` in json log mode, called by every family with real credentials: every line it
writes is one JSON object, request lines carry their request id, and no secret or token code is ever logged."""

from __future__ import annotations

import json
import re
import signal
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

from tests.smtp_server import free_port
from tests.test_cli import cli_env, run_cli, start_cli, wait_ready


def secrets_of(demo: dict[str, Any]) -> list[str]:
    """Every credential the demo hands out."""
    supplier = demo["supplier"]
    sosci_key = parse_qs(urlsplit(demo["sosci"]["create_link"]).query)["act"][0]
    return [
        sosci_key,
        demo["trigger"]["secret"],
        demo["admin"]["token"],
        demo["admin"]["password"],
        demo["survey"]["callback_secret"],
        supplier["sandbox_key"],
        supplier["production_key"],
        supplier["hmac_secret"],
    ]


def exercise(base: str, demo: dict[str, Any]) -> tuple[list[str], set[str]]:
    """Calls of every family; returns the token codes and links handed out, and the request ids answered."""
    project = demo["survey"]["project"]
    supplier = demo["supplier"]
    admin = {"Authorization": f"Bearer {demo['admin']['token']}"}
    handed_out: list[str] = []
    ids: set[str] = set()
    with httpx.Client(timeout=10) as http:

        def call(method: str, url: str, **kwargs: Any) -> httpx.Response:
            response = http.request(method, url, **kwargs)
            ids.add(response.headers["x-request-id"])
            return response

        # SoSci: create_link, then the personal link it gave (?d=) opened by the participant.
        created = call("GET", demo["sosci"]["create_link"] + "&uid=respondent01").json()
        assert created["result"] == "ok", created
        handed_out.append(created["url"])
        code = parse_qs(urlsplit(created["url"]).query)["d"][0]
        handed_out.append(code)
        opened = call("GET", created["url"], follow_redirects=False)
        assert opened.status_code in (302, 303, 307), opened.text
        token = parse_qs(urlsplit(opened.headers["location"]).query)["token"][0]
        handed_out.append(token)
        # The questionnaire's callback with the survey's secret.
        callback = call(
            "POST",
            f"{base}/api/v1/participations/events",
            json={"token": token, "event": "completed"},
            headers={"Authorization": f"Bearer {demo['survey']['callback_secret']}"},
        )
        assert callback.status_code == 200, callback.text
        # Trigger.
        triggered = call(
            "POST",
            demo["trigger"]["url"],
            json={"email": "person@example.com", "name": "Pat"},
            headers={"Authorization": f"Bearer {demo['trigger']['secret']}"},
        )
        assert triggered.status_code == 200, triggered.text
        # Supply: list, generate a link, open it.
        key = {"Authorization": f"Bearer {supplier['sandbox_key']}"}
        listed = call("POST", f"{supplier['sandbox_base']}allocated_survey", json={"page": 1}, headers=key)
        assert listed.status_code == 200, listed.text
        ids_body = {"survey_id": supplier["survey_id"], "supplier_id": supplier["supplier_id"]}
        link = call("POST", f"{supplier['sandbox_base']}generate_survey_url", json=ids_body, headers=key).json()
        survey_link = link["data"]["survey_link"].replace("[%%pid%%]", "panelist-7")
        handed_out += [link["data"]["security_code"], survey_link]
        entered = call("GET", survey_link, follow_redirects=False)
        assert entered.status_code in (302, 303, 307), entered.text
        # Admin with its bearer token; a serial code entered on the participant page (?s=).
        assert call("GET", f"{base}/admin/v1/surveys", headers=admin).status_code == 200
        serial = demo["serial_codes"][0]
        handed_out.append(serial)
        call("GET", f"{base}/{project}/", params={"s": serial}, follow_redirects=False)
        # Wrong credentials are logged no differently.
        call("GET", f"{base}/{project}/", params={"act": "WrongKey0000", "uid": "x"})
    return handed_out, ids


def test_json_logs_of_every_family_carry_no_secret(db_url: str, tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    seeded = run_cli(["demo", "--json"], db_url, tmp_path, INVITELINK_PUBLIC_URL=base)
    assert seeded.returncode == 0, seeded.stderr
    demo = json.loads(seeded.stdout)
    env = cli_env(db_url, tmp_path, INVITELINK_PUBLIC_URL=base, INVITELINK_LOG_FORMAT="json")
    process = start_cli(["serve", "--port", str(port)], env, tmp_path)
    try:
        wait_ready(base, process)
        handed_out, ids = exercise(base, demo)
    finally:
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)
    lines = [line for line in (out + err).splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    assert all({"time", "level", "logger", "message"} <= r.keys() for r in records)
    loggers = {r["logger"] for r in records}
    assert {"uvicorn.error", "invitelink.access", "invitelink.worker"} <= loggers, loggers
    # One access line per request answered, each with the id the answer carried.
    access = [r for r in records if r["logger"] == "invitelink.access"]
    by_id = {r["request_id"]: r for r in access}
    assert ids <= by_id.keys()
    families = {r["family"] for r in access}
    assert {"sosci", "participation", "trigger", "supply", "admin"} <= families, families
    startup = [r for r in records if r["logger"].startswith(("uvicorn", "alembic"))]  # none written in a request
    assert startup and all(r["request_id"] is None for r in startup), [r for r in startup if r["request_id"]]
    text = "\n".join(lines)
    for secret in secrets_of(demo) + handed_out:
        assert secret not in text, f"{secret[:6]}… was logged"
    assert "Authorization" not in text and "Bearer" not in text
    assert re.search(r"[?&]d=\*\*\*", text) and re.search(r"[?&]act=\*\*\*", text)
