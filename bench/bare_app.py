"""The baseline: a bare FastAPI endpoint returning a create_link body, with no database behind it."""

from __future__ import annotations

import secrets

from fastapi import FastAPI

app = FastAPI()


@app.get("/{project}/")
def create_link(project: str, act: str = "", uid: str = "") -> dict[str, object]:
    token = secrets.token_hex(8).upper()
    return {"result": "ok", "token": token, "url": f"http://127.0.0.1/{project}/?d={token}", "error": None}


@app.post("/api/invitation-trigger")
def invitation_trigger(body: dict[str, object]) -> dict[str, object]:
    """Parses the same JSON body as the real endpoint and answers the seed's body, storing nothing."""
    return {
        "ok": True,
        "message": "Invitation queued.",
        "batch": {"uuid": secrets.token_hex(16), "scheduled_at": "2026-05-18 14:00:00", "status": "queued"},
    }
