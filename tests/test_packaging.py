"""An installed invitelink (a wheel, not the checkout) finds its migrations from any folder, on both engines."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import uuid
import venv
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import PG_URL, create_pg_database, drop_pg_database

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the project's wheel installed, built as pip builds it for any user; its dependencies come
    from this test's environment (a .pth line) rather than a second download of all of them."""
    work = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(work), str(ROOT)],
        check=True,
        capture_output=True,
    )
    wheel = next(work.glob("invitelink-*.whl"))
    target = work / "venv"
    venv.create(target, with_pip=True)
    python = target / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
        check=True,
        capture_output=True,
    )
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    # Appended after the venv's own site-packages: the wheel's invitelink wins over this environment's editable one.
    (Path(site) / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return target


@pytest.fixture(params=["sqlite", *(["postgresql"] if PG_URL else [])])
def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'fresh.db'}"
        return
    assert PG_URL is not None
    name = f"invitelink_wheel_{uuid.uuid4().hex[:8]}"
    url = create_pg_database(PG_URL, name)
    yield url
    drop_pg_database(PG_URL, name)


def test_the_installed_package_migrates_from_an_empty_folder(
    installed: Path, empty_database: str, tmp_path: Path
) -> None:
    folder = tmp_path / "anywhere"
    folder.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("INVITELINK_")}
    env.update({"INVITELINK_DATABASE_URL": empty_database, "INVITELINK_VAR_DIR": str(folder / "var")})
    where = subprocess.run(
        [str(installed / "bin" / "python"), "-c", "import invitelink.migrate as m; print(m.migrations_folder())"],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert where.startswith(str(installed)), f"migrations came from {where}, not the installed package"
    migrated = subprocess.run(
        [str(installed / "bin" / "invitelink"), "migrate"], cwd=folder, env=env, capture_output=True, text=True
    )
    assert migrated.returncode == 0, migrated.stderr
    assert "database is at head" in migrated.stderr
    assert list(folder.iterdir()) in ([], [folder / "var"])  # nothing written beside the caller but var/
