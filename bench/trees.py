"""What a before/after benchmark runs on: the code (the working tree as it is now, or a git ref), a scratch database
per run (a new PostgreSQL database next to --database-url's, or SQLite in a temporary folder), and how busy the
machine is (the load average, printed before each measurement)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from harness import BENCH, own_migrations, working_tree_copy, worktree
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url


@dataclass(frozen=True)
class Tree:
    label: str
    """Short, for result lines: "current" or the ref as given."""
    description: str
    src_path: Path


def git(*args: str) -> str:
    return subprocess.run(
        ["git", "--no-optional-locks", "-C", str(BENCH.parent), *args], capture_output=True, text=True, check=True
    ).stdout.strip()


@contextmanager
def current_tree() -> Iterator[Tree]:
    """The working tree as it is now (copied: it may be edited while this runs)."""
    head = git("rev-parse", "--short", "HEAD")
    changed = git("status", "--porcelain", "--", "src", "migrations", "alembic.ini")
    with working_tree_copy() as path:
        state = " + uncommitted changes" if changed else ", unchanged"
        yield Tree("current", f"current = the working tree at start ({head}{state}; copied)", path / "src")


@contextmanager
def folder_tree(root: Path) -> Iterator[Tree]:
    """The code in ``root`` (a checkout or a copy of one: its src/ and migrations/), copied as it is now."""
    if not (root / "src" / "invitelink").is_dir() or not (root / "migrations" / "env.py").is_file():
        raise SystemExit(f"--tree {root}: needs src/invitelink/ and migrations/")
    copy = Path(tempfile.mkdtemp(prefix="invitelink-bench-tree-"))
    try:
        ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "migrations")
        shutil.copytree(root / "src", copy / "src", ignore=ignore)
        shutil.copytree(root / "migrations", copy / "migrations", ignore=shutil.ignore_patterns("__pycache__"))
        own_migrations(copy)
        yield Tree(str(root), f"{root} (copied)", copy / "src")
    finally:
        shutil.rmtree(copy, ignore_errors=True)


@contextmanager
def checkout(ref: str) -> Iterator[Tree]:
    """The tree at ``ref`` (a `git worktree` in a temporary folder, removed afterwards)."""
    try:
        short = git("rev-parse", "--short", f"{ref}^{{commit}}")
    except subprocess.CalledProcessError:
        raise SystemExit(f"--ref {ref}: not a commit in this repository") from None
    with worktree(short) as path:
        yield Tree(ref, f"{ref} = {short} (git worktree)", path / "src")


@contextmanager
def scratch_database(server_url: str | None, prefix: str) -> Iterator[str]:
    """The URL of a new, empty database, dropped afterwards: on ``server_url``'s PostgreSQL server (the database it
    names is only connected to), or SQLite in a temporary folder when ``server_url`` is None."""
    if server_url is None:
        with tempfile.TemporaryDirectory(prefix=f"{prefix}-") as folder:
            yield f"sqlite:///{folder}/bench.db"
        return
    url = make_url(server_url)
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            yield url.set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


def engine_name(database_url: str | None) -> str:
    return "SQLite" if database_url is None else make_url(database_url).get_backend_name()


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f}, {five:.2f}, {fifteen:.2f} ({os.cpu_count()} cores)"
