"""Benchmark: trigger calls (POST /api/invitation-trigger) of 1,000 new recipients each, against a bare FastAPI
endpoint parsing the same body; optionally the code of older git refs side by side.

Each measurement starts `invitelink serve` on a scratch database of its own (SQLite in a temporary folder, or a new
PostgreSQL database on the server of --database-url, dropped afterwards), seeds it with `invitelink demo --json`,
adds a trigger token without cooldown through the admin API, and raises the flood limits (settings env vars), with
no embedded worker: this measures accepting and queueing, not sending. After one uncounted warm-up call, --batches
calls of --recipients new addresses are sent one after another from one client; a call's time is the wall time of
its HTTP request (body encoded beforehand). Then it checks in the database that every recipient of every call has
one contact, one token and one queued delivery.

The current tree is copied at the start (src/, migrations/) and run from the copy with PYTHONPATH; each --ref GITREF
(repeatable) runs from a `git worktree` the same way, and each --tree DIR from a copy of DIR's src/ and migrations/
(a variant of the working tree, e.g. with one change undone). Every round measures the bare endpoint, then each ref
and tree, then the current tree, so drift in the machine affects all alike; the load average is printed before each
measurement. After the rounds: the median over rounds of each version's median and p95, with their range. Run:

    .venv/bin/python bench/trigger_batch.py [--batches 20] [--recipients 1000] [--rounds 3] [--ref GITREF ...]
        [--tree DIR ...] [--database-url URL]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from sqlalchemy import create_engine, text

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import bare, service
from trees import Tree, checkout, current_tree, engine_name, folder_tree, load_average, scratch_database

PATH = "/api/invitation-trigger"
TARGET = "target: PostgreSQL median <= 150 ms per call of 1,000 recipients"
# No embedded worker (it would send the batches and take the CPU this measures); flood limits out of the way of a
# bench that queues thousands of recipients a minute.
SERVICE_ENV = {
    "INVITELINK_WORKER": "off",
    "INVITELINK_TRIGGER_FLOOD_BATCHES_PER_MINUTE": "1000000",
    "INVITELINK_TRIGGER_FLOOD_RECIPIENTS_PER_HOUR": "1000000000",
}
STORED = text(
    "SELECT count(*), count(DISTINCT d.contact_id), count(DISTINCT d.token_id), "
    "count(DISTINCT t.contact_id), sum(CASE WHEN d.status = 'queued' THEN 1 ELSE 0 END) "
    "FROM deliveries d JOIN mailings m ON m.id = d.mailing_id JOIN tokens t ON t.id = d.token_id "
    "WHERE m.survey_id = :survey_id AND m.kind = 'trigger' AND t.contact_id = d.contact_id"
)


@dataclass
class Series:
    """One version's calls: per round, the median and p95 of its call times (seconds)."""

    label: str
    medians: list[float] = field(default_factory=list)
    p95s: list[float] = field(default_factory=list)

    def add(self, times: list[float]) -> str:
        median, p95 = statistics.median(times), percentile(times, 95)
        self.medians.append(median)
        self.p95s.append(p95)
        return f"{self.label:<36} median {ms(median)}  p95 {ms(p95)}  max {ms(max(times))}"

    def summary(self, recipients: int) -> str:
        median = statistics.median(self.medians)
        return (
            f"{self.label:<36} median {ms(median)} (rounds {ms(min(self.medians)).strip()}-"
            f"{ms(max(self.medians)).strip()})  p95 {ms(statistics.median(self.p95s))} (rounds "
            f"{ms(min(self.p95s)).strip()}-{ms(max(self.p95s)).strip()})  {recipients / median:7.0f} recipients/s"
        )


def ms(seconds: float) -> str:
    return f"{seconds * 1000:7.1f} ms"


def percentile(values: list[float], p: int) -> float:
    """Linear interpolation between the closest ranks (numpy's default)."""
    ordered = sorted(values)
    rank = (len(ordered) - 1) * p / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def bodies(tag: str, calls: int, recipients: int) -> list[bytes]:
    return [
        json.dumps(
            {
                "emails": [
                    {"email": f"{tag}-b{call}-r{i}@example.com", "name": f"Recipient {i}"} for i in range(recipients)
                ],
                "metadata": {"campaign": "bench", "batch": call},
            }
        ).encode()
        for call in range(calls)
    ]


