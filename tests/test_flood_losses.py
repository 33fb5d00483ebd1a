"""Flood control under an unlucky operator: no notice handed over may be lost, and a notice that
flood control gives up is counted (so the `NoticesGivenUp` alert fires), as a ticket's own is.

The `FloodControl` workflow is driven here exactly as the delivery activity drives it
(signal-with-start of `admit`), on real Temporal servers, with a real worker and a real chat
receiver on 127.0.0.1. Each notice names its own ticket id, so the receiver's bodies (a message on
its own, or a digest listing it) say which notices arrived.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHistory
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from config.settings import EndpointSettings
from tests.conftest import TEST_CONVERTER, make_settings, policy_doc, start_dev_server, time_skipping_with_metrics
from tests.receiver import Receiver
from tests.smtp import SmtpServer, body
from workers.connection import binary
from workers.worker import build_worker
from workflows.digest import FloodControl, flood_workflow_id
from workflows.messages import AdmitInput, DeliverInput, EndpointRef, FloodInput, FloodRef, OutboundEvent, Person

ENDPOINT = "ops-chat"
HISTORIES = Path(__file__).parent / "histories" / "flood"


def flood_key(scenario: str) -> str:
    """One recipient per scenario (each test has its own server), so recorded histories replay."""
    return f"{ENDPOINT}:head-{scenario}"


def notice(ticket_id: str, flood_key: str, window: timedelta, limit: int) -> AdmitInput:
    event = OutboundEvent(
        id=f"msg_ticket-{ticket_id}_life_0",
        type="sla.breached",
        occurred_at=datetime.now(UTC),
        ticket_id=ticket_id,
        workflow_id=f"ticket-{ticket_id}",
        tier=1,
        department="support",
        priority="high",
        recipients=[Person(role="department_head", id="head")],
        rule="fr-breach",
        reason="first response overdue",
    )
    deliver = DeliverInput(
        event=event,
        endpoint=EndpointRef(name=ENDPOINT),
        channel="slack",
        flood=FloodRef(key=flood_key, limit=limit, window=window),
    )
    return AdmitInput(key=deliver.key(), notice=deliver.model_copy(update={"flood": None}), flood=deliver.flood)


async def admit(client: Client, task_queue: str, flood_key: str, request: AdmitInput) -> str | None:
    """What `TicketActivities._hand_to_flood_control` does; the run id that took the signal."""
    assert request.notice.flood is None
    handle = await client.start_workflow(
        "FloodControl",
        FloodInput(
            flood_key=flood_key,
            channel="slack",
            endpoint=EndpointRef(name=ENDPOINT),
            limit=1,
            window=timedelta(seconds=2),
        ),
        id=flood_workflow_id(flood_key),
        task_queue=task_queue,
        start_signal="admit",
        start_signal_args=[request],
    )
    return handle.result_run_id


async def keep_history(client: Client, flood_key: str, run_id: str | None, name: str) -> None:
    """`RECORD_FLOOD_HISTORIES=<label>`: save the run's history to tests/histories/flood/ (replayed below)."""
    label = os.environ.get("RECORD_FLOOD_HISTORIES")
    if not label:
        return
    history = await client.get_workflow_handle(flood_workflow_id(flood_key), run_id=run_id).fetch_history()
    HISTORIES.mkdir(exist_ok=True)
    (HISTORIES / f"{name}-{label}.json").write_text(history.to_json())


def arrived(receiver: Receiver, ticket_ids: list[str]) -> list[str]:
    """The ticket ids named by a message the chat receiver accepted (alone or in a digest)."""
    with receiver.lock:
        bodies = [r.body.decode() for r in receiver.accepted if r.path == "/chat"]
    return [tid for tid in ticket_ids if any(tid in b for b in bodies)]


@asynccontextmanager
async def flood_worker(client: Client, receiver: Receiver, tmp_path: Path, task_queue: str) -> AsyncIterator[None]:
    policy = tmp_path / "policy.yaml"
    policy.write_text(yaml.safe_dump(policy_doc()))
    settings = make_settings(policy, receiver).model_copy(
        update={"endpoints": {ENDPOINT: EndpointSettings.model_validate({"url": f"{receiver.url}/chat"})}}
    )
    async with httpx.AsyncClient(timeout=10) as http, build_worker(client, settings, http, task_queue=task_queue):
        yield


async def wait_for(done: Callable[[], bool], seconds: float) -> None:
    for _ in range(int(seconds * 2)):
        if done():
            return
        await asyncio.sleep(0.5)


