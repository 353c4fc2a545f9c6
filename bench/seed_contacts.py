"""Fill a survey with many contacts, each with the personal token create_link would have given it, fast.

The rows are what `create_link` (SoSci API, e-mail given) writes: a contact with the address, an empty name, the
API access's subgroup and anonymity, a random person code (none for an anonymous access); a personal token with a
random 16-character code, tied to the survey's create_link access. Addresses are ``<prefix>-<n>@example.com``.

PostgreSQL: a block of contact ids is reserved from their sequence, both tables are loaded with COPY (psycopg 3
``cursor.copy``, --chunk rows per transaction), then analysed (what autovacuum does after such a load on any server
that runs it). SQLite: explicit ids, executemany in transactions of --chunk rows. A progress bar runs meanwhile; the
last line is the time and rows per second. Run against a migrated database, e.g. one `invitelink demo` made:

    .venv/bin/python bench/seed_contacts.py --database-url URL [--contacts 1000000] [--survey-id ID]
        [--prefix seed] [--chunk 50000]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
from sqlalchemy import Engine, create_engine, text
from tqdm import tqdm

from invitelink.security import SERIAL_ALPHABET, TOKEN_ALPHABET, random_code
from invitelink.services.contacts import SERIAL_LENGTH
from invitelink.services.links import TOKEN_LENGTH

CONTACT_COLUMNS = ("id", "survey_id", "email", "subgroup", "anonymous", "name", "serial", "created_at")
TOKEN_COLUMNS = ("code", "survey_id", "contact_id", "kind", "api_access_id", "notice", "created_at")
SQLITE_INSERT_CONTACT = f"INSERT INTO contacts ({', '.join(CONTACT_COLUMNS)}) VALUES ({', '.join('?' * 8)})"  # noqa: S608 - constant names
SQLITE_INSERT_TOKEN = f"INSERT INTO tokens ({', '.join(TOKEN_COLUMNS)}) VALUES ({', '.join('?' * 7)})"  # noqa: S608 - constant names


@dataclass(frozen=True)
class Access:
    """The survey's create_link access: what its contacts and tokens carry."""

    id: int
    survey_id: int
    subgroup: str
    anonymous: bool


@dataclass(frozen=True)
class Seeded:
    contacts: int
    seconds: float

    @property
    def rows_per_second(self) -> float:
        """Contacts and tokens together."""
        return 2 * self.contacts / self.seconds if self.seconds else 0.0

    def line(self) -> str:
        return (
            f"{self.contacts:,} contacts and {self.contacts:,} tokens in {self.seconds:.1f} s: "
            f"{self.rows_per_second:,.0f} rows/s"
        )


def email(prefix: str, number: int) -> str:
    return f"{prefix}-{number}@example.com"


def find_access(engine: Engine, survey_id: int | None) -> Access:
    """The create_link access of ``survey_id`` (default: of the newest survey that has one)."""
    query = "SELECT id, survey_id, subgroup, anonymous FROM api_accesses WHERE function = 'create_link'"
    query += " AND survey_id = :survey_id" if survey_id is not None else ""
    with engine.connect() as conn:
        row = conn.execute(text(f"{query} ORDER BY survey_id DESC, id LIMIT 1"), {"survey_id": survey_id}).first()
    if row is None:
        raise SystemExit("no survey with a create_link API access: run `invitelink demo` on this database first")
    return Access(int(row.id), int(row.survey_id), str(row.subgroup), bool(row.anonymous))


def distinct_codes(count: int, length: int, alphabet: str, taken: set[str]) -> Iterator[str]:
    """``count`` codes drawn as the service draws them, none in ``taken`` nor twice (a clash would abort a COPY)."""
    seen = set(taken)
    made = 0
    while made < count:
        code = random_code(length, alphabet)
        if code not in seen:
            seen.add(code)
            made += 1
            yield code


def _taken(engine: Engine, query: str, params: dict[str, Any]) -> set[str]:
    with engine.connect() as conn:
        return {str(value) for value in conn.execute(text(query), params).scalars() if value is not None}


def _rows(access: Access, count: int, first_id: int, prefix: str, engine: Engine) -> Iterator[tuple[Any, ...]]:
    """(contact row, token row) pairs, as tuples of CONTACT_COLUMNS and TOKEN_COLUMNS (created_at filled later)."""
    serials_taken = _taken(engine, "SELECT serial FROM contacts WHERE survey_id = :s", {"s": access.survey_id})
    codes_taken = _taken(engine, "SELECT code FROM tokens WHERE survey_id = :s", {"s": access.survey_id})
    serials = distinct_codes(count, SERIAL_LENGTH, SERIAL_ALPHABET, serials_taken)
    codes = distinct_codes(count, TOKEN_LENGTH, TOKEN_ALPHABET, codes_taken)
    for number, serial, code in zip(range(count), serials, codes, strict=True):
        contact_id = first_id + number
        contact = (
            contact_id,
            access.survey_id,
            email(prefix, number),
            access.subgroup,
            access.anonymous,
            "",
            None if access.anonymous else serial,
        )
        yield contact, (code, access.survey_id, contact_id, "personal", access.id, "")


