"""Contacts of a survey and the workspace's suppression list."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from invitelink.models.base import Base, JsonType, utcnow


class Contact(Base):
    """An address entry of a survey; found by e-mail, mobile (E.164) or uid, each unique within the survey."""

    __tablename__ = "contacts"
    __table_args__ = (
        UniqueConstraint("survey_id", "email"),
        UniqueConstraint("survey_id", "mobile"),
        UniqueConstraint("survey_id", "uid"),
        UniqueConstraint("survey_id", "serial"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    survey_id: Mapped[int] = mapped_column(ForeignKey("surveys.id", ondelete="CASCADE"))
    email: Mapped[str | None] = mapped_column(String(254))
    mobile: Mapped[str | None] = mapped_column(String(16))
    uid: Mapped[str | None] = mapped_column(String(255))
    # Person code (SoSci "SERIAL"); NULL for anonymous contacts so it cannot be tied to the address.
    serial: Mapped[str | None] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(200), default="")
    subgroup: Mapped[str] = mapped_column(String(64), default="")
    anonymous: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Extra columns of a contact import, name -> text (services/contacts.py: limits), for {{attr.name}} in
    # messages. NULL (not "{}") for contacts without any: the SoSci and trigger bulk inserts do not name it.
    attributes: Mapped[dict[str, Any] | None] = mapped_column(JsonType)


class Suppression(Base):
    """An address that asked not to be mailed by this workspace again (List-Unsubscribe)."""

    __tablename__ = "suppressions"
    __table_args__ = (UniqueConstraint("workspace_id", "address"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    address: Mapped[str] = mapped_column(String(254))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
