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
    """Parses the same JSON body as the real endpoint and answers the documented body, storing nothing."""
    return {
        "ok": True,
        "message": "Invitation queued.",
        "batch": {"uuid": secrets.token_hex(16), "scheduled_at": "2026-05-18 14:00:00", "status": "queued"},
    }


@app.post("/sandbox/v1/allocated_survey")
def allocated_survey(body: dict[str, object]) -> dict[str, object]:
    """Ten survey items of the documented shape, built in memory."""
    items = [
        {
            "survey_id": f"PROJ-{n:08X}",
            "name": f"Study {n}",
            "industry": "Healthcare",
            "segment": "B2B",
            "CPI": {"value": 6, "currency": "USD"},
            "survey_limit": {"USA": 100, "UK": 50},
            "IR": 40,
            "LOI": 20,
            "PII": "No",
            "status": "Active",
            "country": ["USA", "UK"],
            "description": "A benchmark survey.",
        }
        for n in range(10)
    ]
    return {
        "status": "success",
        "message": "Request processed successfully",
        "data": {"success": True, "TotalCount": 10000, "data": items},
    }
