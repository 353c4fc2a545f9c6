"""Reading parameters the way integrations send them: query string, form body or JSON body alike."""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request

from invitelink.services.errors import InvalidInput

MAX_VALUE_LENGTH = 1000
NUL_MESSAGE = "text must not contain NUL characters (\\u0000)"


def reject_nul(value: Any, where: str = "") -> None:
    """400 for a NUL character anywhere in ``value`` (keys and nested values too). PostgreSQL cannot store one in
    text or JSONB, so it would fail deep in a write; SQLite would store it, so the engines would differ."""
    if isinstance(value, str):
        if "\x00" in value:
            raise InvalidInput(f"{where}: {NUL_MESSAGE}" if where else NUL_MESSAGE, field=where or None)
    elif isinstance(value, dict):
        for key, item in value.items():
            reject_nul(key, where)
            reject_nul(item, where or str(key))
    elif isinstance(value, list):
        for item in value:
            reject_nul(item, where)


def no_nul(data: Any) -> Any:
    """The same check as a pydantic ``model_validator(mode="before")``: a ValueError becomes the model's own
    validation error (422 in the admin API)."""
    try:
        reject_nul(data)
    except InvalidInput as exc:
        raise ValueError(exc.message) from None
    return data


def json_object(raw: bytes) -> dict[str, Any]:
    """A request body that must be a JSON object; an empty body is an empty object."""
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"the body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise InvalidInput("the JSON body must be an object")
    reject_nul(body)
    return body


def bearer(request: Request) -> str | None:
    """The credentials of an ``Authorization: Bearer …`` header, if there is one."""
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    return credentials.strip() or None if scheme.lower() == "bearer" else None


async def merged_params(request: Request) -> dict[str, str]:
    """Query parameters, overridden by the body's (form or JSON object). Values must be strings or numbers."""
    params: dict[str, Any] = dict(request.query_params)
    if request.method == "POST":
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type == "application/json":
            params.update(json_object(await request.body()))
        elif content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
            form = await request.form()
            params.update({k: v for k, v in form.items() if isinstance(v, str)})
    result: dict[str, str] = {}
    for key, value in params.items():
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise InvalidInput(f"{key} must be a string", field=key)
        text = str(value)
        if len(text) > MAX_VALUE_LENGTH:
            raise InvalidInput(f"{key} is longer than {MAX_VALUE_LENGTH} characters", field=key)
        reject_nul(text, key)
        result[key] = text
    return result
