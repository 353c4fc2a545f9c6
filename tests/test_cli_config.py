"""Configuration and argument mistakes end in one line that says what to change, with exit code 2 (1 for a
database that cannot be reached): never a traceback. And the CLI's own conveniences: --version, PUBLIC_URL that
follows the port, create-admin's refusal to reuse an account silently and its password from the environment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from invitelink import __version__


def cli(args: list[str], tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("INVITELINK_")}
    clean.update({"INVITELINK_VAR_DIR": str(tmp_path / "var"), "INVITELINK_SECRET_KEY": "k", **env})
    return subprocess.run(
        [sys.executable, "-m", "invitelink.cli", *args],
        cwd=tmp_path,
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        stdin=subprocess.DEVNULL,
    )


@pytest.mark.parametrize(
    ("env", "code", "expected"),
    [
        ({"INVITELINK_WORKER": "maybe"}, 2, "INVITELINK_WORKER='maybe': Input should be 'embedded' or 'off'"),
        ({"INVITELINK_DATABASE_URL": "nonsense"}, 2, "INVITELINK_DATABASE_URL='nonsense': not a database URL"),
        ({"INVITELINK_DATABASE_URL": "mysql://db/x"}, 2, "mysql is not supported"),
        ({"INVITELINK_SMTP_PORT": "twenty-five"}, 2, "INVITELINK_SMTP_PORT='twenty-five'"),
        (
            {"INVITELINK_DATABASE_URL": "postgresql+psycopg://u:hunter2@127.0.0.1:1/none"},
            1,
            "cannot reach the database at postgresql+psycopg://u:***@127.0.0.1:1/none",
        ),
    ],
)
def test_configuration_errors_are_one_line(env: dict[str, str], code: int, expected: str, tmp_path: Path) -> None:
    result = cli(["migrate"], tmp_path, **env)
    assert result.returncode == code
    assert expected in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert "hunter2" not in result.stderr  # the password stays out of the message


def test_bad_arguments_and_version(tmp_path: Path) -> None:
    port = cli(["serve", "--port", "99999"], tmp_path)
    assert port.returncode == 2 and "'99999' is not a TCP port (1-65535)" in port.stderr
    workers = cli(["serve", "--workers", "0"], tmp_path)
    assert workers.returncode == 2 and "at least 1" in workers.stderr
    version = cli(["--version"], tmp_path)
    assert version.returncode == 0 and version.stdout.strip() == f"invitelink {__version__}"
    helped = cli(["serve", "--help"], tmp_path)
    assert "(default: 8000)" in helped.stdout and "--no-migrate" in helped.stdout


def test_create_admin_validates_and_refuses_an_existing_account(tmp_path: Path) -> None:
    db = {"INVITELINK_DATABASE_URL": f"sqlite:///{tmp_path / 'a.db'}"}
    bad = cli(["create-admin", "--email", "notanemail"], tmp_path, INVITELINK_ADMIN_PASSWORD="long-password", **db)
    assert bad.returncode == 2 and "not a valid e-mail address" in bad.stderr
    no_password = cli(["create-admin", "--email", "a@example.org"], tmp_path, **db)
    assert no_password.returncode == 2 and "INVITELINK_ADMIN_PASSWORD" in no_password.stderr
    created = cli(
        ["create-admin", "--email", "a@example.org"], tmp_path, INVITELINK_ADMIN_PASSWORD="long-password", **db
    )
    assert created.returncode == 0, created.stderr
    again = cli(["create-admin", "--email", "A@example.org"], tmp_path, INVITELINK_ADMIN_PASSWORD="long-password", **db)
    assert again.returncode == 2 and "pass --add-workspace" in again.stderr
    added = cli(
        ["create-admin", "--email", "a@example.org", "--add-workspace", "--workspace", "Second"],
        tmp_path,
        INVITELINK_ADMIN_PASSWORD="long-password",
        **db,
    )
    assert added.returncode == 0 and "(Second)" in added.stdout


def test_import_contacts_in_batches_with_progress_on_a_terminal(tmp_path: Path) -> None:
    db = {"INVITELINK_DATABASE_URL": f"sqlite:///{tmp_path / 'i.db'}"}
    demo = cli(["demo", "--json"], tmp_path, **db)
    assert demo.returncode == 0, demo.stderr
    survey = json.loads(demo.stdout)["survey"]["id"]
    rows = ["email;name;city"] + [f"p{n}@example.org;P {n};Berlin" for n in range(2500)] + ["not-an-address;X;Y"]
    (tmp_path / "people.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    first = cli(["import-contacts", "--survey", str(survey), "people.csv"], tmp_path, **db)
    assert first.returncode == 1  # one row refused, and said so
    assert "imported 2500 contacts, skipped 0 already there, refused 1 rows" in first.stdout
    assert "row 2501:" in first.stderr
    # A terminal gets a progress bar; the second run skips what the first stored.
    env = {k: v for k, v in os.environ.items() if not k.startswith("INVITELINK_")}
    env.update({"INVITELINK_VAR_DIR": str(tmp_path / "var"), "INVITELINK_SECRET_KEY": "k", **db})
    # A terminal of a real size: in one of size 0 (script's default) tqdm draws nothing.
    command = f"stty cols 100 rows 40; {sys.executable} -m invitelink.cli import-contacts --survey {survey} people.csv"
    again = subprocess.run(
        ["script", "-qec", command, "/dev/null"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert "imported 0 contacts, skipped 2500 already there" in again.stdout
    assert "2501/2501" in again.stdout and "rows" in again.stdout  # tqdm's bar, through the terminal
    missing = cli(["import-contacts", "--survey", "999", "people.csv"], tmp_path, **db)
    assert missing.returncode == 2 and "no survey 999" in missing.stderr
