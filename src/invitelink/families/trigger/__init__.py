"""The Survey.is-style trigger API: POST PUBLIC_URL/api/invitation-trigger queues an invitation batch."""

from invitelink.api.family import Family
from invitelink.families.trigger import routes

FAMILY = Family(
    name="trigger",
    prefixes=(routes.PATH,),
    routers=(routes.router,),
    render_error=routes.render_error,
)
