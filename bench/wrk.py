"""Load from wrk (https://github.com/wg/wrk), a C client that costs the server's 2 cores far less than a Python one.

Every request gets a uid of its own (bench/wrk_templated.lua puts "<thread>-<n>" in the URL's path and query), and
the script's done() prints one JSON line that :func:`run_wrk` parses into a :class:`WrkResult`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent / "wrk_templated.lua"
# The script's placeholders: "<thread>-<n>", unique within a run, and a random number below its first argument.
UNIQUE = "__N__"
RANDOM = "__R__"
MARKER = "WRK_RESULT "


@dataclass
class WrkResult:
    name: str
    requests: int
    seconds: float
    errors: int
    """Every failed request: connect, read, write and timeout errors, and responses outside 2xx."""
    error_kinds: dict[str, int] = field(default_factory=dict)
    p50: float = float("nan")
    p90: float = float("nan")
    p99: float = float("nan")
    """Latency percentiles in ms."""

    @property
    def throughput(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def line(self) -> str:
        kinds = ", ".join(f"{kind} {count}" for kind, count in self.error_kinds.items() if count)
        return (
            f"{self.name:<28} {self.throughput:9.1f} req/s   p50 {self.p50:7.2f} ms   "
            f"p99 {self.p99:7.2f} ms   errors {self.errors}{f' ({kinds})' if kinds else ''}   "
            f"({self.requests} requests)"
        )


def wrk_binary() -> str:
    path = shutil.which("wrk")
    if path is None:
        raise SystemExit("wrk not found on PATH: install it (Debian/Ubuntu: apt-get install wrk)")
    return path


def _templated(path: str) -> bool:
    """A path that places its varying part itself; any other gets the unique part at its end."""
    return UNIQUE in path or RANDOM in path


def run_wrk(
    url_base: str,
    path_prefix: str,
    threads: int,
    connections: int,
    seconds: int,
    *,
    name: str = "",
    timeout: int = 5,
    script_args: Sequence[str] = (),
    method: str = "GET",
    body: str | None = None,
    headers: dict[str, str] | None = None,
) -> WrkResult:
    """``connections`` keep-alive connections over ``threads`` threads send GET requests back to back for ``seconds``.

    Request paths are ``path_prefix`` + "<thread>-<n>" (``url_base`` is "http://host:port"); ``path_prefix`` should
    end inside the value that must differ per request, e.g. "/p/?act=x&uid=bench-". A request unanswered after
    ``timeout`` seconds counts as an error. ``path_prefix`` may instead place the unique part itself ("__N__"), and
    "__R__" (a random number below ``script_args[0]``): see bench/wrk_templated.lua. ``method``, ``body`` (templated
    like the path; with a body, the path is used as given) and ``headers`` go to the script through the
    environment."""
    if not path_prefix.startswith("/"):
        raise ValueError(f"path_prefix must start with '/': {path_prefix!r}")
    command = [
        wrk_binary(),
        f"--threads={threads}",
        f"--connections={max(connections, threads)}",
        f"--duration={int(seconds)}s",
        f"--timeout={int(timeout)}s",
        f"--script={SCRIPT}",
        f"{url_base.rstrip('/')}{path_prefix if _templated(path_prefix) or body is not None else path_prefix + UNIQUE}",
        *(["--", *script_args] if script_args else []),
    ]
    header_lines = "\n".join(f"{name}: {value}" for name, value in (headers or {}).items())
    env = {**os.environ, "WRK_METHOD": method, "WRK_HEADERS": header_lines}
    if body is not None:
        env["WRK_BODY"] = body
    completed = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
    lines = [line for line in completed.stdout.splitlines() if line.startswith(MARKER)]
    if completed.returncode != 0 or not lines:
        raise SystemExit(
            f"wrk failed (exit {completed.returncode}): {' '.join(command)}\n{completed.stdout}{completed.stderr}"
        )
    data = json.loads(lines[-1][len(MARKER) :])
    kinds: dict[str, int] = data["errors"]
    latency: dict[str, float] = data["latency_ms"]
    # wrk's own "status" counts answers >= 400, which the script's "non_2xx" includes: count them once.
    errors = sum(count for kind, count in kinds.items() if kind != "status")
    return WrkResult(
        name=name or path_prefix,
        requests=int(data["requests"]),
        seconds=data["duration_us"] / 1e6,
        errors=errors,
        error_kinds=kinds,
        p50=latency["p50"],
        p90=latency["p90"],
        p99=latency["p99"],
    )
