"""A small keep-alive HTTP/1.1 load generator (asyncio streams): cheap enough per request that on a 2-core
machine the server, not the client, is what gets measured."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Result:
    name: str
    requests: int = 0
    errors: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)

    @property
    def throughput(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def percentile(self, p: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] * 1000

    def line(self) -> str:
        return (
            f"{self.name:<28} {self.throughput:9.1f} req/s   p50 {self.percentile(50):7.2f} ms   "
            f"p99 {self.percentile(99):7.2f} ms   errors {self.errors}   ({self.requests} requests)"
        )


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    length = 0
    for line in lines[1:]:
        if line.lower().startswith("content-length:"):
            length = int(line.split(":", 1)[1])
    if length:
        await reader.readexactly(length)
    return status


async def run(
    name: str,
    host: str,
    port: int,
    path_for: Callable[[int], str],
    *,
    connections: int,
    seconds: float,
    warmup: float = 1.0,
    body_for: Callable[[int], bytes] | None = None,
    headers: dict[str, str] | None = None,
) -> Result:
    """Each connection sends requests back to back; the first ``warmup`` seconds are not counted.

    With ``body_for``, requests are POSTs of that JSON body; ``headers`` go on every request."""
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    result = Result(name)
    counter = iter(range(10**12))
    start = time.perf_counter()
    measure_from = start + warmup
    stop_at = measure_from + seconds

    async def connection() -> None:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while True:
                now = time.perf_counter()
                if now >= stop_at:
                    return
                n = next(counter)
                if body_for is None:
                    request = f"GET {path_for(n)} HTTP/1.1\r\nHost: {host}:{port}\r\n{extra}\r\n".encode()
                else:
                    body = body_for(n)
                    request = (
                        f"POST {path_for(n)} HTTP/1.1\r\nHost: {host}:{port}\r\n{extra}"
                        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
                    ).encode() + body
                sent = time.perf_counter()
                writer.write(request)
                try:
                    status = await _read_response(reader)
                except (asyncio.IncompleteReadError, ConnectionError):
                    if sent >= measure_from:
                        result.errors += 1
                    writer.close()
                    reader, writer = await asyncio.open_connection(host, port)
                    continue
                done = time.perf_counter()
                if sent >= measure_from:
                    result.requests += 1
                    result.latencies.append(done - sent)
                    if status != 200:
                        result.errors += 1
        finally:
            writer.close()

    await asyncio.gather(*(connection() for _ in range(connections)))
    result.seconds = seconds
    return result
