"""Benchmark: SoSci create_link with a new uid per request, on SQLite (or PostgreSQL), against a bare FastAPI endpoint.

Starts the bare app (bench/bare_app.py) and `invitelink serve` (SQLite in a temporary folder, or --database-url) with
uvicorn, and loads each with wrk (bench/wrk.py): --connections keep-alive connections over --threads threads for
--seconds, after an uncounted warm-up, every request with a uid of its own. Prints throughput, p50/p99 latency and
errors for both, and the throughput ratio service / bare.

The current tree is copied at the start (src/, migrations/, alembic.ini) and run from the copy with this venv's
Python and PYTHONPATH=<copy>/src, so every round measures the same code even while the tree is edited. With --ref
GITREF (repeatable), the service is also started from the code at GITREF (a `git worktree` in a temporary folder, run
the same way with PYTHONPATH=<worktree>/src) and measured in the same run. Every round measures the bare app, then
each ref, then the current tree, each version on a fresh database (on --database-url: a new demo workspace in that
database), so drift in the machine affects all alike; after the rounds, the medians. On PostgreSQL, each round
also runs the same statements through `pgbench` (bench/pgbench_ceiling.py: the database's own ceiling on this
machine, with as many clients as wrk has connections) and prints the service's share of it. Run:

    .venv/bin/python bench/sosci_create_link.py [--threads 2] [--connections 32] [--seconds 10] [--workers 1]
        [--ref HEAD ...] [--rounds 1] [--database-url URL]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import BENCH, bare, service, working_tree_copy, worktree
from pgbench_ceiling import PgbenchResult, pgbench_binary, run_pgbench
from wrk import WrkResult, run_wrk, wrk_binary

BARE_PROJECT = "demo-bench"
TARGET = "target >= 0.40 on SQLite with 1 worker, >= 0.30 with 2; p99 < 50 ms; 0 errors"
PG_TARGET = "target >= 0.60 of pgbench with 2 workers, p99 < 100 ms"


@dataclass
class Version:
    label: str
    """Short, for the result lines: "invitelink <ref>" or "invitelink current"."""
    description: str
    src_path: Path
    results: list[WrkResult] = field(default_factory=list)
    ratios: list[float] = field(default_factory=list)


def git(*args: str) -> str:
    return subprocess.run(
        ["git", "--no-optional-locks", "-C", str(BENCH.parent), *args], capture_output=True, text=True, check=True
    ).stdout.strip()


@contextmanager
def current_tree() -> Iterator[Version]:
    """The working tree as it is now (copied: it may be edited while this runs)."""
    head = git("rev-parse", "--short", "HEAD")
    changed = git("status", "--porcelain", "--", "src", "migrations", "alembic.ini")
    with working_tree_copy() as path:
        description = (
            f"current = the working tree at start ({head}{' + uncommitted changes' if changed else ', unchanged'}; "
            f"copied, PYTHONPATH={path / 'src'})"
        )
        yield Version("invitelink current", description, path / "src")


@contextmanager
def checkout(ref: str) -> Iterator[Version]:
    try:
        short = git("rev-parse", "--short", f"{ref}^{{commit}}")
    except subprocess.CalledProcessError:
        raise SystemExit(f"--ref {ref}: not a commit in this repository") from None
    with worktree(short) as path:
        yield Version(f"invitelink {ref}", f"{ref} = {short} (PYTHONPATH={path / 'src'})", path / "src")


def load(args: argparse.Namespace, name: str, url_base: str, path_prefix: str) -> WrkResult:
    """An uncounted warm-up (uids "...w<thread>-<n>"), then the measured run (uids "...<thread>-<n>")."""
    if args.warmup > 0:
        run_wrk(url_base, f"{path_prefix}w", args.threads, args.connections, args.warmup)
    return run_wrk(url_base, path_prefix, args.threads, args.connections, args.seconds, name=name)


def measure_service(args: argparse.Namespace, version: Version, round_number: int) -> WrkResult:
    # No embedded worker: on a --database-url that holds queued mail from elsewhere it would send it during the
    # run and take CPU from the path measured here (seen: PostgreSQL at 240 instead of 600 req/s).
    with service(
        args.database_url, {"INVITELINK_WORKER": "off"}, src_path=version.src_path, workers=args.workers
    ) as svc:
        create_link = urlsplit(svc.demo["sosci"]["create_link"])
        prefix = f"{create_link.path}?{create_link.query}&uid=bench-r{round_number}-"
        return load(args, version.label, svc.base, prefix)


def measure_pgbench(args: argparse.Namespace) -> PgbenchResult:
    """The same statements through pgbench, on a demo workspace of its own in the same database."""
    with service(args.database_url, {"INVITELINK_WORKER": "off"}) as svc:
        key = urlsplit(svc.demo["sosci"]["create_link"]).query.removeprefix("act=")
        return run_pgbench(args.database_url, key, args.connections, args.threads, args.seconds)


def ratio(result: WrkResult, baseline: WrkResult) -> float:
    return result.throughput / baseline.throughput if baseline.throughput else 0.0


def median_line(name: str, results: list[WrkResult]) -> str:
    throughput = statistics.median(r.throughput for r in results)
    return (
        f"{name:<28} {throughput:9.1f} req/s   p50 {statistics.median(r.p50 for r in results):7.2f} ms   "
        f"p99 {statistics.median(r.p99 for r in results):7.2f} ms   errors {sum(r.errors for r in results)}   "
        f"({sum(r.requests for r in results)} requests)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (default 2)")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections (default 32)")
    parser.add_argument("--seconds", type=int, default=10, help="measured seconds per load test (default 10)")
    parser.add_argument("--warmup", type=int, default=1, help="uncounted seconds of load before each (default 1)")
    parser.add_argument("--workers", type=int, default=1, help="uvicorn workers, service and bare app (default 1)")
    parser.add_argument(
        "--ref",
        action="append",
        default=[],
        metavar="GITREF",
        help="also measure the service at this commit (repeatable)",
    )
    parser.add_argument("--rounds", type=int, default=1, help="times each version is measured, alternately")
    parser.add_argument("--database-url", default=None, help="default: SQLite in a temporary folder")
    args = parser.parse_args()
    if args.rounds < 1 or args.seconds < 1 or args.workers < 1 or args.threads < 1 or args.connections < args.threads:
        parser.error("--rounds, --seconds, --workers and --threads must be >= 1, and --connections >= --threads")
    wrk_binary()  # fails early, with how to install it
    engine = "SQLite" if args.database_url is None else args.database_url.split(":", 1)[0]
    postgres = engine.startswith("postgresql")
    if postgres:
        pgbench_binary()

    with ExitStack() as stack:
        versions = [stack.enter_context(checkout(ref)) for ref in args.ref]
        versions.append(stack.enter_context(current_tree()))
        bare_port = stack.enter_context(bare(f"/{BARE_PROJECT}/", workers=args.workers))
        workers = f"{args.workers} uvicorn worker{'s' if args.workers != 1 else ''} each"
        print(
            f"create_link, new uid per request, wrk {args.threads} threads {args.connections} connections, "
            f"{args.seconds} s each (+{args.warmup} s warm-up), {engine}, {workers}, {os.cpu_count()} cores"
        )
        print(f"versions: {'; '.join(v.description for v in versions)}")
        print(f"each round: bare, then {', '.join(v.label.removeprefix('invitelink ') for v in versions)}")
        bare_results: list[WrkResult] = []
        ceilings: list[PgbenchResult] = []
        for round_number in range(1, args.rounds + 1):
            print(f"round {round_number}")
            baseline = load(
                args,
                "bare FastAPI (no database)",
                f"http://127.0.0.1:{bare_port}",
                f"/{BARE_PROJECT}/?act=x&uid=bench-r{round_number}-",
            )
            bare_results.append(baseline)
            print(f"  {baseline.line()}")
            for version in versions:
                result = measure_service(args, version, round_number)
                version.results.append(result)
                version.ratios.append(ratio(result, baseline))
                print(f"  {result.line()}   ratio {version.ratios[-1]:.2f}", flush=True)
            if postgres:
                ceilings.append(measure_pgbench(args))
                shares = "   ".join(
                    f"{v.label.removeprefix('invitelink ')} {v.results[-1].throughput / ceilings[-1].tps:.2f}"
                    for v in versions
                )
                print(f"  {ceilings[-1].line()}   share of it: {shares}", flush=True)

    if args.rounds > 1:
        print(f"median of {args.rounds} rounds (errors and requests: totals)")
        print(f"  {median_line('bare FastAPI (no database)', bare_results)}")
        for version in versions:
            print(f"  {median_line(version.label, version.results)}   ratio {statistics.median(version.ratios):.2f}")
    print(f"ratio: throughput invitelink / bare ({TARGET})")
    if ceilings:
        ceiling = statistics.median(c.tps for c in ceilings)
        for version in versions:
            share = statistics.median(r.throughput for r in version.results) / ceiling
            print(f"share of pgbench's {ceiling:.0f} tx/s: {version.label} {share:.2f} ({PG_TARGET})")
    current = versions[-1]
    for version in versions[:-1]:
        changes = [
            c.throughput / r.throughput for c, r in zip(current.results, version.results, strict=True) if r.throughput
        ]
        if changes:
            print(
                f"current / {version.label.removeprefix('invitelink ')} throughput: {statistics.median(changes):.2f}"
                f" (median over rounds; per round {', '.join(f'{c:.2f}' for c in changes)})"
            )


if __name__ == "__main__":
    main()
