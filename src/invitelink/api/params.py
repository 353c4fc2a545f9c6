"""Reading parameters the way integrations send them: query string, form body or JSON body alike."""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Iterable
from typing import Any

from fastapi import Request
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException

from invitelink.services.errors import InvalidInput

MAX_VALUE_LENGTH = 1000
# Starlette's own default; callers that expect more fields (a trigger call's recipients) pass their own.
MAX_FORM_FIELDS = 1000
# PHP-style nested field names (``emails[0][email]``): deeper than this is no client's encoding but an attack on the
# reader, which would otherwise recurse once per bracket.
MAX_FORM_DEPTH = 6
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
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


def parse_json_object(raw: bytes) -> dict[str, Any]:
    """A request body that must be a JSON object; an empty body is an empty object. Its values are not checked."""
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"the body is not valid JSON: {exc}") from exc
    except RecursionError:
        raise InvalidInput("the body is not valid JSON: nested too deeply") from None
    if not isinstance(body, dict):
        raise InvalidInput("the JSON body must be an object")
    return body


def json_object(raw: bytes) -> dict[str, Any]:
    """``parse_json_object``, with no NUL character anywhere in it: for bodies that are stored as a whole."""
    body = parse_json_object(raw)
    reject_nul(body)
    return body


def content_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


async def read_form(request: Request, max_fields: int = MAX_FORM_FIELDS) -> FormData:
    """The form body; a body the parser refuses (too many fields, a broken multipart body) is a 400 in the
    caller's family format, not Starlette's ``{"detail": …}``."""
    try:
        return await request.form(max_fields=max_fields)
    except HTTPException as exc:
        raise InvalidInput(f"the form body cannot be read: {exc.detail}") from None


_NESTED_NAME = re.compile(r"([^\[\]]+)((?:\[[^\[\]]*\])+)")
_SUBSCRIPT = re.compile(r"\[([^\[\]]*)\]")


def _next_index(node: dict[str, Any]) -> str:
    """Where ``name[]`` appends: after the highest index so far, as PHP does."""
    return str(max((int(key) for key in node if key.isdigit()), default=-1) + 1)


def _as_lists(node: Any) -> Any:
    """Containers whose keys are all indexes (``0``, ``1``, … or appended with ``[]``) become lists, in index
    order, as PHP reads them; other containers stay objects."""
    if not isinstance(node, dict):
        return node
    items = {key: _as_lists(value) for key, value in node.items()}
    if items and all(key.isdigit() for key in items):
        return [items[key] for key in sorted(items, key=int)]
    return items


def form_fields(pairs: Iterable[tuple[str, str]], lists: Collection[str] = ()) -> dict[str, Any]:
    """Form fields as the JSON object they encode, read the way PHP's ``http_build_query`` writes them:
    ``emails[0]=a&emails[1]=b`` is a list, ``emails[0][email]=a&emails[0][name]=A`` a list of objects,
    ``metadata[key]=value`` an object (``name[]`` appends). A plain name given twice keeps its last value, except
    the names in ``lists``, which collect every value (``emails=a&emails=b``)."""
    root: dict[str, Any] = {}
    for name, value in pairs:
        match = _NESTED_NAME.fullmatch(name)
        if match is None:
            if name in lists:
                existing = root.setdefault(name, {})
                if not isinstance(existing, dict):
                    raise InvalidInput(f"{name} is given both as one value and as a list", field=name)
                existing[_next_index(existing)] = value
            elif isinstance(root.get(name), dict):
                raise InvalidInput(f"{name} is given both as one value and as a list or object", field=name)
            else:
                root[name] = value
            continue
        base, keys = match.group(1), _SUBSCRIPT.findall(match.group(2))
        if len(keys) > MAX_FORM_DEPTH:
            raise InvalidInput(f"{base} is nested more than {MAX_FORM_DEPTH} levels deep", field=base)
        node = root
        for depth, key in enumerate([base, *keys]):
            last = depth == len(keys)
            if key == "":
                key = _next_index(node)
            if last:
                if isinstance(node.get(key), dict):
                    raise InvalidInput(f"{base} is given both as one value and as a list or object", field=base)
                node[key] = value
            else:
                child = node.setdefault(key, {})
                if not isinstance(child, dict):
                    raise InvalidInput(f"{base} is given both as one value and as a list or object", field=base)
                node = child
    return {name: _as_lists(value) for name, value in root.items()}


def bearer(request: Request) -> str | None:
    """The credentials of an ``Authorization: Bearer …`` header, if there is one."""
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    return credentials.strip() or None if scheme.lower() == "bearer" else None


async def merged_params(request: Request, names: Collection[str]) -> dict[str, str]:
    """The parameters ``names`` from the query string, overridden by the body's (form or JSON object). Their values
    must be strings or numbers. Whatever else a client sends along is ignored unread, whatever its type: shops post
    whole order records (``"paid": true``, nested objects, nulls), and only what the API reads can be wrong."""
    params: dict[str, Any] = {k: v for k, v in request.query_params.items() if k in names}
    if request.method == "POST":
        kind = content_type(request)
        if kind == "application/json":
            body = parse_json_object(await request.body())
            params.update({k: v for k, v in body.items() if k in names})
        elif kind in FORM_TYPES:
            form = await read_form(request)
            params.update({k: v for k, v in form.items() if k in names and isinstance(v, str)})
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
