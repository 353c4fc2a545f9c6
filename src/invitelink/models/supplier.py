"""Panel suppliers, their API keys, survey allocations with country limits, and their panelists."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import CheckConstraint, ForeignKey, Index, Numeric, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from invitelink.models.base import Base, utcnow


class Supplier(Base):
    __tablename__ = "suppliers"

    id: Mapped[int] = mapped_column(primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"), index=True)
    # R4I-S-XXXX-XXXX
    public_id: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    email: Mapped[str] = mapped_column(String(254))
    redirect_success: Mapped[str] = mapped_column(String(2000), default="")
    redirect_terminate: Mapped[str] = mapped_column(String(2000), default="")
    redirect_quotafull: Mapped[str] = mapped_column(String(2000), default="")
    redirect_security: Mapped[str] = mapped_column(String(2000), default="")
    # The redirect-signing key is derived from the server secret and this version, never stored;
    # bumping the version rotates it.
    hmac_key_version: Mapped[int] = mapped_column(default=1)
    # Server-to-server postback of every final outcome of this supplier's participants (HMAC-signed), for panel
    # exchanges that reconcile from postbacks because browser redirects get lost. Empty: none.
    postback_url: Mapped[str] = mapped_column(String(2000), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class SupplierKey(Base):
    __tablename__ = "supplier_keys"
    __table_args__ = (CheckConstraint("environment IN ('production', 'sandbox')", name="environment"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    supplier_id: Mapped[int] = mapped_column(ForeignKey("suppliers.id", ondelete="CASCADE"), index=True)
    environment: Mapped[str] = mapped_column(String(16))
    prefix: Mapped[str] = mapped_column(String(24))
    key_digest: Mapped[str] = mapped_column(String(64), unique=True)
    revoked_at: Mapped[datetime | None]
    last_used_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Allocation(Base):
    """A survey offered to a supplier, with an optional CPI override and per-country limits."""

    __tablename__ = "allocations"
    __table_args__ = (
        UniqueConstraint("supplier_id", "survey_id"),
        CheckConstraint("status IN ('active', 'paused', 'closed')", name="status"),
        # allocated_survey pages through a supplier's active allocations in id order.
        Index(None, "supplier_id", "status", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    supplier_id: Mapped[int] = mapped_column(ForeignKey("suppliers.id", ondelete="CASCADE"))
    survey_id: Mapped[int] = mapped_column(ForeignKey("surveys.id", ondelete="CASCADE"), index=True)
    cpi_value: Mapped[Decimal | None] = mapped_column(Numeric(10, 2))
    status: Mapped[str] = mapped_column(String(16), default="active")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Quota(Base):
    """A per-country completes limit of one allocation (R4I ``survey_limit``)."""

    __tablename__ = "quotas"
    __table_args__ = (UniqueConstraint("allocation_id", "country"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    allocation_id: Mapped[int] = mapped_column(ForeignKey("allocations.id", ondelete="CASCADE"))
    country: Mapped[str] = mapped_column(String(64))
    limit: Mapped[int]


class Panelist(Base):
    """A supplier's participant profile (R4I ``add_participant``), per environment."""

    __tablename__ = "panelists"
    __table_args__ = (
        UniqueConstraint("supplier_id", "environment", "pid"),
        CheckConstraint("environment IN ('production', 'sandbox')", name="environment"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    supplier_id: Mapped[int] = mapped_column(ForeignKey("suppliers.id", ondelete="CASCADE"))
    environment: Mapped[str] = mapped_column(String(16))
    pid: Mapped[str] = mapped_column(String(128))
    participant_name: Mapped[str] = mapped_column(String(200), default="")
    email: Mapped[str] = mapped_column(String(254), default="")
    phone: Mapped[str] = mapped_column(String(32), default="")
    age: Mapped[int | None]
    country: Mapped[str] = mapped_column(String(64), default="")
    zipcode: Mapped[str] = mapped_column(String(16), default="")
    gender: Mapped[str] = mapped_column(String(16), default="")
    device: Mapped[str] = mapped_column(String(16), default="")
    ethnicity: Mapped[str] = mapped_column(String(64), default="")
    qualification: Mapped[str] = mapped_column(String(64), default="")
    employment_status: Mapped[str] = mapped_column(String(64), default="")
    income_range: Mapped[str] = mapped_column(String(32), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
