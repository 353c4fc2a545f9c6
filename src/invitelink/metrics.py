"""``GET /metrics`` in the Prometheus text format.

Two kinds of figures:
- per process, counted as requests pass (``access_log.RequestLog``): requests and their latency per API family;
  and set by the worker embedded in the process (``worker/relay.RELAY_UP``): whether its relay takes mail;
- shared by every process, read from the database at scrape time (``services/metrics.queue_figures``): deliveries
  and webhook messages by status, webhook attempts, the queue's depth and the age of its oldest due delivery.

With ``invitelink serve --workers N`` the per-process figures use prometheus-client's multiprocess mode
(``PROMETHEUS_MULTIPROC_DIR``, set by the command), so any worker answering a scrape reports the sum of all of them
(the relay gauge: the lowest, so one worker that finds its relay down shows).
"""

from __future__ import annotations

import hmac
import os

from fastapi import APIRouter, Request, Response
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from invitelink.config import Settings
from invitelink.families.registry import family_for
from invitelink.services.metrics import QueueFigures, queue_figures

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# Paths the app serves itself, outside any API family: counted apart so probes and scrapes do not swell SoSci's
# figures (its prefix "/" owns every other path).
APP_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"})

REQUESTS = Counter(
    "invitelink_http_requests",
    "HTTP requests answered, by API family and status code.",
    ["family", "status"],
)
LATENCY = Histogram(
    "invitelink_http_request_duration_seconds",
    "Time from a request's arrival to the end of its answer, by API family.",
    ["family"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)


def family_label(path: str) -> str:
    return "app" if path in APP_PATHS or path.startswith("/docs/") else family_for(path).name


def observe_request(family: str, status: int, seconds: float) -> None:
    REQUESTS.labels(family, str(status)).inc()
    LATENCY.labels(family).observe(seconds)


class QueueCollector(Collector):
    """The database figures of one scrape, as gauges (read before, in the thread pool, not in ``collect``)."""

    def __init__(self, figures: QueueFigures) -> None:
        self.figures = figures

    def collect(self) -> list[GaugeMetricFamily]:
        f = self.figures
        deliveries = GaugeMetricFamily("invitelink_deliveries", "Deliveries by status.", labels=["status"])
        for status, count in sorted(f.deliveries_by_status.items()):
            deliveries.add_metric([status], count)
        messages = GaugeMetricFamily(
            "invitelink_webhook_messages", "Webhook and postback messages by status.", labels=["status"]
        )
        for status, count in sorted(f.webhook_messages_by_status.items()):
            messages.add_metric([status], count)
        attempts = GaugeMetricFamily(
            "invitelink_webhook_attempts",
            "Webhook and postback attempts stored, by outcome (ok: a 2xx answer).",
            labels=["outcome"],
        )
        for outcome, count in sorted(f.webhook_attempts_by_outcome.items()):
            attempts.add_metric([outcome], count)
        return [
            deliveries,
            messages,
            attempts,
            GaugeMetricFamily(
                "invitelink_queue_due_deliveries", "Deliveries a worker would claim now.", value=f.due_deliveries
            ),
            GaugeMetricFamily(
                "invitelink_queue_oldest_due_age_seconds",
                "How long the oldest due delivery has waited (0: none is due).",
                value=f.oldest_due_age_seconds,
            ),
        ]


def _process_figures() -> bytes:
    if os.environ.get(MULTIPROC_ENV):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry)
    return generate_latest(REGISTRY)


def _authorized(request: Request, token: str | None) -> bool:
    if not token:
        return True
    sent = request.headers.get("authorization", "").encode()
    # Constant time: how much of a guess matched must not show in the answer's timing.
    return hmac.compare_digest(sent, f"Bearer {token}".encode())


router = APIRouter()


@router.get("/metrics", include_in_schema=False)
async def metrics_endpoint(request: Request) -> Response:
    settings = request.app.state.settings
    if not _authorized(request, settings.metrics_token):
        return Response(
            "a bearer token is required\n", status_code=401, headers={"WWW-Authenticate": 'Bearer realm="metrics"'}
        )
    figures = await request.app.state.database.read(queue_figures)
    scrape = CollectorRegistry(auto_describe=False)
    scrape.register(QueueCollector(figures))
    body = _process_figures() + generate_latest(scrape)
    return Response(body, media_type=CONTENT_TYPE_LATEST)


def share_metrics_between_workers(settings: Settings) -> None:
    """Before ``uvicorn.run(workers=N)``: the workers it spawns (new interpreters, which inherit the environment)
    keep their counters in files of one directory, emptied here so a restart starts from zero."""
    if os.environ.get(MULTIPROC_ENV):
        return  # the operator chose the directory (and owns its cleanup)
    directory = settings.var_dir / "metrics"
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.db"):
        stale.unlink()
    os.environ[MULTIPROC_ENV] = str(directory.resolve())
