"""`GET /review` (JSON or CSV) and the review page, read from the record store.

The page (`/review/page`) and the ticket timeline page (`/review/timeline`) are static,
self-contained HTML (no CDN): they hold no data and call the API with the reader's key, so they
are served without one. `GET /review` itself needs a key acting as lead, manager or auditor.
"""

import asyncio
from datetime import UTC, datetime
from enum import StrEnum
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal

import structlog
from fastapi import Depends, FastAPI, HTTPException, Query
from fastapi.responses import HTMLResponse, PlainTextResponse
from sqlalchemy.exc import SQLAlchemyError

from api.auth import PUBLIC, REVIEWERS, Caller, declared, requires
from config.settings import Settings
from review.aggregate import Review
from review.render import PeriodError, period, to_csv

log = structlog.get_logger("api")
ASSETS = Path(__file__).resolve().parent.parent / "review" / "assets"
# The pages load nothing from elsewhere: their own inline script and style, and calls to this API.
PAGE_POLICY = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


class GroupByParam(StrEnum):
    none = "none"
    department = "department"
    tier = "tier"
    channel = "channel"
    category = "category"
    priority = "priority"
    policy_version = "policy_version"


@cache
def _asset(name: str) -> str:
    return (ASSETS / name).read_text()


def _unprocessable(field: str, message: str) -> HTTPException:
    return HTTPException(422, [{"loc": ["query", field], "msg": message, "type": "value_error"}])


def add_review_routes(app: FastAPI, settings: Settings) -> None:
    """Register the review routes on the app."""

    @app.get(
        "/review",
        tags=["review"],
        response_model=Review,
        responses={
            200: {"content": {"text/csv": {}}},
            403: {"description": "the key is not a lead, manager or auditor"},
            503: {"description": "the record store is not reachable now"},
            422: {"description": "a parameter is wrong (the message names it)"},
        },
        openapi_extra=declared(REVIEWERS),
    )
    async def get_review(
        caller: Annotated[Caller, Depends(requires(REVIEWERS))],
        since: Annotated[str, Query(max_length=64, description="30d, 12h, 2w (at most 366 days) or RFC 3339")] = "30d",
        until: Annotated[str | None, Query(max_length=64, description="RFC 3339; default now")] = None,
        by: GroupByParam = GroupByParam.none,
        format: Literal["json", "csv"] = "json",
    ) -> Any:
        """Review metrics of the tickets opened in the period, grouped (see docs/review.md)."""
        now = datetime.now(UTC)
        try:
            start, end = period(since, until, now)
        except PeriodError as err:
            field, _, message = str(err).partition(": ")
            raise _unprocessable(field, message) from None
        try:
            result = await asyncio.to_thread(_compute, settings, start, end, now, by.value)
        except SQLAlchemyError as err:  # the database down or unreachable: not the caller's fault, not a 500
            log.warning("review.store_unavailable", error=type(err).__name__)
            raise HTTPException(503, "the record store is not reachable now; try again later") from None
        if format == "csv":
            return PlainTextResponse(to_csv(result), media_type="text/csv")
        return result

    @app.get("/review/page", tags=["review"], response_class=HTMLResponse, openapi_extra=PUBLIC)
    async def review_page() -> HTMLResponse:
        """The review page: charts and the at-risk list, drawn in the browser from `GET /review`."""
        return HTMLResponse(_asset("review.html"), headers={"Content-Security-Policy": PAGE_POLICY})

    @app.get("/review/timeline", tags=["review"], response_class=HTMLResponse, openapi_extra=PUBLIC)
    async def review_timeline_page() -> HTMLResponse:
        """A ticket's audit timeline as a page (`?ticket=ID`), from `GET /tickets/{id}/timeline`."""
        return HTMLResponse(_asset("timeline.html"), headers={"Content-Security-Policy": PAGE_POLICY})


def _compute(settings: Settings, start: datetime, end: datetime, now: datetime, by: str) -> Review:
    from review.in_database import review_from_store
    from review.query import calendars_of
    from store.repository import shared_store

    store = shared_store(settings.store_database_url)
    return review_from_store(store, calendars_of(settings.policy_path), since=start, until=end, now=now, group_by=by)
