"""The ticket's record store sync: its events and summary row written by `store_events` activities.

Events are numbered and kept by the `Recorder` (`workflows/recording.py`) until stored; this class
hands them over in batches, a finished ticket's last batch as a local activity. Writing never gives
up: a database outage delays the record, the ticket goes on meanwhile, and it completes (or
continues as new) only once everything is stored, or carries what waits.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

import workflows.recording as recording
from workflows.activity_interfaces import (
    ActivityOptions,
    LocalActivityOptions,
    StoreActivityInterface,
)
from workflows.decision_types import Action
from workflows.messages import (
    StoreBatch,
)
from workflows.models import TimelineEvent
from workflows.ticket_core import TicketCore

# Patch: the rows the workflow writes itself (a client's refusal report, a carried state refused)
# go to the record store too. Before it they were on the timeline only; a ticket that started
# without the marker keeps its store's numbering on replay.
STORE_OWN_ROWS_PATCH = "store-own-rows-v1"

# Writing the ticket's record never gives up either: a database outage delays the record, the
# ticket goes on meanwhile, and it completes only once everything is stored (see `recording.py`).
STORE_OPTIONS = ActivityOptions(
    start_to_close_timeout=timedelta(seconds=30),
    retry_policy=RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=1)),
)
# The write of a finished ticket's last events and summary: a local activity, in the same workflow
# task as its last notice's outcome, so the ticket ends without one more activity and task (and its
# batch stays out of history: a local activity records only its result). After a few seconds of
# failures its retries wait on timers, so a database outage holds no workflow task open.
FINAL_STORE_OPTIONS = LocalActivityOptions(
    start_to_close_timeout=timedelta(seconds=10),
    retry_policy=RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=1)),
    local_retry_threshold=timedelta(seconds=5),
)


class TicketStoreSync(TicketCore):
    """Writes the ticket's record store from its decisions (when the policy's `store_events` is on)."""

    def _store_wanted(self) -> bool:
        ref = self._policy_ref
        return ref is not None and ref.store_events

    def _store_start(self) -> None:
        """At the first task of a run: write the record store from here on (policy setting on)."""
        self._store_on = self._store_wanted()

    def _store_ready_to_finish(self) -> bool:
        return not self._store_on or not self._recorder.waiting(final=True)

    def _store_ready_to_continue(self) -> bool:
        if not self._store_on or not self._recorder.waiting(final=False):
            return True
        return self._recorder.may_carry(self._now())

    def _append_row(self, event: TimelineEvent) -> None:
        """A row written by the workflow itself, not by a decision: on the timeline and in the store."""
        self._timeline.append(event)
        state = self._state
        if state is not None and self._store_on and workflow.patched(STORE_OWN_ROWS_PATCH):
            self._recorder.record_events(
                [event], state.tier, state.department, state, self._policy_version(), self._now()
            )

    def _record_action(self, action: Action) -> None:
        undecodable = getattr(action.data, "undecodable", False)
        self._recorder.record_action(
            action.name,
            None if undecodable else action.data,
            action.via,
            action.key,
            self._state,
            self._policy_version(),
            self._now(),
            undecodable=action.data.error if undecodable else None,
        )

    def _start_flush(self, *, force: bool = False, final: bool = False) -> None:
        """Hand the next batch of events (and the summary row) to one `store_events` activity."""
        rec, now = self._recorder, self._now()
        if not self._store_on or self._state is None or not rec.should_flush(now, force):
            return
        if not rec.pending and not final:
            return
        info = workflow.info()
        first = rec.pending[0].seq if rec.pending else rec.next_seq
        record = recording.ticket_record(
            self._ticket,
            self.state,
            life=info.first_execution_run_id or info.run_id,
            workflow_id=info.workflow_id,
            opened_at=rec.opened_at or self._ticket.opened_at or info.start_time,
            policy_version=self._policy_version(),
            complete=rec.complete,
            with_ticket=first == 0,
            closed_at=now if final else None,
            summary=self._summary().model_dump(mode="json") if final else None,
        )
        batch = rec.take(record, now)
        task = asyncio.create_task(self._flush(batch, final), name=f"store {batch.first_seq}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _flush(self, batch: StoreBatch, final: bool) -> None:
        summary = f"store events {batch.first_seq}..{batch.first_seq + len(batch.events) - 1}"
        try:
            if final:
                await workflow.execute_local_activity_method(
                    StoreActivityInterface.store_events, batch, summary=summary, **FINAL_STORE_OPTIONS
                )
            else:
                await workflow.execute_activity_method(
                    StoreActivityInterface.store_events, batch, summary=summary, **STORE_OPTIONS
                )
            self._recorder.stored(batch, self._now())
        except ActivityError as err:  # only a non-retryable failure ends up here: try again later
            workflow.logger.warning("ticket %s: store_events failed: %s", self._ticket.ticket_id, err.cause or err)
            self._recorder.failed(self._now())
        finally:
            self._woken = True
