"""The snippets of docs/clients.md, run as written against a live server: each must print the status and the JSON
body of every call, with working credentials and, with wrong ones, the error body of its 4xx answer. curl and
Python always; PHP, R and Node.js where that runtime is installed."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.live_server import Live, live_server

DOC = Path(__file__).resolve().parents[1] / "docs" / "clients.md"
FAMILIES = ("sosci", "trigger", "supply")
LANGUAGES = ("sh", "python", "php", "r", "js")
FENCE = re.compile(r"^```(\w+) (\w+)\n(.*?)^```$", re.MULTILINE | re.DOTALL)
# The demo trigger token's cooldown (services/demo.py): trigger snippets run at least this far apart.
TRIGGER_COOLDOWN = 2.1
_last_trigger: dict[int, float] = {}  # per server (port): when a trigger snippet last queued a batch


def snippets() -> dict[tuple[str, str], str]:
    """(language, family) -> code, from the fences tagged ```<language> <family>."""
    return {(lang, family): code for lang, family, code in FENCE.findall(DOC.read_text())}


def test_the_doc_has_a_snippet_per_family_and_language() -> None:
    assert set(snippets()) == {(lang, family) for lang in LANGUAGES for family in FAMILIES}


def _php_with_curl() -> bool:
    php = shutil.which("php")
    if php is None:
        return False
    check = subprocess.run([php, "-r", 'exit(function_exists("curl_init") ? 0 : 1);'], timeout=30, check=False)
    return check.returncode == 0


def _r_with_httr() -> bool:
    rscript = shutil.which("Rscript")
    if rscript is None:
        return False
    check = subprocess.run([rscript, "-e", "library(httr)"], capture_output=True, timeout=60, check=False)
    return check.returncode == 0


def _node_with_fetch() -> bool:
    node = shutil.which("node")
    if node is None:
        return False
    version = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=30, check=False).stdout
    match = re.match(r"v(\d+)", version)
    return match is not None and int(match.group(1)) >= 18


Runner = Callable[[Path], list[str]]
RUNNERS: dict[str, tuple[str, Runner]] = {
    "sh": (".sh", lambda path: ["bash", str(path)]),
    "python": (".py", lambda path: [sys.executable, str(path)]),
    "php": (".php", lambda path: ["php", str(path)]),
    "r": (".R", lambda path: ["Rscript", str(path)]),
    "js": (".mjs", lambda path: ["node", str(path)]),
}


def calls_printed(output: str) -> list[tuple[int, dict[str, Any]]]:
    """Each line the snippet printed for a call: an HTTP status and a JSON body, in either order."""
    found = []
    for line in output.splitlines():
        start, end = line.find("{"), line.rfind("}")
        if start < 0:
            continue
        status = re.search(r"(?<![\w.])([1-5]\d\d)(?![\w.])", line[:start] + " " + line[end + 1 :])
        assert status is not None, f"no status next to the body: {line}"
        found.append((int(status.group(1)), json.loads(line[start : end + 1])))
    return found


def environment(live: Live, *, wrong: bool) -> dict[str, str]:
    demo, supplier = live.demo, live.demo["supplier"]
    settings = {
        "SOSCI_CREATE_LINK": demo["sosci"]["create_link"],
        "SOSCI_ADDRESS_STATUS": demo["sosci"]["address_status"],
        "TRIGGER_URL": demo["trigger"]["url"],
        "TRIGGER_SECRET": demo["trigger"]["secret"],
        "SUPPLY_BASE": supplier["sandbox_base"],
        "SUPPLY_KEY": supplier["sandbox_key"],
        "SUPPLIER_ID": supplier["supplier_id"],
        "SURVEY_ID": supplier["survey_id"],
    }
    if wrong:
        settings["SOSCI_CREATE_LINK"] = re.sub(r"act=\w+", "act=WrongKey0000", settings["SOSCI_CREATE_LINK"])
        settings["SOSCI_ADDRESS_STATUS"] = re.sub(r"act=\w+", "act=WrongKey0000", settings["SOSCI_ADDRESS_STATUS"])
        settings["TRIGGER_SECRET"] = "sit_wrong"
        settings["SUPPLY_KEY"] = "R4I_TEST_wrong"
    return {**os.environ, **settings}


def expect(family: str, calls: list[tuple[int, dict[str, Any]]], live: Live, *, wrong: bool) -> None:
    project = live.demo["survey"]["project"]
    if family == "sosci" and not wrong:
        (created_status, created), (found_status, found) = calls
        assert created_status == 200 and created["result"] == "ok"
        assert created["url"].startswith(f"{live.base}/{project}/?d=")
        assert found_status == 200 and found["result"] == "ok" and found["uid"] == "respondent01"
    elif family == "sosci":
        assert calls == [(404, {"result": "error", "error": "invalid API key", "url": None})] * 2
    elif family == "trigger" and not wrong:
        ((status, body),) = calls
        assert status == 200 and body["ok"] is True and body["batch"]["status"] == "queued"
    elif family == "trigger":
        ((status, body),) = calls
        assert status == 400 and body["ok"] is False and "unknown trigger token" in body["error"]
    elif not wrong:
        (listed_status, listed), (link_status, link) = calls
        assert listed_status == 200 and listed["data"]["TotalCount"] == 1
        assert link_status == 200 and link["data"]["security_code"] in link["data"]["survey_link"]
    else:
        assert calls == [(401, {"apiStatus": "error", "msg": "Invalid API key", "result": None})] * 2


@pytest.fixture
def live(db_url: str, tmp_path: Path) -> Iterator[Live]:
    with live_server(db_url, tmp_path) as server:
        yield server


def run_snippets(live: Live, language: str, tmp_path: Path) -> None:
    suffix, command = RUNNERS[language]
    for family in FAMILIES:
        path = tmp_path / f"{family}{suffix}"
        path.write_text(snippets()[(language, family)])
        for wrong in (False, True):
            if family == "trigger" and not wrong:
                time.sleep(max(0.0, _last_trigger.get(live.port, 0.0) + TRIGGER_COOLDOWN - time.monotonic()))
                _last_trigger[live.port] = time.monotonic()
            run = subprocess.run(
                command(path), env=environment(live, wrong=wrong), capture_output=True, text=True, timeout=120
            )
            assert run.returncode == 0, (language, family, run.stdout, run.stderr)
            try:
                expect(family, calls_printed(run.stdout), live, wrong=wrong)
            except (AssertionError, ValueError) as exc:
                raise AssertionError(f"{language} {family} (wrong credentials: {wrong}):\n{run.stdout}") from exc


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_and_python_snippets_against_a_live_server(live: Live, tmp_path: Path) -> None:
    run_snippets(live, "sh", tmp_path)
    run_snippets(live, "python", tmp_path)


@pytest.mark.parametrize(
    "language",
    [
        pytest.param("php", marks=pytest.mark.skipif(not _php_with_curl(), reason="PHP with curl not installed")),
        pytest.param("r", marks=pytest.mark.skipif(not _r_with_httr(), reason="R with the httr package not installed")),
        pytest.param("js", marks=pytest.mark.skipif(not _node_with_fetch(), reason="Node.js 18+ is not installed")),
    ],
)
def test_other_runtimes_snippets_against_a_live_server(live: Live, tmp_path: Path, language: str) -> None:
    run_snippets(live, language, tmp_path)
