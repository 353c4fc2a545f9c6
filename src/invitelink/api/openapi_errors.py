"""The error answers of every operation, written into the OpenAPI document.

FastAPI documents a success answer and, where a route validates its input, a 422 with its own body
(``HTTPValidationError``). Our families answer their errors in their own formats and with more statuses (a body over
the size limit, a database that cannot serve, a rate limit). A client generator, or a schema-driven test such as
schemathesis, reads the document as a promise: so every status an operation can answer is listed there, with the
body the family really sends."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from invitelink.api.errors import MAX_ID
from invitelink.families.registry import family_for

WRITE_METHODS = frozenset({"post", "put", "patch"})
HTML = {"text/html": {"schema": {"type": "string"}}}
REASONS = {
    302: "Redirect (a participant's browser is sent on)",
    400: "Bad request: a missing or invalid parameter",
    401: "Missing or invalid credential",
    403: "The credential may not do this",
    404: "Not found (or not visible to this credential)",
    405: "Method not allowed; see Allow",
    409: "Conflict with the stored state, or the same Idempotency-Key still running",
    410: "The survey is not open",
    413: "Request body over the size limit",
    422: "Unprocessable: validation failed, or an Idempotency-Key reused with another body",
    429: "Rate limit, cooldown or flood protection; see Retry-After",
    503: "Database or dependencies not ready; see Retry-After",
}


@dataclass(frozen=True)
class ErrorDoc:
    """How one family answers errors: the body's JSON Schema and the statuses its operations may answer."""

    schema: dict[str, Any]
    statuses: frozenset[int]


def _object(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": required}


OK_FALSE = _object({"ok": {"type": "boolean", "enum": [False]}, "error": {"type": "string"}}, ["ok", "error"])
ERRORS: dict[str, ErrorDoc] = {
    "admin": ErrorDoc(
        _object({"detail": {"type": "string"}, "field": {"type": "string"}}, ["detail"]),
        frozenset({400, 401, 403, 404, 409, 413, 422, 429, 503}),
    ),
    "sosci": ErrorDoc(
        _object({"result": {"type": "string", "enum": ["error"]}, "error": {"type": "string"}}, ["result", "error"]),
        frozenset({302, 400, 404, 405, 410, 413, 429, 503}),
    ),
    "participation": ErrorDoc(OK_FALSE, frozenset({302, 400, 401, 404, 410, 413, 503})),
    "trigger": ErrorDoc(OK_FALSE, frozenset({400, 401, 405, 409, 413, 422, 429, 503})),
    "supply": ErrorDoc(
        _object(
            {"apiStatus": {"type": "string", "enum": ["error"]}, "msg": {"type": "string"}, "result": {"type": "null"}},
            ["apiStatus", "msg", "result"],
        ),
        frozenset({302, 400, 401, 403, 404, 405, 409, 410, 413, 422, 429, 503}),
    ),
    "bounces": ErrorDoc(OK_FALSE, frozenset({400, 401, 404, 413, 503})),
}
# Routes outside the families (health probes, /metrics).
OTHER = ErrorDoc(_object({"detail": {"type": "string"}}, ["detail"]), frozenset({503}))


def _is_page(path: str, operation: dict[str, Any]) -> bool:
    """An operation a participant's browser opens: its errors are HTML pages as well. ``/{project}/`` serves the
    mailing API and, with ``?d=`` or ``?s=``, participants."""
    if path == "/{project}/":
        return True
    for status, response in operation.get("responses", {}).items():
        if status.startswith("3") or "text/html" in response.get("content", {}):
            return True
    return False


def _error_doc(path: str) -> ErrorDoc:
    if path in ("/healthz", "/readyz", "/metrics"):
        return OTHER
    return ERRORS.get(family_for(path).name, OTHER)


def document_errors(schema: dict[str, Any]) -> None:
    """Add each operation's error answers to ``schema`` (the generated OpenAPI document), in place."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for path, operations in schema.get("paths", {}).items():
        doc = _error_doc(path)
        name = f"{family_for(path).name.capitalize()}Error" if doc is not OTHER else "Error"
        components.setdefault(name, doc.schema)
        body = {"application/json": {"schema": {"$ref": f"#/components/schemas/{name}"}}}
        for method, operation in operations.items():
            responses: dict[str, Any] = operation.setdefault("responses", {})
            page = _is_page(path, operation)
            _bound_ids(operation)
            for status in sorted(doc.statuses):
                if status == 413 and method not in WRITE_METHODS:
                    continue
                if status == 302 and not page:
                    continue
                key = str(status)
                documented = responses.get(key)
                if status == 302:
                    responses.setdefault(key, {"description": REASONS[302]})
                    continue
                content = body | HTML if page else body
                if documented is None or _is_fastapi_validation(documented):
                    responses[key] = {"description": REASONS[status], "content": content}
                else:
                    # Keep the route's own description and example; the body is the family's.
                    documented.setdefault("content", {})
                    for media, value in content.items():
                        documented["content"].setdefault(media, {}).setdefault("schema", value["schema"])
            if "422" in responses and 422 not in doc.statuses:
                del responses["422"]  # FastAPI's default: this family answers invalid input with 400
    for unused in ("HTTPValidationError", "ValidationError"):
        if not _referenced(schema, unused):
            components.pop(unused, None)


def _bound_ids(operation: dict[str, Any]) -> None:
    """Integer ids in the path are positive 64-bit numbers (larger ones are answered 404)."""
    for parameter in operation.get("parameters", []):
        schema = parameter.get("schema", {})
        if parameter.get("in") == "path" and schema.get("type") == "integer":
            schema.setdefault("minimum", 1)
            schema.setdefault("maximum", MAX_ID)


def _is_fastapi_validation(response: dict[str, Any]) -> bool:
    ref = response.get("content", {}).get("application/json", {}).get("schema", {}).get("$ref", "")
    return bool(ref.endswith("/HTTPValidationError"))


def _referenced(schema: dict[str, Any], name: str) -> bool:
    needle = f'"#/components/schemas/{name}"'
    rest = {k: v for k, v in schema.items() if k != "components"}
    components = {k: v for k, v in schema["components"]["schemas"].items() if k != name}
    return needle in json.dumps(rest) or needle in json.dumps(components)
