"""Swagger UI at /docs works without internet: a real `invitelink serve`, loaded in headless Chromium whose every
connection but loopback fails, renders the Authorize button and the operations. And the Authorize dialog lists the
admin login first, which `invitelink demo` names."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from invitelink.docs import ADMIN_SCHEME
from tests.live_server import live_server
from tests.test_cli import run_cli

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# A fixed place, so whoever ran the tests can look at what the page rendered.
SCREENSHOT = Path("/tmp/docs-offline.png")  # noqa: S108


def _chromium(url: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    return subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            f"--user-data-dir={profile}",
            "--window-size=1280,900",
            "--virtual-time-budget=5000",
            # The network cut off: no name resolves but loopback's, and every connection that is not to loopback
            # goes through a proxy where nothing listens (port 9, discard).
            "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
            "--proxy-server=http://127.0.0.1:9",
            *args,
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install -y chromium)")
def test_swagger_ui_renders_offline_from_installed_assets(db_url: str, tmp_path: Path) -> None:
    with live_server(db_url, tmp_path) as live:
        page = _chromium(f"{live.base}/docs", tmp_path / "profile", "--dump-dom")
        assert page.returncode == 0, page.stderr[-2000:]
        dom = page.stdout
        # Rendered by Swagger UI's JavaScript: none of this is in the HTML /docs sends.
        assert 'class="btn authorize' in dom
        assert "opblock" in dom
        assert "/admin/v1/auth/token" in dom
        assert "/api/invitation-trigger" in dom
        shot = _chromium(f"{live.base}/docs", tmp_path / "profile", f"--screenshot={SCREENSHOT}")
        assert shot.returncode == 0, shot.stderr[-2000:]
        assert SCREENSHOT.stat().st_size > 10_000


def test_docs_pages_and_assets_come_from_this_server(client: TestClient) -> None:
    for path in ("/docs", "/redoc"):
        html = client.get(path)
        assert html.status_code == 200
        assert "http" not in html.text.replace("http-equiv", ""), f"{path} loads something from elsewhere"
    assert "javascript" in client.get("/docs/assets/swagger-ui-bundle.js").headers["content-type"]
    assert client.get("/docs/assets/swagger-ui.css").headers["content-type"].startswith("text/css")
    assert client.get("/docs/assets/redoc.standalone.js").status_code == 200
    assert client.get("/docs/oauth2-redirect").status_code == 200
    assert client.get("/docs/assets/nothing.js").status_code == 404


def test_the_admin_login_is_the_first_scheme_in_the_authorize_dialog(client: TestClient) -> None:
    schemes = client.get("/openapi.json").json()["components"]["securitySchemes"]
    assert next(iter(schemes)) == ADMIN_SCHEME
    assert schemes[ADMIN_SCHEME]["flows"]["password"]["tokenUrl"] == "/admin/v1/auth/token"
    assert "e-mail" in schemes[ADMIN_SCHEME]["description"]
    assert all(scheme.get("description") for scheme in schemes.values())


def test_demo_says_what_to_paste_where(db_url: str, tmp_path: Path) -> None:
    demo = run_cli(["demo"], db_url, tmp_path)
    assert demo.returncode == 0, demo.stderr
    assert f"Authorize → {ADMIN_SCHEME}" in demo.stdout
    assert "admin tokens do not go there" in demo.stdout
