"""schemathesis over the whole OpenAPI document, every check on, against `invitelink serve` with a demo workspace.

Each API family runs with its own real credential (tests/fuzz/schemathesis.toml), so generated requests get past
authentication. A failure is any 5xx, a status or body the document does not list, a content type it does not
name, a schema-violating request that is accepted, a wrong 405 or Allow. The run is bounded (examples per
operation and a time budget) and seeded, so CI repeats it; `st replay <id>` or the printed curl line reproduces a
case."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.live_server import live_server

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "tests" / "fuzz" / "schemathesis.toml"
BOUNCE_SECRET = "fuzz-bounce-secret"
BUDGET_SECONDS = 150


def test_the_openapi_document_holds_for_generated_requests(db_url: str, tmp_path: Path) -> None:
    settings = {
        "INVITELINK_BOUNCE_SECRET": BOUNCE_SECRET,
        # The run sends thousands of calls with one supplier key: its per-minute limit would answer most with 429.
        "INVITELINK_SUPPLIER_REQUESTS_PER_MINUTE": "1000000",
        "INVITELINK_ACCESS_LOG": "false",
    }
    with live_server(db_url, tmp_path, **settings) as live:
        demo = live.demo
        credentials = {
            "FUZZ_ADMIN_TOKEN": demo["admin"]["token"],
            "FUZZ_SANDBOX_KEY": demo["supplier"]["sandbox_key"],
            "FUZZ_PRODUCTION_KEY": demo["supplier"]["production_key"],
            "FUZZ_TRIGGER_SECRET": demo["trigger"]["secret"],
            "FUZZ_CALLBACK_SECRET": demo["survey"]["callback_secret"],
            "FUZZ_BOUNCE_SECRET": BOUNCE_SECRET,
        }
        result = subprocess.run(
            [
                str(Path(sys.executable).parent / "st"),
                "--config-file",
                str(CONFIG),
                "run",
                f"{live.base}/openapi.json",
                "--phases",
                "examples,coverage,fuzzing",
                "--max-examples",
                "10",
                "--max-time",
                str(BUDGET_SECONDS),
                # One worker: schemathesis' threads trip a CPython 3.11 bug in ast.parse (a "Runtime Error" of the
                # run, not of the service).
                "--workers",
                "1",
                "--seed",
                "20261130",
                "--no-color",
            ],
            cwd=ROOT,  # the hooks module is imported as tests.fuzz.hooks
            env={**os.environ, **credentials},
            capture_output=True,
            text=True,
            timeout=BUDGET_SECONDS + 300,
            check=False,
        )
    report = result.stdout[result.stdout.find("= ERRORS =") if "= ERRORS =" in result.stdout else 0 :]
    summary = result.stdout[result.stdout.find("SUMMARY") :] if "SUMMARY" in result.stdout else result.stdout[-3000:]
    assert result.returncode == 0, f"{report[:60000]}\n{result.stderr[-3000:]}"
    assert "Tested:" in summary, summary
