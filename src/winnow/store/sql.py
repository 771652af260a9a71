"""Small SQL helpers that differ by database dialect (SQLite today, PostgreSQL later)."""

from __future__ import annotations

from sqlalchemy.orm import Session


def insert_ignore(session: Session, model):
    """``INSERT ... ON CONFLICT DO NOTHING`` for ``model``'s table on the session's dialect."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert(model).on_conflict_do_nothing()
