"""The database's own ceiling for create_link: `pgbench` running the statements one create_link call runs.

One transaction per call, as the service sends them: look up the API key (joined to its survey), look for the
contact, insert it (insert-or-skip, returning its id), insert its token, commit. Each client uses prepared
statements (psycopg prepares statements it runs repeatedly, too) over its own connection. What pgbench reaches with
as many clients as wrk has connections is what PostgreSQL on this machine can do for these statements, with no
HTTP, Python or ORM in the way; the service's share of it is the figure to watch.

Needs the `pgbench` binary (Debian: postgresql-client, or the server package) and a database holding a demo
workspace (its `create_link` URL gives the key). The contacts it adds carry uids "pgbench-<n>"."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from invitelink.security import digest

# The values come in as --define variables, which pgbench's prepared protocol sends as parameters, as the service
# sends them: written into the text, a survey created after the last ANALYZE got a plan for "no rows" (the lookup
# by uid then walked the survey's serial index, 15 ms a call at 11,000 contacts), a plan the service never gets.
SCRIPT = """\
SELECT nextval('invitelink_pgbench_uids') AS n \\gset
BEGIN;
SELECT api_accesses.id, api_accesses.survey_id, api_accesses.mailing_id, api_accesses.function,
       api_accesses.subgroup, api_accesses.anonymous, surveys.project, api_accesses.revoked_at
  FROM api_accesses JOIN surveys ON surveys.id = api_accesses.survey_id
 WHERE api_accesses.key_digest = :key_digest;
SELECT contacts.id, contacts.email, contacts.mobile, contacts.uid FROM contacts
 WHERE contacts.survey_id = :survey_id AND contacts.uid = 'pgbench-' || :n;
INSERT INTO contacts (survey_id, email, mobile, uid, subgroup, anonymous, name, serial, created_at)
VALUES (:survey_id, NULL, NULL, 'pgbench-' || :n, '', false, '', upper(substr(md5(random()::text), 1, 10)), now())
ON CONFLICT DO NOTHING RETURNING id AS contact_id \\gset
INSERT INTO tokens (code, survey_id, contact_id, kind, api_access_id, mailing_id, notice, created_at)
VALUES (upper(substr(md5(random()::text), 1, 16)), :survey_id, :contact_id, 'personal', :access_id, NULL, '', now())
ON CONFLICT DO NOTHING RETURNING code;
COMMIT;
"""


@dataclass
class PgbenchResult:
    tps: float
    latency_ms: float
    failed: int
    clients: int

    def line(self) -> str:
        return (
            f"{'pgbench (same statements)':<28} {self.tps:9.1f} tx/s    mean latency {self.latency_ms:6.2f} ms   "
            f"failed {self.failed}   ({self.clients} clients)"
        )


def pgbench_binary() -> str:
    path = shutil.which("pgbench") or next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin/pgbench"))), None)
    if path is None:
        raise SystemExit("pgbench not found: install it (Debian/Ubuntu: apt-get install postgresql-client)")
    return str(path)


def run_pgbench(
    database_url: str, key: str, clients: int, threads: int, seconds: int, rate: float | None = None
) -> PgbenchResult:
    """Runs the create_link statements for the demo key ``key`` against ``database_url`` for ``seconds``; with
    ``rate``, at most that many transactions a second (pgbench --rate), else as fast as it can."""
    engine = create_engine(database_url)
    try:
        with engine.begin() as conn:
            row = conn.execute(
                text("SELECT id, survey_id FROM api_accesses WHERE key_digest = :d"), {"d": digest(key)}
            ).one()
            conn.execute(text("CREATE SEQUENCE IF NOT EXISTS invitelink_pgbench_uids"))
    finally:
        engine.dispose()
    url = make_url(database_url)
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as handle:
        handle.write(SCRIPT)
    command = [
        pgbench_binary(),
        "--no-vacuum",
        *([f"--rate={rate:.0f}"] if rate else []),
        "--protocol=prepared",
        f"--client={clients}",
        f"--jobs={threads}",
        f"--time={seconds}",
        f"--file={handle.name}",
        f"--define=key_digest={digest(key)}",
        f"--define=survey_id={int(row.survey_id)}",
        f"--define=access_id={int(row.id)}",
        f"--host={url.host or '127.0.0.1'}",
        f"--port={url.port or 5432}",
        f"--username={url.username or 'postgres'}",
        str(url.database),
    ]
    env = {"PGPASSWORD": url.password} if url.password else {}
    completed = subprocess.run(command, capture_output=True, text=True, check=False, env={**os.environ, **env})
    Path(handle.name).unlink(missing_ok=True)
    out = completed.stdout
    tps = re.search(r"tps = ([\d.]+)", out)
    latency = re.search(r"latency average = ([\d.]+) ms", out)
    failed = re.search(r"number of failed transactions: (\d+)", out)
    if completed.returncode != 0 or tps is None or latency is None:
        raise SystemExit(f"pgbench failed (exit {completed.returncode}): {' '.join(command)}\n{out}{completed.stderr}")
    return PgbenchResult(float(tps.group(1)), float(latency.group(1)), int(failed.group(1)) if failed else 0, clients)
