"""`escalations review` and `escalations policy backtest`: the review of stored tickets."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer

from cli.app import CliError, ExitCode, JsonOption, app, policy_app, print_json, settings

if TYPE_CHECKING:
    from config.settings import Settings
    from store.repository import Store

GroupBy = Literal["none", "department", "tier", "channel", "category", "priority", "policy_version"]
Since = Annotated[str, typer.Option(help="The period: 30d, 12h, 2w (at most 366 days) or an RFC 3339 time.")]
Until = Annotated[str | None, typer.Option(help="End of the period (RFC 3339); default now.", show_default=False)]


def _period(since: str, until: str | None) -> tuple[datetime, datetime, datetime]:
    from review.render import PeriodError, period

    now = datetime.now(UTC)
    try:
        start, end = period(since, until, now)
    except PeriodError as err:
        raise CliError(f"--{err}", ExitCode.BAD_INPUT) from None
    return start, end, now


def _store(config: Settings) -> Store:
    from store.repository import shared_store

    try:
        return shared_store(config.store_database_url)
    except Exception as err:  # unreachable database, bad URL: one line, exit 1
        raise CliError(
            f"cannot open the record store: {str(err).splitlines()[0][:200]}", ExitCode.UNREACHABLE
        ) from None


@app.command("review")
def review(
    since: Since = "30d",
    until: Until = None,
    by: Annotated[GroupBy, typer.Option(help="Group by this dimension.")] = "none",
    format: Annotated[Literal["table", "csv", "json"], typer.Option(help="Output format.")] = "table",
    as_json: JsonOption = False,
) -> None:
    """Review metrics of the tickets opened in a period, from the record store (docs/review.md).

    Example: escalations review --since 30d --by department --format csv
    """
    from review.in_database import review_from_store
    from review.query import calendars_of
    from review.render import to_csv, to_table

    start, end, now = _period(since, until)
    config = settings()
    store = _store(config)
    result = review_from_store(
        store,
        calendars_of(config.policy_path),
        since=start,
        until=end,
        now=now,
        group_by=by,
    )
    if as_json or format == "json":
        print_json(result)
    elif format == "csv":
        print(to_csv(result), end="")
    else:
        print(to_table(result), end="")


@policy_app.command("backtest")
def backtest(
    file: Annotated[Path, typer.Argument(help="The proposed policy file (YAML or JSON).", show_default=False)],
    since: Since = "30d",
    until: Until = None,
    limit: Annotated[int, typer.Option(min=1, max=500, help="Replay at most this many tickets (oldest first).")] = 50,
    as_json: JsonOption = False,
) -> None:
    """Replay stored tickets through the workflow's decisions under a proposed policy (no server needed)
    and print the review metrics side by side with what happened, per department.

    Example: escalations policy backtest new.yaml --since 30d
    """
    from config.policy import PolicyError
    from review.backtest import run_backtest, to_table

    if not file.is_file():
        raise CliError(f"no such file: {file}", ExitCode.BAD_INPUT)
    start, end, now = _period(since, until)
    store = _store(settings())
    try:
        result = run_backtest(store, file, start, end, now, limit)
    except PolicyError as err:
        raise CliError(str(err), ExitCode.BAD_INPUT) from None
    if as_json:
        print_json(result)
    else:
        print(to_table(result))