async def test_notices_admitted_while_a_digest_is_sent_survive_continue_as_new(
    receiver: Receiver, tmp_path: Path
) -> None:
    """Continue-as-new is suggested (here after 10 history events) while notices wait in the inbox,
    admitted while the window's digest was being sent: they must go out in the next run."""
    env = await start_dev_server(10)
    try:
        task_queue = f"tq-flood-{os.urandom(3).hex()}"
        key = flood_key("continued_with_inbox")
        ids = [f"FL-{os.urandom(2).hex()}-{i}" for i in range(4)]
        receiver.delay_seconds = 3  # a slow chat service: the digest takes 3 s
        async with flood_worker(env.client, receiver, tmp_path, task_queue):
            first = await admit(env.client, task_queue, key, notice(ids[0], key, timedelta(seconds=2), 1))  # alone
            await admit(env.client, task_queue, key, notice(ids[1], key, timedelta(seconds=2), 1))  # held
            # The window ends after 2 s, and its digest (of ids[1]) goes out: admit two more meanwhile.
            await wait_for(lambda: len(receiver.arrived) >= 2, seconds=60)
            assert len(receiver.arrived) >= 2, "the digest was never sent"
            for tid in ids[2:]:
                await admit(env.client, task_queue, key, notice(tid, key, timedelta(seconds=2), 1))
            await wait_for(lambda: len(arrived(receiver, ids)) == len(ids), seconds=60)
            await keep_history(env.client, key, first, "continued_with_inbox")
    finally:
        await env.shutdown()
    assert arrived(receiver, ids) == ids


async def test_notices_admitted_while_an_earlier_one_is_still_retried_are_not_dropped(
    receiver: Receiver, tmp_path: Path
) -> None:
    """The chat service is down for an hour: the window's one notice is retried, the window closes,
    the workflow's linger runs out and it waits only for that retry to end. A notice admitted
    meanwhile must still go out (it was dropped when the workflow completed)."""
    env = await WorkflowEnvironment.start_time_skipping(
        data_converter=TEST_CONVERTER,
        test_server_existing_path=str(binary("temporal-test-server")),
    )
    try:
        task_queue = f"tq-flood-{os.urandom(3).hex()}"
        key = flood_key("admitted_while_retrying")
        ids = [f"FL-{os.urandom(2).hex()}-{i}" for i in range(2)]
        receiver.fail_next = 10**6  # down
        async with flood_worker(env.client, receiver, tmp_path, task_queue):
            first = await admit(env.client, task_queue, key, notice(ids[0], key, timedelta(seconds=2), 1))
            await env.sleep(timedelta(minutes=40))  # window (2 s) and linger (15 min) over, still retrying
            await admit(env.client, task_queue, key, notice(ids[1], key, timedelta(seconds=2), 1))
            receiver.fail_next = 0  # back up
            handle = env.client.get_workflow_handle(flood_workflow_id(key))
            for _ in range(12):  # the next retries (at most 10 minutes apart) and the next window
                await env.sleep(timedelta(minutes=10))
                if (await handle.describe()).status != WorkflowExecutionStatus.RUNNING:
                    break
            status = (await handle.describe()).status
            await keep_history(env.client, key, first, "admitted_while_retrying")
    finally:
        await env.shutdown()
    assert arrived(receiver, ids) == ids
    assert status == WorkflowExecutionStatus.COMPLETED


async def test_a_notice_or_digest_that_flood_control_gives_up_is_counted_as_failed(
    receiver: Receiver, tmp_path: Path
) -> None:
    """The ticket records the hand-over to flood control as delivered; when flood control then gives
    a notice up (here: the chat service refuses it, 410), the worker's `escalations_notifications_total`
    counts it `failed`, as it counts a ticket's own, so the `NoticesGivenUp` alert fires."""
    env, metrics = await time_skipping_with_metrics()
    receiver.status_for_path["/chat"] = 410

    def failed() -> dict[str, float]:
        found: dict[str, float] = {}
        text = httpx.get(metrics, timeout=5).text
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                labels = sample.labels
                if sample.name == "escalations_notifications_total" and labels.get("outcome") == "failed":
                    assert labels["endpoint"] == ENDPOINT
                    found[labels["type"]] = found.get(labels["type"], 0) + sample.value
        return found

    try:
        task_queue = f"tq-flood-{os.urandom(3).hex()}"
        key = flood_key("given_up")
        async with flood_worker(env.client, receiver, tmp_path, task_queue):
            first = await admit(env.client, task_queue, key, notice("FL-alone", key, timedelta(seconds=2), 1))
            await admit(env.client, task_queue, key, notice("FL-held", key, timedelta(seconds=2), 1))
            await env.sleep(timedelta(seconds=5))  # the window ends: its digest is refused too
            for _ in range(60):  # the SDK hands metrics to the exporter asynchronously
                if len(failed()) == 2:
                    break
                await asyncio.sleep(0.5)
            await keep_history(env.client, key, first, "given_up")
    finally:
        await env.shutdown()
    assert failed() == {"sla.breached": 1, "digest": 1}


@pytest.mark.parametrize("path", sorted(HISTORIES.glob("*.json")), ids=lambda p: p.stem)
async def test_flood_control_histories_replay_on_current_code(path: Path) -> None:
    """Runs recorded by each release (`<scenario>-<version>.json`, from 1.0 on) replay unchanged:
    running `FloodControl` workflows are sacred too."""
    scenario = path.stem.rsplit("-", 1)[0]
    text = await asyncio.to_thread(path.read_text)
    history = WorkflowHistory.from_json(flood_workflow_id(flood_key(scenario)), text)
    replayer = Replayer(workflows=[FloodControl], data_converter=TEST_CONVERTER)
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, f"{path.name}: {result.replay_failure}"


