"""Benchmark: SoSci create_link (new contacts) and address_status (existing ones) in a survey of 10,000 contacts
and in one of 1,000,000: does a call cost the same however many contacts the survey holds?

For each size, a scratch database of its own (a new PostgreSQL database on the server of --database-url, dropped
afterwards; or SQLite in a temporary folder) gets `invitelink demo` and then that many contacts with their
create_link tokens (bench/seed_contacts.py: COPY on PostgreSQL). Every round then starts `invitelink serve` (no
embedded worker) on each size's database in turn and loads it with wrk (bench/wrk_templated.lua), after an uncounted
warm-up: create_link with a new address per request, then address_status with a random one of the addresses
seed_contacts added. The contacts create_link added are deleted after each round, so every round sees the same
sizes. The load average is printed before each load. After the rounds: medians (and ranges) of p50 and p99 per
size, and the ratio of the largest size's p50 to the smallest's. The current tree is copied at the start and run
from the copy. Run:

    .venv/bin/python bench/contacts_scale.py [--sizes 10000 1000000] [--rounds 3] [--seconds 10]
        [--threads 2] [--connections 16] [--database-url URL]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import create_engine, text

sys.path.insert(0, str(Path(__file__).resolve().parent))
import wrk
from harness import PYTHON, free_port, wait_for
from seed_contacts import seed
from trees import Tree, current_tree, engine_name, load_average, scratch_database
from wrk import WrkResult

TARGET = "target: p50 of the largest size within 1.2x of the smallest's, for each call"
SEED_PREFIX = "seed"
NEW_PREFIX = "new"
CALLS = ("create_link", "address_status")


@dataclass
class Survey:
    """One size: its database, the demo's API URLs, and the wrk results per call."""

    size: int
    url: str
    demo: dict[str, Any]
    results: dict[str, list[WrkResult]] = field(default_factory=lambda: {call: [] for call in CALLS})


def base_env(database_url: str, tree: Tree, work: Path, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INVITELINK_")}
    env.update(
        {
            "INVITELINK_DATABASE_URL": database_url,
            "INVITELINK_VAR_DIR": str(work),
            "INVITELINK_PUBLIC_URL": f"http://127.0.0.1:{port}",
            "INVITELINK_SECRET_KEY": "bench",
            "INVITELINK_WORKER": "off",
            "PYTHONPATH": str(tree.src_path),
        }
    )
    return env


def demo(database_url: str, tree: Tree) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="invitelink-bench-") as work:
        env = base_env(database_url, tree, Path(work), 8000)
        completed = subprocess.run(
            [PYTHON, "-m", "invitelink.cli", "demo", "--json"], env=env, cwd=work, capture_output=True, text=True
        )
    if completed.returncode != 0:
        raise SystemExit(f"invitelink demo failed:\n{completed.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(completed.stdout)
    return result


@contextmanager
def serve(database_url: str, tree: Tree) -> Iterator[str]:
    """`invitelink serve` on an existing database (no demo seeding); yields its base URL."""
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="invitelink-bench-") as work:
        env = base_env(database_url, tree, Path(work), port)
        log_path = Path(work) / "serve.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [PYTHON, "-m", "invitelink.cli", "serve", "--port", str(port)],
                env=env,
                cwd=work,
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        try:
            try:
                wait_for(f"http://127.0.0.1:{port}/readyz", process=process)
            except SystemExit as exc:
                raise SystemExit(f"{exc}; serve stderr:\n{log_path.read_text(errors='replace')[-3000:]}") from None
            yield f"http://127.0.0.1:{port}"
        finally:
            process.terminate()
            process.wait(timeout=30)


def run_wrk(args: argparse.Namespace, url: str, seconds: int, seeded: int, name: str) -> WrkResult:
    """wrk on ``url``, whose path and query are a template ("__N__", "__R__": see bench/wrk_templated.lua)."""
    parts = urlsplit(url)
    return wrk.run_wrk(
        f"{parts.scheme}://{parts.netloc}",
        f"{parts.path}?{parts.query}",
        args.threads,
        args.connections,
        seconds,
        name=name,
        script_args=(str(seeded),),
    )


def call_url(base: str, api_url: str, query: str) -> str:
    """The demo's API URL (``…/{project}/?act=KEY``) on ``base``, with ``query`` added."""
    parts = urlsplit(api_url)
    return f"{base}{parts.path}?{parts.query}&{query}"


