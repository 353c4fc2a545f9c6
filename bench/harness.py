"""Starting what a benchmark measures: `invitelink serve` on a fresh database (seeded by `invitelink demo`), and the
bare FastAPI baseline (bench/bare_app.py), each as its own uvicorn process."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.request import urlopen

BENCH = Path(__file__).resolve().parent
PYTHON = sys.executable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(url: str, seconds: float = 60, process: subprocess.Popen[bytes] | None = None) -> None:
    """Until ``url`` answers 200; fails after ``seconds``, or as soon as ``process`` (the server) has exited."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise SystemExit(f"{url} did not come up: the server exited with {process.returncode}")
        try:
            with urlopen(url, timeout=1) as response:  # noqa: S310 - loopback URL we built
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"{url} did not come up")


@dataclass
class Service:
    port: int
    base: str
    demo: dict[str, Any]
    env: dict[str, str]


def _check_imports_from(src_path: Path, env: dict[str, str], cwd: Path) -> None:
    """Fails unless a Python started with ``env`` imports invitelink from ``src_path`` (not the editable install)."""
    found = subprocess.run(
        [PYTHON, "-c", "import invitelink; print(invitelink.__file__)"],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    if not Path(found).resolve().is_relative_to(src_path.resolve()):
        raise SystemExit(f"PYTHONPATH={src_path} did not take precedence: invitelink was imported from {found}")


def own_migrations(root: Path) -> None:
    """Make ``root``'s src/invitelink find ``root``'s migrations. An editable install maps `invitelink.migrations`
    to the main checkout's migrations/, so code run from another tree with PYTHONPATH would otherwise migrate with
    the main tree's (possibly newer) revisions; a package folder of that name inside the tree is found first."""
    link = root / "src" / "invitelink" / "migrations"
    if not link.exists():
        link.symlink_to(root / "migrations", target_is_directory=True)


@contextmanager
def worktree(ref: str) -> Iterator[Path]:
    """A detached checkout of ``ref`` in a temporary folder (`git worktree add`), removed afterwards; yields its path.

    Leaves the main working tree and index alone."""
    root = BENCH.parent
    parent = Path(tempfile.mkdtemp(prefix="invitelink-bench-ref-"))
    path = parent / "tree"
    subprocess.run(
        ["git", "-C", str(root), "worktree", "add", "--quiet", "--detach", str(path), ref],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    own_migrations(path)
    try:
        yield path
    finally:
        subprocess.run(["git", "-C", str(root), "worktree", "remove", "--force", str(path)], check=False)
        shutil.rmtree(parent, ignore_errors=True)


@contextmanager
def working_tree_copy() -> Iterator[Path]:
    """A copy of the working tree's src/, migrations/ and alembic.ini, as they are now, in a temporary folder, removed
    afterwards; yields its path. Runs that start the service several times measure the same code even while the
    working tree is being edited."""
    root = BENCH.parent
    path = Path(tempfile.mkdtemp(prefix="invitelink-bench-current-"))
    try:
        ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
        shutil.copytree(root / "src", path / "src", ignore=ignore)
        shutil.copytree(root / "migrations", path / "migrations", ignore=ignore)
        shutil.copy2(root / "alembic.ini", path / "alembic.ini")
        own_migrations(path)
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@contextmanager
def service(
    database_url: str | None = None,
    extra_env: dict[str, str] | None = None,
    before_serve: Callable[[str, dict[str, Any]], None] | None = None,
    *,
    src_path: Path | None = None,
    workers: int = 1,
) -> Iterator[Service]:
    """A demo workspace and `invitelink serve` on it (SQLite in a temporary folder unless ``database_url``).

    ``before_serve(database_url, demo)`` may add data before the server starts. ``src_path``: run the invitelink
    package found there (e.g. the src/ of a :func:`worktree`) instead of the installed one, for both the demo seeding
    and the server. ``workers``: uvicorn worker processes (`invitelink serve --workers`)."""
    work = Path(tempfile.mkdtemp(prefix="invitelink-bench-"))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("INVITELINK_")}
    env.update(
        {
            "INVITELINK_DATABASE_URL": database_url or f"sqlite:///{work}/bench.db",
            "INVITELINK_VAR_DIR": str(work),
            "INVITELINK_PUBLIC_URL": f"http://127.0.0.1:{port}",
            "INVITELINK_SECRET_KEY": "bench",
            **(extra_env or {}),
        }
    )
    if src_path is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(src_path), *filter(None, [env.get("PYTHONPATH")])])
        _check_imports_from(src_path, env, work)
    demo = json.loads(
        subprocess.run(
            [PYTHON, "-m", "invitelink.cli", "demo", "--json"],
            env=env,
            cwd=work,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    if before_serve is not None:
        before_serve(env["INVITELINK_DATABASE_URL"], demo)
    command = [PYTHON, "-m", "invitelink.cli", "serve", "--port", str(port)]
    if workers != 1:
        command += ["--workers", str(workers)]
    log_path = work / "serve.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, env=env, cwd=work, stdout=subprocess.DEVNULL, stderr=log)
    try:
        try:
            wait_for(f"http://127.0.0.1:{port}/readyz", process=process)
        except SystemExit as exc:
            tail = log_path.read_text(errors="replace")[-3000:]
            raise SystemExit(f"{exc}; `invitelink serve` stderr ({log_path}):\n{tail}") from None
        yield Service(port, f"http://127.0.0.1:{port}", demo, env)
    finally:
        process.terminate()
        process.wait(timeout=30)


@contextmanager
def bare(probe_path: str, workers: int = 1) -> Iterator[int]:
    """The bare baseline app (``workers`` uvicorn worker processes); yields its port once ``probe_path`` answers 200."""
    port = free_port()
    command = [PYTHON, "-m", "uvicorn", "bare_app:app", "--port", str(port), "--no-access-log"]
    command += ["--log-level", "warning", "--workers", str(workers)]
    process = subprocess.Popen(
        command,
        cwd=BENCH,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(f"http://127.0.0.1:{port}{probe_path}", process=process)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=30)
