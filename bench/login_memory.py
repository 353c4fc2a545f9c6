"""Benchmark: peak memory of one `invitelink serve` process under concurrent admin logins.

Each argon2id verification takes 64 MiB for as long as it runs, so the number of verifications running at once
decides the process's peak. Starts `invitelink serve` (one process; SQLite in a temporary folder, or --database-url)
on a demo workspace, logs in once to warm up, then sends --logins logins at once from as many threads (the demo
admin's e-mail and password: each is a full verification, and successful logins are never throttled) and reads the
server's VmRSS and VmHWM (peak resident set) from /proc/PID/status before and after. Prints the statuses, the
wall time and the figures in MiB. --ref measures a git revision instead of the working tree (e.g. `--ref HEAD~1`,
for a before/after on the same machine). Run:

    .venv/bin/python bench/login_memory.py [--logins 40] [--database-url URL] [--ref REV] [--env NAME=VALUE ...]

--database-url names a PostgreSQL server: a fresh database is made there for the run and dropped afterwards. Code
from before the bound ran logins inside the admin unit of work, which on SQLite holds the single writer: they ran
one at a time there (slowly, and stopping every other write), so PostgreSQL is where its unbounded peak shows.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import service, working_tree_copy, worktree
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

LOGIN = "/admin/v1/auth/token"


def server_pid(port: int) -> int:
    """The `invitelink serve` process serving ``port`` (found by its command line)."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"serve" in argv and b"--port" in argv and str(port).encode() in argv:
            return int(proc.name)
    raise SystemExit(f"no `invitelink serve` process for port {port}")


def memory_mib(pid: int) -> dict[str, float]:
    """VmRSS (now) and VmHWM (the peak since the process started) in MiB."""
    figures = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            figures[name] = int(value.split()[0]) / 1024
    return figures


def burst(base: str, email: str, password: str, logins: int) -> tuple[collections.Counter[int], float]:
    """``logins`` logins released at once, one thread each; the statuses and the wall time."""
    statuses: collections.Counter[int] = collections.Counter()
    lock = threading.Lock()
    start = threading.Barrier(logins)

    def login() -> None:
        with httpx.Client(base_url=base, timeout=120) as client:
            start.wait()
            status = client.post(LOGIN, data={"username": email, "password": password}).status_code
        with lock:
            statuses[status] += 1

    threads = [threading.Thread(target=login) for _ in range(logins)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return statuses, time.perf_counter() - began


@contextlib.contextmanager
def code_under_test(ref: str | None) -> Iterator[Path]:
    """src/ of the revision to measure: a checkout of ``ref``, or a copy of the working tree as it is now."""
    if ref is None:
        with working_tree_copy() as path:
            yield path / "src"
    else:
        with worktree(ref) as path:
            yield path / "src"


@contextlib.contextmanager
def database(url: str | None) -> Iterator[str | None]:
    """A fresh database on the PostgreSQL server of ``url`` (dropped afterwards), or None for SQLite."""
    if url is None:
        yield None
        return
    name = f"invitelink_bench_login_{int(time.time())}"
    server = create_engine(make_url(url), isolation_level="AUTOCOMMIT")
    with server.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(url).set(database=name).render_as_string(hide_password=False)
    finally:
        with server.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        server.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--logins", type=int, default=40, help="logins sent at once")
    parser.add_argument("--database-url", default=None, help="a PostgreSQL server (a fresh database is made there)")
    parser.add_argument("--ref", default=None, help="measure this git revision instead of the working tree")
    parser.add_argument("--env", action="append", default=[], help="NAME=VALUE for the server (repeatable)")
    args = parser.parse_args()
    extra = dict(item.split("=", 1) for item in args.env)

    with (
        code_under_test(args.ref) as src,
        database(args.database_url) as url,
        service(url, {"INVITELINK_WORKER": "off", **extra}, src_path=src) as svc,
    ):
        pid = server_pid(svc.port)
        email, password = svc.demo["admin"]["email"], svc.demo["admin"]["password"]
        with httpx.Client(base_url=svc.base, timeout=60) as client:
            client.post(LOGIN, data={"username": email, "password": password}).raise_for_status()
        before = memory_mib(pid)
        statuses, seconds = burst(svc.base, email, password, args.logins)
        after = memory_mib(pid)

    print(f"code: {args.ref or 'working tree'}; database: {'PostgreSQL' if args.database_url else 'SQLite'}")
    print(f"{args.logins} concurrent logins in {seconds:.2f} s; statuses: {dict(sorted(statuses.items()))}")
    print(f"before the burst: VmRSS {before['VmRSS']:7.1f} MiB  VmHWM {before['VmHWM']:7.1f} MiB")
    print(f"after the burst:  VmRSS {after['VmRSS']:7.1f} MiB  VmHWM {after['VmHWM']:7.1f} MiB")
    print(f"peak growth during the burst: {after['VmHWM'] - before['VmHWM']:.1f} MiB")


if __name__ == "__main__":
    main()
