"""The ticket record store: every ticket's events and summary in a real database.

Temporal deletes a closed ticket's history after the namespace's retention; the store keeps the
record an auditor (and the review) needs for as long as the operator keeps the database. A SQLite
file in the data folder on the embedded default, PostgreSQL in production: the same SQLAlchemy 2
code and Alembic migrations. A top-level folder because four parts use it: the `store_events`
activity writes it, the HTTP API and the CLI read timelines from it, and the review reads metrics
from it.

- `models.py`: the tables (`TicketRow`, `EventRow`), also the layout other parts may query.
- `review_models.py`: the review's tables (frozen calendars, each life's derivation), which the
  review writes and counts in SQL.
- `repository.py`: `Store`, the small API: `write(batch)` (idempotent), `lives`, `timeline`,
  `tickets`, `events`.
- `migrations/`: Alembic; `Store.migrate()` applies them (worker and API at start, `escalations
  store migrate`).
"""
