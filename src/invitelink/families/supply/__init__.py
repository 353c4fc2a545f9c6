"""The R4I-style supply API under /sandbox/v1/ and /production/v1/, and the entry link of supplier traffic."""

from invitelink.api.family import Family
from invitelink.families.supply import routes

FAMILY = Family(
    name="supply",
    prefixes=("/sandbox/", "/production/", "/survey/letdosurvey"),
    routers=(routes.router,),
    render_error=routes.render_error,
)
