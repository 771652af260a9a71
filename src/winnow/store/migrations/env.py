"""Alembic environment: runs on the connection winnow hands it (see winnow.store.db.migrate)."""

from alembic import context
from sqlalchemy import create_engine

from winnow.store.models import Base

config = context.config
target_metadata = Base.metadata


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is None:  # the `alembic` command line, for developers writing migrations
        engine = create_engine(config.get_main_option("sqlalchemy.url"))
        with engine.connect() as connection:
            _run(connection)
    else:
        _run(connection)


def _run(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=True,  # SQLite needs batch mode to alter tables
    )
    with context.begin_transaction():
        context.run_migrations()


run_migrations_online()