def measure(args: argparse.Namespace, survey: Survey, tree: Tree, round_number: int) -> None:
    with serve(survey.url, tree) as base:
        new = f"email={NEW_PREFIX}-r{round_number}-__N__%40example.com"
        existing = f"email={SEED_PREFIX}-__R__%40example.com"
        urls = {
            "create_link": call_url(base, survey.demo["sosci"]["create_link"], new),
            "address_status": call_url(base, survey.demo["sosci"]["address_status"], existing),
        }
        for call in CALLS:
            print(f"  {load_average()}")
            if args.warmup:
                warm = urls[call].replace("__N__", "w__N__")
                run_wrk(args, warm, args.warmup, survey.size, call)
            result = run_wrk(args, urls[call], args.seconds, survey.size, f"{call} {survey.size:,}")
            survey.results[call].append(result)
            print(f"  {result.line()}", flush=True)
    forget_new_contacts(survey)


def forget_new_contacts(survey: Survey) -> None:
    """Delete the contacts create_link added and their tokens, so the next round sees the same size. The tokens
    explicitly: this connection is not the service's, and SQLite cascades only with its foreign_keys pragma on."""
    engine = create_engine(survey.url)
    new = {"s": survey.demo["survey"]["id"], "p": f"{NEW_PREFIX}-%"}
    try:
        with engine.begin() as conn:
            conn.execute(
                text(
                    "DELETE FROM tokens WHERE contact_id IN "
                    "(SELECT id FROM contacts WHERE survey_id = :s AND email LIKE :p)"
                ),
                new,
            )
            conn.execute(text("DELETE FROM contacts WHERE survey_id = :s AND email LIKE :p"), new)
    finally:
        engine.dispose()


def ranged(values: list[float]) -> str:
    return f"{statistics.median(values):7.2f} ms ({min(values):.2f}-{max(values):.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 1_000_000], help="contacts per survey")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10, help="measured seconds per load (default 10)")
    parser.add_argument("--warmup", type=int, default=2, help="uncounted seconds of load before each (default 2)")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (default 2)")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections (default 16)")
    parser.add_argument(
        "--database-url",
        default=None,
        help="a PostgreSQL server to create scratch databases on (default: SQLite in a temporary folder)",
    )
    args = parser.parse_args()
    if args.rounds < 1 or args.seconds < 1 or args.threads < 1 or args.connections < args.threads:
        parser.error("--rounds, --seconds and --threads must be >= 1, and --connections >= --threads")
    sizes = sorted(set(args.sizes))
    wrk.wrk_binary()  # fails early, with what to install, when wrk is missing

    with ExitStack() as stack:
        tree = stack.enter_context(current_tree())
        print(
            f"create_link (new address per request) and address_status (a random seeded address) per survey size, "
            f"{engine_name(args.database_url)}, wrk {args.threads} threads {args.connections} connections, "
            f"{args.seconds} s each (+{args.warmup} s warm-up), {args.rounds} rounds"
        )
        print(f"version: {tree.description}")
        surveys = []
        for size in sizes:
            url = stack.enter_context(scratch_database(args.database_url, f"invitelink_bench_scale_{size}"))
            seeded = demo(url, tree)
            print(f"seeding {size:,} contacts ({load_average()})", flush=True)
            print(f"  {seed(url, size, survey_id=seeded['survey']['id'], prefix=SEED_PREFIX).line()}", flush=True)
            surveys.append(Survey(size, url, seeded))
        for round_number in range(1, args.rounds + 1):
            print(f"round {round_number}")
            for survey in surveys:
                measure(args, survey, tree, round_number)

    print(f"median over {args.rounds} rounds (range of the rounds' figures)")
    for call in CALLS:
        for survey in surveys:
            results = survey.results[call]
            print(
                f"  {call:<15} {survey.size:>10,} contacts  p50 {ranged([r.p50 for r in results])}  "
                f"p99 {ranged([r.p99 for r in results])}  "
                f"{statistics.median(r.throughput for r in results):7.1f} req/s  "
                f"errors {sum(r.errors for r in results)}"
            )
        if len(surveys) > 1:
            small, large = surveys[0].results[call], surveys[-1].results[call]
            ratio = statistics.median(r.p50 for r in large) / statistics.median(r.p50 for r in small)
            per_round = ", ".join(f"{b.p50 / a.p50:.2f}" for a, b in zip(small, large, strict=True))
            print(f"  {call}: p50 {surveys[-1].size:,} / {surveys[0].size:,} = {ratio:.2f} (per round {per_round})")
    print(TARGET)


if __name__ == "__main__":
    main()
