"""The ticket's contract handlers: every action as a signal and an update of the same name, and the queries.

What they promise, whatever arrives: every signal and update, with any argument (none, null, bytes,
wrong types, megabytes), is answered: an update by its status or an `ActionRejected` error
`{field, reason}`, a signal by a change or a refusal on the timeline. Handlers never raise anything
but `ApplicationError`, so no input can fail a workflow task.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from temporalio import workflow
from temporalio.common import RawValue
from temporalio.exceptions import ApplicationError

import workflows.decisions as decisions
from workflows.decision_types import Action, Decision, Refusal, Undecodable
from workflows.models import (
    DIGEST_MARK,
    MAX_ACTION_BYTES,
    MAX_REPORTED_REFUSALS,
    REFUSAL_SIGNAL,
    RefusalReport,
    TicketStatus,
    Timeline,
    TimelineEvent,
)
from workflows.ticket_effects import TicketEffects


class TicketHandlers(TicketEffects):
    """Signals, updates and queries of a ticket; each action is decided by `ticket_effects`."""

    # Every action is a signal and an update of the same name (the contract). Dynamic handlers take
    # the raw arguments, so that no payload can fail in the SDK's decoding before we see it.
    @workflow.signal(dynamic=True)
    async def on_signal(self, name: str, args: Sequence[RawValue]) -> None:
        await workflow.wait_condition(self._opened)
        if name == REFUSAL_SIGNAL:
            with self._arrival():
                self._record_refusal(args)
            return
        try:
            action = Action(name, _decode(args), via="signal")
            _log_action(self._ticket.ticket_id, action, self._decide_on_arrival(action))
        except Exception as exc:  # decide never raises; this guards the glue around it
            workflow.logger.error("signal %s not applied: %r", name, exc, extra={"ticket_id": self._ticket.ticket_id})

    @workflow.update(dynamic=True)
    async def on_update(self, name: str, args: Sequence[RawValue]) -> TicketStatus:
        await workflow.wait_condition(self._opened)
        try:
            update = workflow.current_update_info()
            key, digest = _split_key(update.id) if update else (None, None)
            action = Action(name, _decode(args), via="update", key=key, digest=digest)
            with self._arrival():  # the answer is the ticket as of the action's time
                decision = self._decide(action)
                status = self.current_status() if decision.refusal is None else None
            _log_action(self._ticket.ticket_id, action, decision)
            if decision.refusal is not None or status is None:
                raise _rejected(decision.refusal or Refusal("internal", "no status"))
            return status
        except ApplicationError:
            raise
        except Exception as exc:  # never fail the workflow task: fail only this update
            raise _rejected(Refusal("internal", f"{type(exc).__name__}: {exc}"[:300])) from None

    @on_update.validator
    def validate_update(self, name: str, args: Sequence[RawValue]) -> None:
        """Refuse before anything reaches history: unknown actions, oversized or malformed payloads.

        What the ticket's state or the policy refuses is decided by the handler instead, so that
        the refusal is recorded on the timeline."""
        size = sum(a.payload.ByteSize() for a in args)
        if size > MAX_ACTION_BYTES:
            refusal = Refusal("payload", f"{size} bytes; an action takes at most {MAX_ACTION_BYTES}")
            _log_action(self._ticket.ticket_id, Action(name, None), refusal)
            self._metrics.refused(name, "payload", "update")
            raise _rejected(refusal, recorded=False)
        data = _decode(args)
        parsed = decisions.parse_action(name, data)
        if isinstance(parsed, Refusal):
            _log_action(self._ticket.ticket_id, Action(name, data), parsed)
            self._metrics.refused(name, parsed.field, "update")
            raise _rejected(parsed, recorded=False)

    def _record_refusal(self, args: Sequence[RawValue]) -> None:
        """A `refused` row on the timeline and in the record store: no state change, no wake-up.

        Bounded per run (`MAX_REPORTED_REFUSALS`); a report that does not validate is only logged."""
        try:
            report = RefusalReport.model_validate(_decode(args))
        except Exception as exc:
            workflow.logger.warning(
                "refusal_report.ignored", extra={"ticket_id": self._ticket.ticket_id, "error": str(exc)[:300]}
            )
            return
        self._reported += 1
        if self._reported > MAX_REPORTED_REFUSALS:
            if self._reported == MAX_REPORTED_REFUSALS + 1:
                self._append_row(
                    TimelineEvent(
                        at=self._now(),
                        kind="refusals_not_recorded",
                        detail={"why": f"more than {MAX_REPORTED_REFUSALS} refusals reported in this run"},
                    )
                )
            return
        actor = report.actor
        self._append_row(
            TimelineEvent(
                at=self._now(),
                kind="refused",
                actor=f"{actor.role.value}:{actor.id}" if actor else "unknown",
                detail={
                    "action": report.action,
                    "field": report.field,
                    "reason": report.reason,
                    "via": report.via,
                    "update_id": report.update_id,
                    "recorded_by": "client report (the ticket did not see the action)",
                },
            )
        )

    @workflow.query(name="status")
    def status(self) -> TicketStatus:
        return self.current_status()

    @workflow.query(name="applied")
    def applied(self, update_id: str) -> bool:
        """Was an action applied under this update id, in this run or one before it (the last 64
        keys are carried)? The API asks it before a webhook's action, so that a replay is refused
        also after continue-as-new. A query: nothing in history, no patch."""
        if self._state is None or not isinstance(update_id, str):
            return False
        return update_id in self._state.applied_keys

    @workflow.query(name="timeline")
    def timeline(self) -> Timeline:
        return Timeline(ticket_id=self._ticket.ticket_id, events=list(self._timeline), earlier_runs=self._runs - 1)


def _split_key(update_id: str) -> tuple[str, str | None]:
    """The idempotency key and the body's fingerprint of an update id.

    An update id may end with `#sha256:<16 hex>`, the fingerprint of the action's body (the API and
    the CLI send one with every idempotency key); the key is what comes before it, so the same key
    with another body is refused instead of answered as applied (`decision_types.Action.digest`)."""
    key, mark, digest = update_id.rpartition(DIGEST_MARK)
    if not mark or not key or len(digest) != 16 or digest.strip("0123456789abcdef"):
        return update_id, None
    return key, digest


def _decode(args: Sequence[RawValue]) -> Any:
    """The first argument as plain JSON data (None when there is none), or `Undecodable`."""
    if not args:
        return None
    if len(args) > 1:
        return Undecodable(f"expected one argument, got {len(args)}")
    try:
        return workflow.payload_converter().from_payload(args[0].payload)
    except Exception as exc:
        return Undecodable(f"{type(exc).__name__}: {exc}")


def _log_action(ticket_id: str, action: Action, outcome: Decision | Refusal) -> None:
    """One info line per action, accepted or refused: ticket id, action, actor, via and reason as fields.

    Only plain strings are formatted here (the sandbox thread), each bounded; never raises."""
    try:
        refusal = outcome if isinstance(outcome, Refusal) else outcome.refusal
        data = action.data if isinstance(action.data, dict) else {}
        actor = data.get("actor")
        who = None
        if isinstance(actor, dict):
            role, ident = actor.get("role"), actor.get("id")
            who = f"{role}:{ident}" if role else str(ident)
        elif isinstance(actor, str):
            who = actor
        if refusal is not None:
            reason: Any = f"{refusal.field}: {refusal.reason}"
        else:
            reason = data.get("reason") if isinstance(data.get("reason"), str) else None
        duplicate = isinstance(outcome, Decision) and outcome.duplicate
        workflow.logger.info(
            "action.refused" if refusal is not None else "action.accepted",
            extra={
                "ticket_id": ticket_id,
                "action": str(action.name)[:100],
                "actor": who[:200] if who else None,
                "via": action.via,
                "reason": reason[:500] if reason else None,
                **({"duplicate": True} if duplicate else {}),
            },
        )
    except Exception:  # a log line must never fail a handler
        pass


def _rejected(refusal: Refusal, *, recorded: bool | None = None) -> ApplicationError:
    """`recorded=False` (the validator: nothing reaches history) tells the client to report the
    refusal with the `record_refusal` signal, so that it is on the timeline after all."""
    details: dict[str, Any] = {"field": refusal.field, "reason": refusal.reason}
    if recorded is not None:
        details["recorded"] = recorded
    return ApplicationError(str(refusal), details, type="ActionRejected", non_retryable=True)
