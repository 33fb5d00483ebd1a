"""`escalations store migrate|status|derive`: the ticket record store's schema, and the review's
stored derivations (see docs/record-store.md)."""

from __future__ import annotations

from typing import Annotated

import typer

from cli.app import CliError, ExitCode, JsonOption, app, emit, settings

store_app = typer.Typer(
    help="The ticket record store (events and summaries kept after Temporal's retention).", no_args_is_help=True
)
app.add_typer(store_app, name="store")


@store_app.command("migrate")
def migrate(as_json: JsonOption = False) -> None:
    """Apply the store's schema migrations (the worker and the API also do at start).

    Example: ESCALATIONS_STORE_URL=postgresql+psycopg://esc@db/esc escalations store migrate
    """
    from store.repository import Store

    store = Store(settings().store_database_url)
    try:
        revision = store.migrate()
    except Exception as err:
        raise CliError(_why(store.describe(), err), ExitCode.UNREACHABLE) from None
    finally:
        store.dispose()
    emit({"store": store.describe(), "revision": revision}, as_json=as_json)


@store_app.command("status")
def status(as_json: JsonOption = False) -> None:
    """Where the store is, its schema revision against the newest, and how many tickets and events it holds.

    Examples:
      escalations store status
      ESCALATIONS_STORE_URL=postgresql+psycopg://escalations@db/escalations escalations store status --json
    """
    from sqlalchemy import func, select

    from store.models import EventRow, TicketRow
    from store.repository import Store

    store = Store(settings().store_database_url)
    try:
        with store.engine.connect() as conn:
            revision = store.revision()
            tickets = events = None
            if revision is not None:
                tickets = conn.scalar(select(func.count()).select_from(TicketRow))
                events = conn.scalar(select(func.count()).select_from(EventRow))
    except Exception as err:
        raise CliError(_why(store.describe(), err), ExitCode.UNREACHABLE) from None
    finally:
        store.dispose()
    emit(
        {"store": store.describe(), "revision": revision, "head": store.head(), "tickets": tickets, "events": events},
        as_json=as_json,
    )


@store_app.command("derive")
def derive(
    since: Annotated[
        str, typer.Option(help="Lives opened in this period: 30d, 2w, 366d or an RFC 3339 time.")
    ] = "366d",
    as_json: JsonOption = False,
) -> None:
    """Derive the review's numbers of every stored life not derived yet (the review does it too,
    once per life; run this after an upgrade so the first review of a year is as fast as the next).

    Example: escalations store derive --since 366d
    """
    import time
    from datetime import UTC, datetime

    from sqlalchemy.engine.url import make_url

    from review.business_time import TicketCalendars
    from review.materialize import refresh, stale_lives
    from review.query import calendars_of, frozen_calendars
    from review.render import PeriodError, period
    from store.repository import shared_store

    config = settings()
    now = datetime.now(UTC)
    try:
        start, end = period(since, None, now)
    except PeriodError as err:
        raise CliError(f"--{err}", ExitCode.BAD_INPUT) from None
    began = time.monotonic()
    try:
        store = shared_store(config.store_database_url)
        calendars = TicketCalendars(calendars_of(config.policy_path), frozen_calendars(store))
        pending = len(stale_lives(store, calendars, start, end))
        refresh(store, calendars, start, end, now)
    except Exception as err:
        where = make_url(config.store_database_url).render_as_string(hide_password=True)
        raise CliError(_why(where, err), ExitCode.UNREACHABLE) from None
    emit({"derived": pending, "seconds": round(time.monotonic() - began, 1)}, as_json=as_json)


def _why(where: str, err: Exception) -> str:
    lines = str(err).strip().splitlines()
    return f"record store {where}: {type(err).__name__}: {lines[0] if lines else ''}"
