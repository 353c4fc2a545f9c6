"""What happened in a survey: its deliveries (with a requeue of failed ones), its funnel, and its event log with
each contact's timeline."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel, Field

from invitelink.api.admin.deps import Db, Limit, ReadableSurvey, WritableSurvey
from invitelink.api.admin.errors import AdminRoute
from invitelink.api.admin.schemas import Input, Output, Page
from invitelink.models import EVENT_TYPES
from invitelink.services import contacts, deliveries, events, funnel
from invitelink.services.pagination import DEFAULT_LIMIT, decode_cursor, encode_cursor

router = APIRouter(prefix="/surveys/{survey_id}", route_class=AdminRoute)
DeliveryStatus = Literal["queued", "sending", "sent", "failed", "bounced", "skipped"]
EventType = Literal[EVENT_TYPES]  # type: ignore[valid-type]


class DeliveryOut(BaseModel):
    id: int
    mailing_id: int
    contact_id: int
    email: str | None
    mobile: str | None
    channel: str
    reminder: bool = Field(description="A reminder rather than the invitation itself.")
    status: DeliveryStatus
    attempts: int
    last_error: str | None = Field(description="The last transport error (retried or final), or the bounce.")
    due_at: datetime
    sent_at: datetime | None
    message_id: str | None = Field(description="The Message-ID the mail went out with; bounces quote it.")


@router.get(
    "/deliveries",
    response_model=Page[DeliveryOut],
    tags=["deliveries"],
    summary="Deliveries of the survey, with their status, attempts and last error",
    description="One item per message (invitation or reminder) to one contact, oldest first; `status` filters. "
    "`failed` means the transport refused it for good or every retry failed; `bounced`, that a delivery status "
    "notification came back (POST /api/v1/bounces); `skipped`, that the address was suppressed or the "
    "participant had already ended.",
)
def list_deliveries(
    survey: ReadableSurvey,
    db: Db,
    status: DeliveryStatus | None = None,
    cursor: str | None = None,
    limit: Limit = DEFAULT_LIMIT,
) -> Page[DeliveryOut]:
    rows = deliveries.list_for_survey(db, survey.id, status, decode_cursor(cursor) if cursor else 0, limit)
    items = [DeliveryOut.model_validate({**row, "reminder": row["sequence"] > 0}) for row in rows[:limit]]
    return Page(items=items, next_cursor=encode_cursor(items[-1].id) if len(rows) > limit else None)


class RequeueIn(Input):
    ids: list[int] | None = Field(
        default=None, max_length=10_000, description="Only these deliveries; omitted: every failed one."
    )


class RequeueOut(BaseModel):
    requeued: int = Field(description="How many failed deliveries went back to the queue.")


@router.post(
    "/deliveries/requeue",
    response_model=RequeueOut,
    tags=["deliveries"],
    summary="Send failed deliveries again",
    description="Failed deliveries (all of the survey's, or those of `ids`) are queued again, due now, with a "
    "fresh attempt count, and so a fresh retry window (`INVITELINK_DELIVERY_RETRY_HOURS`, 72 h, from the next "
    "attempt): for mail a recipient's server kept deferring past that window, or after a fixed configuration. "
    "(An outage of the mail relay itself fails nothing: the worker pauses until it is back.) Bounced deliveries stay "
    "(the address does not exist); suppressed addresses are skipped when their turn comes. Calling it again "
    "requeues nothing new.",
)
def requeue(survey: WritableSurvey, db: Db, body: RequeueIn | None = None) -> RequeueOut:
    return RequeueOut(requeued=deliveries.requeue_failed(db, survey.id, body.ids if body else None))


class FunnelOut(BaseModel):
    queued: int
    sent: int
    failed: int
    bounced: int
    skipped: int
    clicked: int = Field(description="Everyone who opened the link, whatever came after.")
    started: int = Field(description="Everyone who started the questionnaire.")
    completed: int
    terminated: int
    quotafull: int
    security: int


@router.get(
    "/funnel",
    response_model=FunnelOut,
    tags=["deliveries"],
    summary="The survey's funnel: deliveries by status, participants by how far they got",
    description="Counted from the stored rows in one query. Deliveries by their current status; participations "
    "cumulatively (`clicked` counts every participant who opened the link; `started` everyone who started); "
    "sandbox (supplier test) traffic is left out.",
)
def survey_funnel(survey: ReadableSurvey, db: Db) -> FunnelOut:
    return FunnelOut.model_validate(funnel.funnel(db, survey.id))


class EventOut(Output):
    id: int
    type: str
    contact_id: int | None
    created_at: datetime
    payload: dict[str, Any] = Field(description="What webhooks receive: {type, timestamp, data}.")


def _events_page(page: Any) -> Page[EventOut]:
    return Page(items=[EventOut.model_validate(e) for e in page.items], next_cursor=page.next_cursor)


@router.get(
    "/events",
    response_model=Page[EventOut],
    tags=["deliveries"],
    summary="The survey's event log",
    description="Every lifecycle event of the survey in the order it happened: `delivery.sent`, "
    "`delivery.failed`, `delivery.bounced`, `participation.clicked`, `participation.started`, "
    "`participation.completed`, `participation.terminated`, `participation.quotafull`, "
    "`participation.security`. `type` filters.",
)
def survey_events(
    survey: ReadableSurvey,
    db: Db,
    type: EventType | None = None,
    cursor: str | None = None,
    limit: Limit = DEFAULT_LIMIT,
) -> Page[EventOut]:
    return _events_page(events.list_events(db, survey.id, cursor, limit, event_type=type))


@router.get(
    "/contacts/{contact_id}/events",
    response_model=Page[EventOut],
    tags=["contacts"],
    summary="A contact's timeline: every event of its deliveries and participation",
)
def contact_timeline(
    contact_id: int, survey: ReadableSurvey, db: Db, cursor: str | None = None, limit: Limit = DEFAULT_LIMIT
) -> Page[EventOut]:
    contacts.get_contact(db, survey, contact_id)  # 404 for a contact of another survey
    return _events_page(events.list_events(db, survey.id, cursor, limit, contact_id=contact_id))
