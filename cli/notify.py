"""`escalations notify preview EVENT --channel email|slack|teams`: a notice rendered for a sample
ticket, exactly as the delivery activity would build it (templates of the policy, built-ins
otherwise), without sending anything."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from cli.app import JsonOption, app, bad_input, print_json, settings

notify_app = typer.Typer(help="Preview the notices people get (email, Slack, Teams).", no_args_is_help=True)
app.add_typer(notify_app, name="notify")


def render_preview(policy_path: Path, event_type: str, channel: str, link_base: str) -> dict[str, Any]:
    """The rendered notice as data: email `{headers, text, html, raw}`, chat `{payload}`."""
    from activities import channels
    from config import templates
    from config.policy import EVENT_TYPES, PolicyError, load_policy_file

    if event_type not in EVENT_TYPES:
        bad_input(f"EVENT: unknown event type {event_type!r} (known: {', '.join(EVENT_TYPES)})")
    try:
        policy = load_policy_file(policy_path)
    except PolicyError as err:
        bad_input(str(err))
    overrides = {str(k): v for k, v in policy.notifications.templates.items()}
    context = templates.sample_context(channel, event_type, link_base)
    try:
        parts = templates.render(overrides, channel, event_type, context)
    except templates.TemplateFailure as failure:
        bad_input(str(failure))
    key = (
        "msg_ticket-T-1001_0f1e2d3c_7@mail:bea.head"
        if event_type != "digest"
        else "digest-mail:bea.head-20261123T0900Z"
    )
    if channel == "email":
        sample = templates.sample_event(event_type)
        message = channels.build_email(
            key=key,
            sender="escalations@example.com",
            to="bea@example.com",
            parts=parts,
            ticket_id=None if event_type == "digest" else sample["ticket_id"],
            workflow_id=None if event_type == "digest" else sample["workflow_id"],
            life=None if event_type == "digest" else channels.life_of(sample["id"]),
            occurred_at=datetime.fromisoformat(sample["occurred_at"]).astimezone(UTC),
        )
        headers = {k: str(v) for k, v in message.items() if k.lower() != "content-type"}
        return {"channel": channel, "headers": headers, **parts, "raw": message.as_string()}
    build = channels.slack_payload if channel == "slack" else channels.teams_payload
    return {"channel": channel, "payload": build(key, parts, context)}


@notify_app.command("preview")
def preview(
    event: Annotated[
        str, typer.Argument(help="Event type, e.g. sla.breached, ticket.cc, or digest.", show_default=False)
    ],
    channel: Annotated[Literal["email", "slack", "teams"], typer.Option(help="The channel to render for.")] = "email",
    policy: Annotated[Path | None, typer.Option(help="Policy file (default: the settings' policy_path).")] = None,
    as_json: JsonOption = False,
) -> None:
    """Print a notice rendered for a sample ticket (nothing is sent).

    Example: escalations notify preview sla.breached --channel slack
    """
    config = settings()
    path = policy or config.policy_path
    if not path.is_file():
        bad_input(f"--policy: no such file: {path}")
    rendered = render_preview(path, event, channel, config.link_base)
    if as_json:
        print_json(rendered)
    elif channel == "email":
        print(rendered["raw"], end="")
    else:
        print_json(rendered["payload"])