async def test_a_digest_goes_to_the_address_the_policy_gives_now_not_the_first_one(tmp_path: Path) -> None:
    """The head's email address changes in the policy file under the running worker. Her
    `FloodControl` workflow (which runs on as long as notices keep coming, continuing as new) was
    started with the old address: notices sent on their own go to the new one (each carries its
    recipient), and so must the digest (it went to the old address, for as long as the workflow ran)."""

    smtp = SmtpServer().start()
    env = await WorkflowEnvironment.start_time_skipping(
        data_converter=TEST_CONVERTER, test_server_existing_path=str(binary("temporal-test-server"))
    )
    key = flood_key("recipient_moved")
    window = timedelta(seconds=30)

    def mail(ticket_id: str, address: str) -> AdmitInput:
        request = notice(ticket_id, key, window, 1)
        deliver = request.notice.model_copy(
            update={
                "endpoint": EndpointRef(name="mail"),
                "channel": "email",
                "recipient": Person(role="department_head", id="head-recipient_moved", email=address),
            }
        )
        return AdmitInput(key=deliver.key(), notice=deliver)

    async def hand_over(request: AdmitInput) -> str | None:
        handle = await env.client.start_workflow(
            "FloodControl",
            FloodInput(
                flood_key=key,
                channel="email",
                endpoint=EndpointRef(name="mail"),
                recipient=request.notice.recipient,
                limit=1,
                window=window,
            ),
            id=flood_workflow_id(key),
            task_queue=task_queue,
            start_signal="admit",
            start_signal_args=[request],
        )
        return handle.result_run_id

    task_queue = f"tq-flood-{os.urandom(3).hex()}"
    policy = tmp_path / "policy.yaml"
    policy.write_text(yaml.safe_dump(policy_doc()))
    settings = make_settings(policy, None).model_copy(
        update={"endpoints": {"mail": EndpointSettings.model_validate(smtp.endpoint())}}
    )
    try:
        async with (
            httpx.AsyncClient(timeout=10) as http,
            build_worker(env.client, settings, http, task_queue=task_queue),
        ):
            first = await hand_over(mail("FL-old-1", "old@example.com"))  # on its own, to the old address
            await hand_over(mail("FL-old-2", "old@example.com"))  # held: in the first digest
            await env.sleep(timedelta(seconds=40))
            # The policy now says new@example.com: tickets hand over notices with the new address.
            await hand_over(mail("FL-new-1", "new@example.com"))
            await hand_over(mail("FL-new-2", "new@example.com"))
            await env.sleep(timedelta(seconds=40))
            await wait_for(lambda: smtp.mailbox.count("@example.com") >= 4, seconds=30)
            await keep_history(env.client, key, first, "recipient_moved")
    finally:
        await env.shutdown()
        smtp.stop()
    old = " ".join(body(m) for m in smtp.mailbox.for_("old@example.com"))
    new = " ".join(body(m) for m in smtp.mailbox.for_("new@example.com"))
    assert "FL-old-1" in old and "FL-old-2" in old and "FL-new" not in old
    assert "FL-new-1" in new and "FL-new-2" in new


async def test_a_new_flood_limit_in_the_policy_applies_to_the_next_window(receiver: Receiver, tmp_path: Path) -> None:
    """The policy raises the head's flood limit from 1 to 3 under the running worker. Her running
    `FloodControl` (started with 1, and running on while notices keep coming) must apply 3 from its
    next window: three notices then go out on their own, and no digest holds them back."""
    env = await WorkflowEnvironment.start_time_skipping(
        data_converter=TEST_CONVERTER, test_server_existing_path=str(binary("temporal-test-server"))
    )
    key = flood_key("limit_raised")
    window = timedelta(seconds=2)
    try:
        task_queue = f"tq-flood-{os.urandom(3).hex()}"
        async with flood_worker(env.client, receiver, tmp_path, task_queue):
            first = await admit(env.client, task_queue, key, notice("FL-a", key, window, 1))  # alone
            await admit(env.client, task_queue, key, notice("FL-b", key, window, 1))  # held: a digest
            await env.sleep(timedelta(seconds=5))
            for tid in ("FL-c", "FL-d", "FL-e"):  # the policy's limit is 3 now
                await admit(env.client, task_queue, key, notice(tid, key, window, 3))
            await env.sleep(timedelta(seconds=5))
            await wait_for(lambda: len(arrived(receiver, ["FL-e"])) == 1, seconds=30)
            await keep_history(env.client, key, first, "limit_raised")
    finally:
        await env.shutdown()
    with receiver.lock:
        bodies = [r.body.decode() for r in receiver.accepted if r.path == "/chat"]
    digests = [b for b in bodies if "Digest:" in b]
    assert len(digests) == 1 and "FL-b" in digests[0] and "FL-c" not in digests[0]
    assert arrived(receiver, ["FL-a", "FL-b", "FL-c", "FL-d", "FL-e"]) == ["FL-a", "FL-b", "FL-c", "FL-d", "FL-e"]
