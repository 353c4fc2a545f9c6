"""The one data model behind every API family."""

from invitelink.models.access import API_FUNCTIONS, ApiAccess, TriggerToken
from invitelink.models.base import Base, utcnow
from invitelink.models.contact import Contact, Suppression
from invitelink.models.event import EVENT_TYPES, Event
from invitelink.models.idempotency import IdempotencyRecord
from invitelink.models.invitation import INVITATION_STATUSES, MemberInvitation
from invitelink.models.mailing import Delivery, Mailing
from invitelink.models.participation import PARTICIPATION_STATUSES, Participation
from invitelink.models.supplier import Allocation, Panelist, Quota, Supplier, SupplierKey
from invitelink.models.survey import SURVEY_STATUSES, Industry, Question, QuestionOption, Survey
from invitelink.models.tenancy import ROLES, AdminSession, Membership, User, Workspace
from invitelink.models.token import Token
from invitelink.models.webhook import WebhookAttempt, WebhookEndpoint, WebhookMessage

__all__ = [
    "API_FUNCTIONS",
    "EVENT_TYPES",
    "INVITATION_STATUSES",
    "PARTICIPATION_STATUSES",
    "ROLES",
    "SURVEY_STATUSES",
    "AdminSession",
    "Allocation",
    "ApiAccess",
    "Base",
    "Contact",
    "Delivery",
    "Event",
    "IdempotencyRecord",
    "Industry",
    "Mailing",
    "MemberInvitation",
    "Membership",
    "Panelist",
    "Participation",
    "Question",
    "QuestionOption",
    "Quota",
    "Supplier",
    "SupplierKey",
    "Suppression",
    "Survey",
    "Token",
    "TriggerToken",
    "User",
    "WebhookAttempt",
    "WebhookEndpoint",
    "WebhookMessage",
    "Workspace",
    "utcnow",
]