def _seed_postgresql(engine: Engine, access: Access, count: int, prefix: str, chunk: int) -> None:
    now = datetime.now(UTC)
    raw = engine.raw_connection()
    try:
        driver: Any = raw.driver_connection
        with driver.cursor() as cur:
            # A block of ids no other writer can take: the sequence is moved past it in one statement.
            cur.execute(
                "SELECT setval(pg_get_serial_sequence('contacts', 'id'), "
                "nextval(pg_get_serial_sequence('contacts', 'id')) + %s - 1)",
                (count,),
            )
            first_id = int(cur.fetchone()[0]) - count + 1
            # The rows reference the survey, the access and each other correctly by construction, so the load skips
            # the foreign-key triggers (three million checks for a million contacts: 69 s instead of 47 s, one run
            # each). That takes a superuser; anyone else loads with the checks.
            try:
                cur.execute("SET session_replication_role = replica")
            except psycopg.errors.InsufficientPrivilege:
                driver.rollback()
        driver.commit()
        pairs = _rows(access, count, first_id, prefix, engine)
        with tqdm(total=2 * count, unit=" rows", unit_scale=True, desc="COPY contacts, tokens") as progress:
            for start in range(0, count, chunk):
                block = [next(pairs) for _ in range(min(chunk, count - start))]
                with driver.cursor() as cur:
                    with cur.copy(f"COPY contacts ({', '.join(CONTACT_COLUMNS)}) FROM STDIN") as copy:
                        for contact, _token in block:
                            copy.write_row((*contact, now))
                    with cur.copy(f"COPY tokens ({', '.join(TOKEN_COLUMNS)}) FROM STDIN") as copy:
                        for _contact, token in block:
                            copy.write_row((*token, now))
                driver.commit()
                progress.update(2 * len(block))
        driver.autocommit = True
        with driver.cursor() as cur:
            cur.execute("RESET session_replication_role")
            cur.execute("ANALYZE contacts")
            cur.execute("ANALYZE tokens")
    finally:
        raw.close()


def _seed_sqlite(engine: Engine, access: Access, count: int, prefix: str, chunk: int) -> None:
    # SQLAlchemy's storage format for DATETIME on SQLite (UtcDateTime stores naive UTC).
    now = datetime.now(UTC).replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f")
    raw = engine.raw_connection()
    try:
        driver: Any = raw.driver_connection
        driver.isolation_level = None  # transactions are begun and committed below, one per chunk
        # Random codes land all over their indexes: a page cache that holds them (this connection's only; the
        # default is 2 MB) took a million contacts from 51 s to 41 s (one run each).
        driver.execute("PRAGMA cache_size = -524288")
        first_id = int(driver.execute("SELECT coalesce(max(id), 0) + 1 FROM contacts").fetchone()[0])
        pairs = _rows(access, count, first_id, prefix, engine)
        with tqdm(total=2 * count, unit=" rows", unit_scale=True, desc="INSERT contacts, tokens") as progress:
            for start in range(0, count, chunk):
                block = [next(pairs) for _ in range(min(chunk, count - start))]
                driver.execute("BEGIN IMMEDIATE")
                driver.executemany(SQLITE_INSERT_CONTACT, [(*contact, now) for contact, _token in block])
                driver.executemany(SQLITE_INSERT_TOKEN, [(*token, now) for _contact, token in block])
                driver.execute("COMMIT")
                progress.update(2 * len(block))
    finally:
        raw.close()


def seed(
    database_url: str, count: int, *, survey_id: int | None = None, prefix: str = "seed", chunk: int = 50_000
) -> Seeded:
    """Add ``count`` contacts and their tokens to the survey (see the module's docstring); returns the time taken."""
    engine = create_engine(database_url)
    try:
        access = find_access(engine, survey_id)
        started = time.perf_counter()
        if engine.dialect.name == "postgresql":
            _seed_postgresql(engine, access, count, prefix, chunk)
        else:
            _seed_sqlite(engine, access, count, prefix, chunk)
        return Seeded(count, time.perf_counter() - started)
    finally:
        engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", required=True, help="the service's database (migrated, with a survey)")
    parser.add_argument("--contacts", type=int, default=1_000_000, help="contacts to add (default 1,000,000)")
    parser.add_argument("--survey-id", type=int, default=None, help="default: the newest survey with create_link")
    parser.add_argument("--prefix", default="seed", help="addresses are <prefix>-<n>@example.com (default seed)")
    parser.add_argument("--chunk", type=int, default=50_000, help="rows per COPY or transaction (default 50,000)")
    args = parser.parse_args()
    if args.contacts < 1 or args.chunk < 1:
        parser.error("--contacts and --chunk must be >= 1")
    print(seed(args.database_url, args.contacts, survey_id=args.survey_id, prefix=args.prefix, chunk=args.chunk).line())


if __name__ == "__main__":
    main()
