"""Route order: the SoSci URL "/{project}/" is matched first (it is the hot path), which is only sound while no
other route of the service has the shape "/<segment>/"; the admin API comes after the other families; the slash-less
redirect comes last and shadows nothing."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import cast

from fastapi import FastAPI
from fastapi.testclient import TestClient

from invitelink.app import create_app
from invitelink.config import Settings

ONE_SEGMENT_WITH_SLASH = re.compile(r"/[^/]+/")


def _client(tmp_path: Path) -> TestClient:
    settings = Settings(database_url=f"sqlite:///{tmp_path}/routes.db", var_dir=tmp_path, worker="off", _env_file=None)
    return TestClient(create_app(settings))


def test_no_route_but_the_project_url_has_the_shape_of_one_segment_and_a_slash(tmp_path: Path) -> None:
    paths = set(cast(FastAPI, _client(tmp_path).app).openapi()["paths"])
    assert "/{project}/" in paths
    clashing = sorted(p for p in paths if ONE_SEGMENT_WITH_SLASH.fullmatch(p) and p != "/{project}/")
    assert clashing == [], f"these routes would be shadowed by /{{project}}/ (included first): {clashing}"
    # The admin API is matched after the other families: none of them may open with a path parameter, which
    # could match /admin/….
    opening_with_a_parameter = sorted(p for p in paths if p.startswith("/{") and p != "/{project}/")
    assert opening_with_a_parameter == []


def test_one_segment_routes_are_not_shadowed_by_the_project_redirect(tmp_path: Path) -> None:
    client = _client(tmp_path)
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/openapi.json").json()["info"]["title"] == "invitelink"
    assert "swagger" in client.get("/docs").text.lower()
    redirect = client.get("/my-study?d=ABC", follow_redirects=False)
    assert redirect.status_code == 308
    assert redirect.headers["location"] == "/my-study/?d=ABC"


def test_the_slash_less_route_takes_post_and_head_for_projects_only(tmp_path: Path) -> None:
    """The slash-less route answers POST and HEAD too (SoSci API calls without the slash): on the service's own
    one-segment paths those methods stay refused as before, and HEAD is answered where GET is."""
    client = _client(tmp_path)
    for path in ("/healthz", "/docs", "/openapi.json", "/readyz", "/unsubscribe?u=x", "/my-study?d=ABC"):
        head, get = client.head(path, follow_redirects=False), client.get(path, follow_redirects=False)
        assert head.status_code == get.status_code != 405, path
    for path in ("/healthz", "/readyz", "/docs", "/openapi.json"):
        refused = client.post(path)
        assert (refused.status_code, refused.json()) == (405, {"detail": "Method Not Allowed"}), path
    # A project's API call is the SoSci API's, whatever the database says (here: not migrated, so 503).
    api = client.post("/my-study?act=KEY", data={"uid": "a"})
    assert api.status_code != 405 and api.json()["result"] == "error"


FREEZE_PROBE = """
import gc, sys
from fastapi.testclient import TestClient
from invitelink import app
with TestClient(getattr(app, sys.argv[1])()):
    print(gc.get_freeze_count())
"""


def test_the_served_app_freezes_its_startup_heap_and_test_apps_do_not(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INVITELINK_")}
    env.update(
        INVITELINK_DATABASE_URL=f"sqlite:///{tmp_path}/freeze.db",
        INVITELINK_VAR_DIR=str(tmp_path),
        INVITELINK_WORKER="off",
    )

    def frozen(factory: str) -> int:
        run = subprocess.run(
            [sys.executable, "-c", FREEZE_PROBE, factory], env=env, capture_output=True, text=True, check=True
        )
        return int(run.stdout.split()[-1])

    assert frozen("serving_app") > 50_000  # the libraries' modules, classes and functions
    assert frozen("create_app") == 0
