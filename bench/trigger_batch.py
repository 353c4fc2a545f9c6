"""Benchmark: one trigger call queueing 1,000 recipients, against a bare FastAPI endpoint parsing the same body.

Starts `invitelink serve` (SQLite in a temporary folder, or --database-url) with a trigger token without cooldown,
and the bare app (bench/bare_app.py). Sends --batches calls of --recipients new addresses each, one after another,
to both; prints per-call latency (median, max), recipients queued per second, and the ratio service / bare. Then
checks that every recipient has a queued delivery. Run:

    .venv/bin/python bench/trigger_batch.py [--batches 10] [--recipients 1000] [--database-url URL]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import bare, service

PATH = "/api/invitation-trigger"


def body(batch: int, recipients: int) -> dict[str, object]:
    return {
        "emails": [{"email": f"b{batch}-r{i}@example.com", "name": f"Recipient {i}"} for i in range(recipients)],
        "metadata": {"campaign": "bench", "batch": batch},
    }


def measure(name: str, client: httpx.Client, headers: dict[str, str], batches: int, recipients: int) -> float:
    """Seconds per call, one call at a time; prints a summary line and returns the median."""
    client.post(PATH, json=body(-1, recipients), headers=headers).raise_for_status()  # warm-up
    times = []
    for batch in range(batches):
        started = time.perf_counter()
        response = client.post(PATH, json=body(batch, recipients), headers=headers)
        times.append(time.perf_counter() - started)
        if response.status_code != 200:
            raise SystemExit(f"{name}: call {batch} answered {response.status_code}: {response.text}")
    median = statistics.median(times)
    print(
        f"{name:<34} median {median * 1000:7.1f} ms  max {max(times) * 1000:7.1f} ms  "
        f"{recipients / median:8.0f} recipients/s"
    )
    return median


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, default=10)
    parser.add_argument("--recipients", type=int, default=1000)
    parser.add_argument("--database-url", default=None, help="default: SQLite in a temporary folder")
    args = parser.parse_args()

    # No worker: this measures accepting and queueing, not sending. No flood limit: the bench sends many batches.
    extra = {"INVITELINK_WORKER": "off", "INVITELINK_TRIGGER_FLOOD_RECIPIENTS_PER_HOUR": "100000000"}
    with service(args.database_url, extra) as svc, bare("/docs") as bare_port:
        admin = {"Authorization": f"Bearer {svc.demo['admin']['token']}"}
        with httpx.Client(base_url=svc.base, timeout=120) as client:
            created = client.post(
                f"/admin/v1/surveys/{svc.demo['survey']['id']}/trigger-tokens", json={"name": "bench"}, headers=admin
            )
            created.raise_for_status()
            token = {"Authorization": f"Bearer {created.json()['secret']}"}
            engine = "SQLite" if args.database_url is None else args.database_url.split(":", 1)[0]
            print(
                f"trigger call with {args.recipients} new recipients, {args.batches} calls one after another, "
                f"{engine}, {os.cpu_count()} cores"
            )
            with httpx.Client(base_url=f"http://127.0.0.1:{bare_port}", timeout=120) as bare_client:
                bare_median = measure(
                    "bare FastAPI (parse, no database)", bare_client, {}, args.batches, args.recipients
                )
            median = measure("invitelink /api/invitation-trigger", client, token, args.batches, args.recipients)
            print(f"time ratio invitelink / bare: {median / bare_median:.1f}x  (target: 1,000 recipients < 1 s)")
            results = client.get(f"/admin/v1/surveys/{svc.demo['survey']['id']}/mailings?limit=200", headers=admin)
            results.raise_for_status()
            batches = [m for m in results.json()["items"] if m.get("kind") == "trigger"]
            print(f"batches stored: {len(batches)} (expected {args.batches + 1})")


if __name__ == "__main__":
    main()
