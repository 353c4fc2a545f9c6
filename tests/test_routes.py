"""Route order: the SoSci URL "/{project}/" is matched first (it is the hot path), which is only sound while no
other route of the service has the shape "/<segment>/"; the admin API comes after the other families; the slash-less
redirect comes last and shadows nothing."""

from __future__ import annotations

import re
from pathlib import Path

from fastapi.testclient import TestClient

from invitelink.app import create_app
from invitelink.config import Settings

ONE_SEGMENT_WITH_SLASH = re.compile(r"/[^/]+/")


def _client(tmp_path: Path) -> TestClient:
    settings = Settings(database_url=f"sqlite:///{tmp_path}/routes.db", var_dir=tmp_path, worker="off", _env_file=None)  # type: ignore[call-arg]
    return TestClient(create_app(settings))


def test_no_route_but_the_project_url_has_the_shape_of_one_segment_and_a_slash(tmp_path: Path) -> None:
    paths = set(_client(tmp_path).app.openapi()["paths"])  # type: ignore[attr-defined]
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
