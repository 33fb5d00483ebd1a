"""Alembic environment: run by `store.repository.Store.migrate()` with an open connection."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine, text

import store.review_models  # noqa: F401  (its tables join Base.metadata)
from store.models import Base

config = context.config
target_metadata = Base.metadata


def run(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
    with context.begin_transaction():
        if context.get_bind().dialect.name == "postgresql":
            # Several workers and API processes may start at once: one migrates, the others wait.
            context.execute(text("SELECT pg_advisory_xact_lock(804262001)"))
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    run(connection)
else:  # the alembic command line: `alembic -x url=... upgrade head`
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise SystemExit("give the database URL: alembic -x url=postgresql+psycopg://... upgrade head")
    with create_engine(url).connect() as conn:
        run(conn)
