"""Alembic migrations; installed inside the package as invitelink.migrations."""
