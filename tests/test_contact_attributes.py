"""Contact imports as spreadsheets export them: `;`- and tab-separated files, a UTF-8 BOM, and extra columns kept as
the contacts' attributes, shown by the admin API and the results export and filled into messages as
``{{attr.name}}``; past their limits an import is refused whole."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from email.message import EmailMessage
from typing import Any, cast
from urllib.parse import parse_qs, urlsplit

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from invitelink.config import Settings
from invitelink.services.contacts import sniff_delimiter
from invitelink.services.templates import render
from invitelink.worker.runner import Worker
from tests.conftest import Admin, MakeSurvey
from tests.smtp_server import SmtpSink


def _import(client: TestClient, admin: Admin, survey: dict[str, Any], body: bytes) -> Any:
    return client.post(
        f"/admin/v1/surveys/{survey['id']}/contacts/import",
        content=body,
        headers={**admin.headers, "Content-Type": "text/csv"},
    )


def _contacts(client: TestClient, admin: Admin, survey: dict[str, Any]) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = client.get(
        f"/admin/v1/surveys/{survey['id']}/contacts", headers=admin.headers
    ).json()["items"]
    return items


@pytest.mark.parametrize(
    "body",
    [
        'email;name;city;Home town\nann@example.org;Ann;Köln;Bonn\nbob@example.org;"Bob, Jr.; B";Wien;\n',
        "email\tname\tcity\tHome town\nann@example.org\tAnn\tKöln\tBonn\nbob@example.org\tBob, Jr.; B\tWien\t\n",
        '\ufeffemail,name,city,Home town\nann@example.org,Ann,Köln,Bonn\nbob@example.org,"Bob, Jr.; B",Wien,\n',
    ],
    ids=["semicolon", "tab", "bom-comma"],
)
def test_spreadsheet_exports_import_with_their_extra_columns(
    client: TestClient, admin: Admin, make_survey: MakeSurvey, body: str
) -> None:
    survey = make_survey(admin)
    response = _import(client, admin, survey, body.encode())
    assert response.status_code == 200, response.text
    assert response.json() == {"created": 2, "skipped": 0, "errors": []}
    contacts = {c["email"]: c for c in _contacts(client, admin, survey)}
    assert contacts["ann@example.org"]["name"] == "Ann"
    assert contacts["ann@example.org"]["attributes"] == {"city": "Köln", "Home town": "Bonn"}
    # An empty cell is no attribute; a quoted value keeps its separators.
    assert contacts["bob@example.org"]["name"] == "Bob, Jr.; B"
    assert contacts["bob@example.org"]["attributes"] == {"city": "Wien"}
    one = client.get(
        f"/admin/v1/surveys/{survey['id']}/contacts/{contacts['ann@example.org']['id']}", headers=admin.headers
    ).json()
    assert one["attributes"] == {"city": "Köln", "Home town": "Bonn"}


def test_contacts_without_attributes_show_an_empty_object(
    client: TestClient, admin: Admin, make_survey: MakeSurvey
) -> None:
    survey = make_survey(admin)
    assert (
        client.post(f"/admin/v1/surveys/{survey['id']}/contacts", json={"uid": "u1"}, headers=admin.headers).status_code
        == 201
    )
    assert _import(client, admin, survey, b"uid\nu2\n").json()["created"] == 1
    assert [c["attributes"] for c in _contacts(client, admin, survey)] == [{}, {}]
    # JSON imports name them in "attributes".
    imported = client.post(
        f"/admin/v1/surveys/{survey['id']}/contacts/import",
        json=[{"uid": "u3", "attributes": {"city": "Graz"}}, {"uid": "u4", "attributes": {"city": 5}}],
        headers=admin.headers,
    ).json()
    assert imported["created"] == 1 and [e["row"] for e in imported["errors"]] == [2]
    assert _contacts(client, admin, survey)[-1]["attributes"] == {"city": "Graz"}


def test_the_delimiter_is_sniffed_with_a_fallback() -> None:
    assert sniff_delimiter("email;name\na@example.org;Ann\n") == ";"
    assert sniff_delimiter("email\tname\na@example.org\tAnn\n") == "\t"
    assert sniff_delimiter('email,name\na@example.org,"x;y;z"\n') == ","
    assert sniff_delimiter("email\na@example.org\n") == ","  # one column: the sniffer cannot tell
    assert sniff_delimiter("email;name\n") == ";"  # a header alone


def test_attribute_limits_refuse_the_whole_import(client: TestClient, admin: Admin, make_survey: MakeSurvey) -> None:
    survey = make_survey(admin)
    many = ",".join(f"a{i}" for i in range(51))
    cases = [
        (f"email,{many}\nann@example.org{',x' * 51}\n", "at most 50 attribute"),
        ("email,col/our\nann@example.org,red\n", "attribute name"),
        (f"email,{'n' * 65}\nann@example.org,red\n", "attribute name"),
        (f"email,city\nann@example.org,Köln\nbob@example.org,{'x' * 1001}\n", "row 2: attribute 'city' is longer"),
        ("email,city,city\nann@example.org,a,b\n", "named twice"),
        ("email,,city\nann@example.org,oops,Köln\n", "column without a name"),
    ]
    for body, expected in cases:
        response = _import(client, admin, survey, body.encode())
        assert response.status_code == 400, (body[:80], response.text)
        assert expected in response.json()["detail"], response.json()
    too_many = client.post(
        f"/admin/v1/surveys/{survey['id']}/contacts/import",
        json=[{"uid": "u1", "attributes": {f"a{i}": "x" for i in range(51)}}],
        headers=admin.headers,
    )
    assert too_many.status_code == 400 and "at most 50 attributes" in too_many.json()["detail"]
    assert _contacts(client, admin, survey) == []
    # At the limits: stored.
    fifty = ",".join(f"a{i}" for i in range(50))
    at_limit = f"email,{fifty}\nann@example.org,{'x' * 1000}{',x' * 49}\n"
    assert _import(client, admin, survey, at_limit.encode()).json()["created"] == 1
    # A trailing separator (a nameless, empty column) is what spreadsheets export: accepted.
    assert _import(client, admin, survey, b"email;city;\nbob@example.org;Graz;\n").json()["created"] == 1


def test_templates_fill_attributes_and_nothing_else() -> None:
    values = {"recipient_name": "Ann"}
    attributes = {"city": "{{recipient_name}}", "Home town": "Bonn"}
    template = "{{recipient_name}} {{attr.city}} {{ attr.Home town }} [{{attr.missing}}] {{attr.__class__}} {{x}}"
    # A value is not expanded again; an unknown attribute, or a name reaching for anything else, renders empty.
    assert render(template, values, attributes) == "Ann {{recipient_name}} Bonn []  {{x}}"


def test_attributes_reach_the_mail_and_the_results_export(
    client: TestClient, admin: Admin, make_survey: MakeSurvey, settings: Settings
) -> None:
    survey = make_survey(admin, status="active")
    base = f"/admin/v1/surveys/{survey['id']}"
    body = b"email;name;city\nann@example.org;Ann;K\xc3\xb6ln\nbob@example.org;Bob;\n"
    assert _import(client, admin, survey, body).json()["created"] == 2
    mailing = client.post(
        f"{base}/mailings",
        json={"name": "Wave", "subject": "Hello from {{attr.city}}", "body": "Dear {{attr.city}}: {{survey_link}}"},
        headers=admin.headers,
    ).json()
    assert client.post(f"{base}/mailings/{mailing['id']}/send", json={}, headers=admin.headers).status_code == 200

    with SmtpSink() as sink:
        smtp = settings.model_copy(update={"smtp_host": "127.0.0.1", "smtp_port": sink.port, "smtp_starttls": False})
        worker = Worker(smtp, cast(FastAPI, client.app).state.database)
        assert asyncio.run(worker.run_once()) == 2
        mails = {m["To"]: m for m in sink.messages}
    ann, bob = mails["Ann <ann@example.org>"], mails["Bob <bob@example.org>"]
    assert ann["Subject"] == "Hello from Köln"
    ann_body = cast(EmailMessage, ann.get_body(("plain",))).get_content()
    assert ann_body.startswith("Dear Köln: ")
    assert bob["Subject"] == "Hello from"  # no attribute: empty
    assert cast(EmailMessage, bob.get_body(("plain",))).get_content().startswith("Dear : ")

    url = next(word for word in ann_body.split() if "?d=" in word)
    token = parse_qs(urlsplit(url).query)["d"][0]
    completed = client.post(
        "/api/v1/participations/events",
        json={"token": token, "event": "completed"},
        headers={"Authorization": f"Bearer {survey['callback_secret']}"},
    )
    assert completed.status_code == 200, completed.text
    exported = client.get(f"{base}/results", headers={**admin.headers, "Accept": "text/csv"})
    assert exported.status_code == 200
    header, *rows = list(csv.reader(io.StringIO(exported.text)))
    assert header[-1] == "attributes"
    (row,) = rows
    assert json.loads(row[-1]) == {"city": "Köln"}
