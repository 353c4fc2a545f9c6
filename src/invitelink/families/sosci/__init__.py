"""The SoSci-style mailing API at PUBLIC_URL/{project}/?act={key} (which also serves the participant links)."""

from invitelink.api.family import Family
from invitelink.families.sosci import routes, wire

FAMILY = Family(
    name="sosci",
    prefixes=("/",),
    routers=(routes.router,),
    render_error=wire.render_error,
    fallback_routers=(routes.fallback_router,),
)
