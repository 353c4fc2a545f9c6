"""What participants' browsers and questionnaires call: links, the callback, the end redirect, unsubscribe."""

from invitelink.api.family import Family
from invitelink.families.participation import routes, unsubscribe

FAMILY = Family(
    name="participation",
    prefixes=("/api/v1/", "/survey/end", "/unsubscribe"),
    routers=(routes.router, routes.pages_router, unsubscribe.router),
    render_error=routes.render_error,
)
