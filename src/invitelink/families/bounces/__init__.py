"""Bounces: delivery status notifications that an operator's mail server pipes in."""

from invitelink.api.family import Family
from invitelink.families.bounces import routes

FAMILY = Family(
    name="bounces",
    prefixes=(routes.PATH,),
    routers=(routes.router,),
    render_error=routes.render_error,
)