def time_calls(client: httpx.Client, headers: dict[str, str], payloads: list[bytes]) -> list[float]:
    """Seconds per call, one call at a time; the first payload is the uncounted warm-up."""
    headers = {**headers, "Content-Type": "application/json"}
    times = []
    for number, payload in enumerate(payloads):
        started = time.perf_counter()
        response = client.post(PATH, content=payload, headers=headers)
        elapsed = time.perf_counter() - started
        if response.status_code != 200:
            raise SystemExit(f"call {number} answered {response.status_code}: {response.text[:500]}")
        if number:
            times.append(elapsed)
    return times


def check_stored(database_url: str, survey_id: int, expected: int) -> None:
    """Every recipient of every call (warm-up included): one delivery, queued, with a token of its own contact."""
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            deliveries, contacts, tokens, holders, queued = conn.execute(STORED, {"survey_id": survey_id}).one()
    finally:
        engine.dispose()
    if not deliveries == contacts == tokens == holders == queued == expected:
        raise SystemExit(
            f"stored {deliveries} deliveries ({queued} queued) to {contacts} contacts with {tokens} tokens of "
            f"{holders} contacts; expected {expected} of each"
        )


def measure_service(args: argparse.Namespace, tree: Tree, round_number: int) -> list[float]:
    with (
        scratch_database(args.database_url, "invitelink_bench_trigger") as url,
        service(url, SERVICE_ENV, src_path=tree.src_path) as svc,
    ):
        survey_id = svc.demo["survey"]["id"]
        admin = {"Authorization": f"Bearer {svc.demo['admin']['token']}"}
        with httpx.Client(base_url=svc.base, timeout=120) as client:
            created = client.post(
                f"/admin/v1/surveys/{survey_id}/trigger-tokens", json={"name": "bench"}, headers=admin
            )
            created.raise_for_status()
            token = {"Authorization": f"Bearer {created.json()['secret']}"}
            payloads = bodies(f"r{round_number}", args.batches + 1, args.recipients)
            times = time_calls(client, token, payloads)
        check_stored(url, survey_id, len(payloads) * args.recipients)
        return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, default=20, help="measured calls per version and round (default 20)")
    parser.add_argument("--recipients", type=int, default=1000, help="new recipients per call (default 1000)")
    parser.add_argument("--rounds", type=int, default=3, help="times each version is measured, alternately")
    parser.add_argument(
        "--ref", action="append", default=[], metavar="GITREF", help="also measure the code at this commit"
    )
    parser.add_argument(
        "--tree",
        action="append",
        default=[],
        type=Path,
        metavar="DIR",
        help="also measure the code in DIR (src/ and migrations/, e.g. a variant of the working tree)",
    )
    parser.add_argument(
        "--database-url",
        default=None,
        help="a PostgreSQL server to create scratch databases on (default: SQLite in a temporary folder)",
    )
    args = parser.parse_args()
    if args.batches < 2 or args.recipients < 1 or args.rounds < 1:
        parser.error("--batches must be >= 2, --recipients and --rounds >= 1")

    with ExitStack() as stack:
        trees = [stack.enter_context(checkout(ref)) for ref in args.ref]
        trees += [stack.enter_context(folder_tree(folder)) for folder in args.tree]
        trees.append(stack.enter_context(current_tree()))
        bare_port = stack.enter_context(bare("/docs"))
        print(
            f"trigger call with {args.recipients} new recipients, {args.batches} calls one after another "
            f"(+1 warm-up) per version and round, {engine_name(args.database_url)}, {args.rounds} rounds"
        )
        print(f"versions: {'; '.join(t.description for t in trees)}")
        baseline = Series("bare FastAPI (parse, no database)")
        series = [Series(f"invitelink {t.label}") for t in trees]
        for round_number in range(1, args.rounds + 1):
            print(f"round {round_number}")
            print(f"  {load_average()}")
            with httpx.Client(base_url=f"http://127.0.0.1:{bare_port}", timeout=120) as bare_client:
                payloads = bodies(f"bare{round_number}", args.batches + 1, args.recipients)
                print(f"  {baseline.add(time_calls(bare_client, {}, payloads))}", flush=True)
            for tree, results in zip(trees, series, strict=True):
                print(f"  {load_average()}")
                print(f"  {results.add(measure_service(args, tree, round_number))}", flush=True)

    print(f"median over {args.rounds} rounds (range of the rounds' figures)")
    for results in (baseline, *series):
        print(f"  {results.summary(args.recipients)}")
    current = series[-1]
    for older in series[:-1]:
        ratios = [c / o for c, o in zip(current.medians, older.medians, strict=True)]
        print(
            f"current / {older.label.removeprefix('invitelink ')} median time: {statistics.median(ratios):.2f} "
            f"(per round {', '.join(f'{r:.2f}' for r in ratios)})"
        )
    print(TARGET)


if __name__ == "__main__":
    main()
