"""Liveness and readiness."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from invitelink.app import create_app
from invitelink.config import Settings


def test_ready_when_migrated(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ok"


def _client(url: str, tmp_path: Path) -> TestClient:
    return TestClient(create_app(Settings(database_url=url, var_dir=tmp_path, _env_file=None)))


def test_not_ready_when_not_migrated(tmp_path: Path) -> None:
    with _client(f"sqlite:///{tmp_path / 'empty.db'}", tmp_path) as client:
        response = client.get("/readyz")
        assert response.status_code == 503
        assert "invitelink migrate" in response.json()["detail"]
        assert client.get("/healthz").status_code == 200


def test_not_ready_when_database_unreachable(tmp_path: Path) -> None:
    # Port 9 (discard) on loopback: nothing listens, the connection is refused at once.
    with _client("postgresql+psycopg://nobody@127.0.0.1:9/none?connect_timeout=2", tmp_path) as client:
        response = client.get("/readyz")
        assert response.status_code == 503
        assert response.json()["detail"].startswith("database unreachable")


def test_docs_and_openapi_describe_the_admin_api(client: TestClient) -> None:
    assert client.get("/docs").status_code == 200
    spec = client.get("/openapi.json").json()
    assert spec["components"]["securitySchemes"]["OAuth2PasswordBearer"]["flows"]["password"]["tokenUrl"] == (
        "/admin/v1/auth/token"
    )
    results = spec["paths"]["/admin/v1/surveys/{survey_id}/results"]["get"]
    assert results["tags"] == ["results"] and results["summary"]
    untagged = [(p, m) for p, ops in spec["paths"].items() for m, op in ops.items() if not op.get("tags")]
    assert untagged == []
