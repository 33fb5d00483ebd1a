"""Channels: email to a real SMTP server (aiosmtpd on 127.0.0.1), Slack and Teams to a real HTTP
receiver, endpoints resolved by name from settings (never in history), templates checked."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio.testing import WorkflowEnvironment

from config.settings import EndpointSettings
from tests.conftest import policy_doc
from tests.helpers import ticket, until, until_async
from tests.receiver import Receiver
from tests.smtp import SmtpServer, body

SLACK_SECRET_PATH = "/slack/T000/B000/XXXXsecretXXXX"
TEAMS_SECRET_PATH = "/teams/workflows/abc/triggers/manual/paths/invoke?sig=secretsig"


def channel_policy(**notifications: Any) -> dict[str, Any]:
    doc = policy_doc()
    doc["notifications"] = {
        "endpoints": [
            {"name": "local-receiver", "url": "http://127.0.0.1:9/never-used"},
            {"name": "mail", "channel": "email"},
            {"name": "ops-slack", "channel": "slack"},
            {"name": "ops-teams", "channel": "teams"},
        ],
        "roles": {"team_lead": {"endpoints": ["mail", "ops-slack", "ops-teams"]}},
        # The tier-1 queue is a mailing list; the assignee role (here: the queue) has no address.
        "people": {"support-t1": {"email": "t1@example.com", "endpoints": ["mail"]}},
        **notifications,
    }
    return doc


def smtp_settings(smtp: SmtpServer) -> EndpointSettings:
    return EndpointSettings.model_validate(smtp.endpoint())


def endpoint_settings(smtp: SmtpServer, receiver: Receiver) -> dict[str, EndpointSettings]:
    return {
        "mail": EndpointSettings.model_validate(smtp.endpoint() | {"password": "smtp-password-never-in-history"}),
        "ops-slack": EndpointSettings.model_validate({"url": receiver.url + SLACK_SECRET_PATH}),
        "ops-teams": EndpointSettings.model_validate({"url": receiver.url + TEAMS_SECRET_PATH}),
    }


@pytest.fixture
def smtp() -> Any:
    server = SmtpServer().start()
    yield server
    server.stop()


# ---------------------------------------------------------------------- documented shapes
def check_block_kit(payload: dict[str, Any]) -> None:
    """Slack incoming webhook with Block Kit (api.slack.com/reference/block-kit): the limits and
    shapes Slack documents for the blocks we send."""
    assert isinstance(payload["text"], str) and payload["text"]  # fallback text for notifications
    blocks = payload["blocks"]
    assert 1 <= len(blocks) <= 50
    ids = [b["block_id"] for b in blocks if "block_id" in b]
    assert len(ids) == len(set(ids)) and all(len(i) <= 255 for i in ids)
    for block in blocks:
        kind = block["type"]
        assert kind in {"header", "section", "actions", "context", "divider"}
        if kind == "header":
            assert block["text"]["type"] == "plain_text" and 0 < len(block["text"]["text"]) <= 150
        elif kind == "section":
            assert "text" in block or "fields" in block
            if "text" in block:
                assert block["text"]["type"] in {"mrkdwn", "plain_text"} and 0 < len(block["text"]["text"]) <= 3000
            for f in block.get("fields", []):
                assert f["type"] in {"mrkdwn", "plain_text"} and 0 < len(f["text"]) <= 2000
            assert len(block.get("fields", [])) <= 10
        elif kind == "actions":
            assert 1 <= len(block["elements"]) <= 25
            for el in block["elements"]:
                assert el["type"] == "button" and el["text"]["type"] == "plain_text" and len(el["text"]["text"]) <= 75
                assert el["url"].startswith("http") and len(el["url"]) <= 3000
                assert len(el["action_id"]) <= 255


def check_teams_card(payload: dict[str, Any]) -> None:
    """Teams workflow webhook ("When a Teams webhook request is received"): a message with one
    Adaptive Card attachment (learn.microsoft.com, adaptive cards 1.4 schema)."""
    assert payload["type"] == "message"
    (attachment,) = payload["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    assert attachment["contentUrl"] is None
    card = attachment["content"]
    assert card["type"] == "AdaptiveCard" and card["version"] == "1.4"
    assert card["$schema"] == "http://adaptivecards.io/schemas/adaptive-card.json"
    for element in card["body"]:
        assert element["type"] in {"TextBlock", "FactSet", "ColumnSet", "Container"}
        if element["type"] == "TextBlock":
            assert isinstance(element["text"], str) and element["text"]
        if element["type"] == "FactSet":
            assert all(set(f) == {"title", "value"} and isinstance(f["value"], str) for f in element["facts"])
    for action in card.get("actions", []):
        assert action["type"] == "Action.OpenUrl" and action["url"].startswith("http") and action["title"]


def facts_of_slack(payload: dict[str, Any]) -> dict[str, str]:
    fields = next(b["fields"] for b in payload["blocks"] if "fields" in b)
    return dict(f["text"].removeprefix("*").split("*\n", 1) for f in fields)


# ---------------------------------------------------------------------- tests
async def test_email_slack_and_teams_reach_people_and_nothing_secret_is_in_history(
    ts_env: WorkflowEnvironment, receiver: Receiver, smtp: SmtpServer, make_harness: Any
) -> None:
    doc = channel_policy()
    async with make_harness(ts_env, receiver, doc, endpoints=endpoint_settings(smtp, receiver)) as h:
        t = ticket(priority="urgent", subject="Cannot log in (urgent)")
        await h.tickets.open(t)
        await ts_env.sleep(timedelta(minutes=31))  # warning at 22.5 min, breach + reassign at 30 min
        lead = await until(lambda: smtp.mailbox.for_("lee@example.com"))
        queue = await until(lambda: smtp.mailbox.for_("t1@example.com"), count=3)
        chats = await until(lambda: [r for r in receiver.accepted if r.path.startswith(("/slack", "/teams"))], 2)
        timeline = (await h.tickets.timeline(t.ticket_id)).events
        history = await h.client.get_workflow_handle(f"ticket-{t.ticket_id}").fetch_history()

    # Email: subject, both bodies, threading by ticket.
    (breach,) = lead
    assert breach["Subject"] == f"[{t.ticket_id}] Cannot log in (urgent)"
    assert breach["From"] == "escalations@example.com" and breach["To"] == "lee@example.com"
    text = body(breach)
    html = body(breach, "html")
    for expected in ("SLA breached", t.ticket_id, "Tier: 1 (support)", "ladders.first_response[1] (fr-breach)"):
        assert expected in text
    assert f"/tickets/{t.ticket_id}/timeline?format=md" in text and "<h2>SLA breached</h2>" in html
    assert "Deadline: " in text
    queue_mail = sorted(queue, key=lambda m: str(m["Date"]))
    roots = {m["References"] for m in [*queue_mail, breach]}
    assert len(roots) == 1 and all(m["In-Reply-To"] == m["References"] for m in queue_mail)
    assert len({m["Message-ID"] for m in [*queue_mail, breach]}) == len(queue_mail) + 1
    assert {m["Subject"] for m in queue_mail} == {breach["Subject"]}  # one thread per ticket
    assert re.fullmatch(r"<[A-Za-z0-9._-]+@example\.com>", str(breach["Message-ID"]))

    # Slack and Teams: the documented shapes, with ticket, tier, deadline, rule, reason and link.
    slack = next(r.json() for r in chats if r.path == SLACK_SECRET_PATH)
    teams = next(r.json() for r in chats if r.path.startswith("/teams"))
    check_block_kit(slack)
    check_teams_card(teams)
    facts = facts_of_slack(slack)
    assert facts["Ticket"].startswith(t.ticket_id) and facts["Tier"].startswith("1 (support)")
    assert facts["Rule"] == "ladders.first_response[1] (fr-breach)" and facts["Reason"]
    assert facts["Deadline"] != "none"
    button = slack["blocks"][-1]["elements"][0]
    assert button["url"].endswith(f"/tickets/{t.ticket_id}/timeline?format=md")
    card = teams["attachments"][0]["content"]
    assert {f["title"] for f in card["body"][2]["facts"]} == {"Ticket", "Tier", "Deadline", "Rule", "Reason"}
    assert card["actions"][0]["url"].endswith(f"/tickets/{t.ticket_id}/timeline?format=md")

    # The assignee role resolved to the queue; another recipient without an address is recorded.
    delivered = [e for e in timeline if e.kind == "notification_delivered"]
    assert any(e.detail["endpoint"] == "ops-slack" for e in delivered)

    # No capability URL, SMTP credential or policy URL in the ticket's history.
    dumped = json.dumps(history.to_json_dict())
    for secret in ("XXXXsecretXXXX", "secretsig", "smtp-password-never-in-history", "never-used", receiver.url):
        assert secret not in dumped


async def test_a_retried_email_is_one_message_at_a_receiver_that_dedupes_on_message_id(
    ts_env: WorkflowEnvironment, receiver: Receiver, smtp: SmtpServer, make_harness: Any
) -> None:
    smtp.mailbox.fail_after_storing = 1  # stored, but answered 451: the sender must try again
    doc = channel_policy(roles={"team_lead": {"endpoints": ["mail"]}})
    async with make_harness(ts_env, receiver, doc, endpoints=endpoint_settings(smtp, receiver)) as h:
        t = ticket(priority="urgent")
        await h.tickets.open(t)
        await ts_env.sleep(timedelta(minutes=31))
        await until(lambda: smtp.mailbox.for_("lee@example.com"))
        await ts_env.sleep(timedelta(minutes=1))

        async def delivered() -> list[Any]:
            events = (await h.tickets.timeline(t.ticket_id)).events
            return [e for e in events if e.kind == "notification_delivered" and e.detail["endpoint"] == "mail"]

        ok = await until_async(delivered, count=4)
    first = [m for m in smtp.mailbox.received if "t1@example.com" in str(m["To"])]
    warning = [m for m in first if "SLA warning" in body(m)]
    assert len(warning) == 2  # the same notice twice at the server ...
    assert warning[0]["Message-ID"] == warning[1]["Message-ID"]  # ... with one Message-ID ...
    assert len([m for m in smtp.mailbox.for_("t1@example.com") if m["Message-ID"] == warning[0]["Message-ID"]]) == 1
    assert max(e.detail["attempts"] for e in ok) == 2  # ... and one message in the deduplicated mailbox


async def test_smtp_down_for_hours_keeps_the_notice_visible_then_delivers_it(
    ts_env: WorkflowEnvironment, receiver: Receiver, make_harness: Any
) -> None:
    down = SmtpServer()  # not started: connections are refused
    doc = channel_policy(roles={}, people={"support-t1": {"email": "t1@example.com", "endpoints": ["mail"]}})
    endpoints = {"mail": EndpointSettings.model_validate(down.endpoint() | {"timeout_seconds": 2})}
    async with make_harness(ts_env, receiver, doc, endpoints=endpoints) as h:
        t = ticket(priority="urgent")
        await h.tickets.open(t)
        await ts_env.sleep(timedelta(minutes=23))  # the warning to the queue's mailing list

        async def waiting() -> list[Any]:
            status = await h.tickets.status(t.ticket_id)
            return [n for n in status.undelivered if n.endpoint == "mail"]

        stuck = await until_async(waiting)
        assert stuck and "unreachable" in (stuck[0].last_error or "")
        await ts_env.sleep(timedelta(hours=3))
        assert await waiting()  # still listed, still retried
        down.start()
        try:
            await ts_env.sleep(timedelta(minutes=11))  # the longest wait between tries is 10 min
            mails = await until(lambda: down.mailbox.for_("t1@example.com"), seconds=20)
        finally:
            down.stop()
    assert mails and any("SLA warning" in body(m) for m in mails)


async def test_an_unconfigured_endpoint_waits_with_a_clear_error(
    ts_env: WorkflowEnvironment, receiver: Receiver, make_harness: Any
) -> None:
    doc = channel_policy(roles={"team_lead": {"endpoints": ["ops-slack"]}}, people={})
    async with make_harness(ts_env, receiver, doc) as h:  # no ESCALATIONS_ENDPOINTS at all
        t = ticket(priority="urgent")
        await h.tickets.open(t)
        await ts_env.sleep(timedelta(minutes=31))

        async def waiting() -> list[Any]:
            status = await h.tickets.status(t.ticket_id)
            return [n for n in status.undelivered if n.endpoint == "ops-slack"]

        (notice,) = await until_async(waiting)
        timeline = (await h.tickets.timeline(t.ticket_id)).events
    assert "ops-slack" in (notice.last_error or "") and "ESCALATIONS_ENDPOINTS" in (notice.last_error or "")
    assert notice.status == "undelivered"
    skipped = [e for e in timeline if e.kind == "notification_skipped"]
    assert skipped == [] or all(e.detail["why"] == "no email address" for e in skipped)


def test_policy_check_refuses_a_template_error_naming_template_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from cli.main import main

    doc = channel_policy(
        templates={
            "email": {"sla.breached": {"text": "Hello {{ recipient.id }},\n\n{{ ticket_id }}\n{{ ticket.nope }}\n"}}
        }
    )
    path = tmp_path / "bad.yaml"
    import yaml

    path.write_text(yaml.safe_dump(doc))
    assert main(["policy", "check", str(path)]) == 2
    err = capsys.readouterr().err
    assert "notifications.templates.email.sla.breached.text, line 4" in err and "'ticket' is undefined" in err

    doc["notifications"]["templates"] = {"slack": {"default": {"title": "{% for x in y %}"}}}
    path.write_text(yaml.safe_dump(doc))
    assert main(["policy", "check", str(path)]) == 2
    err = capsys.readouterr().err
    assert "notifications.templates.slack.default.title, line 1: syntax error" in err

    doc["notifications"]["templates"] = {
        "teams": {
            "default": {"text": "{% for i in range(20000) %}{% for j in range(20000) %}.{% endfor %}{% endfor %}"}
        }
    }
    path.write_text(yaml.safe_dump(doc))
    assert main(["policy", "check", str(path)]) == 2
    assert "notifications.templates.teams.default.text, line 1: TemplateLimit" in capsys.readouterr().err

    doc["notifications"]["templates"] = {"email": {"default": {"subject": "[{{ ticket_id }}] {{ title }}"}}}
    path.write_text(yaml.safe_dump(doc))
    assert main(["policy", "check", str(path)]) == 0


def test_channel_policy_is_validated_at_load() -> None:
    from config.policy import PolicyError, parse_policy

    leaky = channel_policy()
    leaky["notifications"]["endpoints"].append({"name": "leak", "channel": "slack", "url": "https://hooks.slack.com/x"})
    with pytest.raises(PolicyError) as err:
        parse_policy(leaky)
    assert "notifications.endpoints.4: a slack endpoint takes no url in the policy" in str(err.value)

    doc = channel_policy()
    doc["notifications"]["roles"]["department_head"] = {"endpoints": ["nowhere", "local-receiver"]}
    doc["notifications"]["templates"] = {"email": {"sla.exploded": {"subject": "x"}, "default": {"body": "x"}}}
    with pytest.raises(PolicyError) as err:
        parse_policy(doc)
    text = "\n".join(err.value.problems)
    assert "notifications.roles.department_head.endpoints: unknown endpoint 'nowhere'" in text
    assert "'local-receiver' is a webhook endpoint" in text
    assert "notifications.templates.email.sla.exploded: unknown event type" in text
    assert "notifications.templates.email.default.body: unknown part" in text


def test_notify_preview_prints_each_channel_for_a_sample_ticket(capsys: pytest.CaptureFixture[str]) -> None:
    from cli.main import main

    assert main(["notify", "preview", "sla.breached", "--channel", "email", "--json"]) == 0
    email = json.loads(capsys.readouterr().out)
    assert email["subject"] == "[T-1001] Charged twice" and "SLA breached" in email["text"]
    assert email["headers"]["References"] == email["headers"]["In-Reply-To"]
    assert main(["notify", "preview", "ticket.cc", "--channel", "slack"]) == 0
    check_block_kit(json.loads(capsys.readouterr().out))
    assert main(["notify", "preview", "digest", "--channel", "teams"]) == 0
    check_teams_card(json.loads(capsys.readouterr().out))
    assert main(["notify", "preview", "sla.nope"]) == 2
    assert "unknown event type 'sla.nope'" in capsys.readouterr().err


def test_plan_routes_people_by_role_and_person_and_records_who_has_no_address() -> None:
    from datetime import UTC, datetime

    from config.policy import parse_policy
    from workflows import notices
    from workflows.messages import OutboundEvent, Person

    doc = channel_policy(
        roles={
            "assignee": {"endpoints": ["mail"]},
            "department_head": {"endpoints": ["mail", "ops-slack"], "flood": {"limit": 2, "window": "PT10M"}},
        },
        people={"ann": {"endpoints": ["ops-teams"]}},
    )
    policy = parse_policy(doc)
    event = OutboundEvent(
        id="msg_ticket-T-1_abc_1",
        type="sla.breached",
        occurred_at=datetime(2026, 11, 23, 9, tzinfo=UTC),
        ticket_id="T-1",
        workflow_id="ticket-T-1",
        tier=1,
        department="support",
        priority="high",
        recipients=[Person(role="assignee", id="bob"), Person(role="assignee", id="ann")],
        cc=[Person(role="department_head", id="dana.head", email="dana@example.com")],
        reason="breach",
    )
    planned, skipped = notices.plan(policy, event, "notify")
    by_key = {p.key: p.deliver for p in planned}
    assert set(by_key) == {
        "msg_ticket-T-1_abc_1@local-receiver",  # the webhook feed, by name only
        "msg_ticket-T-1_abc_1@mail:dana.head",
        "msg_ticket-T-1_abc_1@ops-slack",
        "msg_ticket-T-1_abc_1@ops-teams",  # ann's own entry replaces her role's
    }
    assert all(d.endpoint.url is None for d in by_key.values())
    assert skipped == [{"recipient": "bob", "role": "assignee", "endpoint": "mail", "why": "no email address"}]
    head = by_key["msg_ticket-T-1_abc_1@mail:dana.head"]
    assert head.flood is not None and head.flood.limit == 2 and head.recipient is not None
    assert by_key["msg_ticket-T-1_abc_1@ops-teams"].flood is None  # ann has no flood control
    # A breach to the ticket's own assignee is never held, whatever the flood control says.
    doc["notifications"]["flood"] = {"limit": 0, "window": "PT1H"}
    doc["notifications"]["people"]["bob"] = {"email": "bob@example.com"}
    planned, skipped = notices.plan(parse_policy(doc), event, "notify")
    bob = next(p.deliver for p in planned if p.key.endswith(":bob"))
    assert bob.flood is None and skipped == []


@pytest.mark.parametrize(
    "source",
    [
        "{% set ns = namespace(s='x') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s }}",
        "{{ 'x' * 100000000 }}",
        "{{ '{:>999999999}'.format(1) }}",
        "{{ 'x'|center(1000000000) }}",
        "{% for i in range(20000) %}{% for j in range(20000) %}.{% endfor %}{% endfor %}",
        "{{ range(10000000)|list|length }}",
        "{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}",
        "{{ ().__class__.__bases__[0].__subclasses__() }}",
    ],
)
def test_the_template_sandbox_stops_loops_explosions_and_escapes(source: str) -> None:
    from config import templates

    context = templates.sample_context("email", "sla.breached")
    with pytest.raises(templates.TemplateFailure) as failure:
        templates.render({"email": {"default": {"text": source}}}, "email", "sla.breached", context)
    assert failure.value.name == "notifications.templates.email.default.text"


async def test_flood_control_takes_a_retried_hand_over_once(ts_env: WorkflowEnvironment, make_harness: Any) -> None:
    from datetime import UTC, datetime

    from workflows.digest import FloodControl, flood_workflow_id
    from workflows.messages import (
        AdmitInput,
        DeliverInput,
        DigestSummary,
        EndpointRef,
        FloodInput,
        OutboundEvent,
        Person,
    )

    smtp = SmtpServer().start()
    head = Person(role="department_head", id="dana.head", email="dana@example.com")
    try:
        async with make_harness(ts_env, None, channel_policy(), endpoints={"mail": smtp_settings(smtp)}) as h:
            control = FloodInput(
                flood_key="mail:dana.head",
                channel="email",
                endpoint=EndpointRef(name="mail"),
                recipient=head,
                limit=0,
                window=timedelta(minutes=10),
            )

            def notice(n: int) -> AdmitInput:
                event = OutboundEvent(
                    id=f"msg_ticket-T-{n}_abc_1",
                    type="ticket.cc",
                    occurred_at=datetime.now(UTC),
                    ticket_id=f"T-{n}",
                    workflow_id=f"ticket-T-{n}",
                    tier=1,
                    department="support",
                    priority="high",
                    cc=[head],
                    reason="breach",
                )
                request = DeliverInput(event=event, endpoint=EndpointRef(name="mail"), channel="email", recipient=head)
                return AdmitInput(key=request.key(), notice=request)

            for admitted in (notice(1), notice(2), notice(1)):  # T-1's hand-over is retried
                await h.client.start_workflow(
                    FloodControl.run,
                    control,
                    id=flood_workflow_id(control.flood_key),
                    task_queue=h.task_queue,
                    start_signal="admit",
                    start_signal_args=[admitted],
                )
            handle = h.client.get_workflow_handle(flood_workflow_id(control.flood_key))
            await ts_env.sleep(timedelta(minutes=11))  # past the window's end
            await until(lambda: smtp.mailbox.for_("dana@example.com"))
            (window,) = await handle.query("windows", result_type=list[DigestSummary])
    finally:
        smtp.stop()
    assert (window.admitted, window.digested, window.sent_alone, window.delivered) == (2, 2, 0, True)
    (digest,) = smtp.mailbox.for_("dana@example.com")
    assert "- T-1 " in body(digest) and "- T-2 " in body(digest) and body(digest).count("- T-1 ") == 1


async def test_a_notice_renders_with_the_templates_its_ticket_froze(
    ts_env: WorkflowEnvironment, receiver: Receiver, make_harness: Any, smtp: SmtpServer
) -> None:
    """The policy file's email template changes after the ticket opened: the ticket's notices keep
    the template of the policy it froze (a template is part of the ticket's policy, like its SLA)."""
    import yaml

    frozen = {"email": {"sla.warning": {"subject": "FROZEN {{ event.ticket_id }}"}}}
    doc = channel_policy(roles={}, people={"support-t1": {"email": "t1@example.com", "endpoints": ["mail"]}})
    doc["notifications"]["templates"] = frozen
    async with make_harness(ts_env, receiver, doc, endpoints={"mail": smtp_settings(smtp)}) as h:
        t = ticket(priority="urgent")
        await h.tickets.open(t)
        await h.tickets.status(t.ticket_id)  # opened: its policy frozen
        changed = {"email": {"sla.warning": {"subject": "CHANGED {{ event.ticket_id }}"}}}
        h.settings.policy_path.write_text(
            yaml.safe_dump({**doc, "notifications": {**doc["notifications"], "templates": changed}})
        )
        await ts_env.sleep(timedelta(minutes=23))  # the first-response warning to the queue's list
        mails = await until(lambda: smtp.mailbox.for_("t1@example.com"), seconds=20)
    assert [str(m["Subject"]) for m in mails] == [f"FROZEN {t.ticket_id}"]
