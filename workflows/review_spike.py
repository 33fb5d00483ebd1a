"""`ReviewSpikeWatch`: checks the record store for escalation and breach spikes, and tells the head.

One long-running workflow per namespace (id `review-spike-watch`, started by the worker). Every
`interval` it asks the `review_find_spikes` activity which departments are above their normal
band yesterday or today, and sends each new department+day once (`review_send_spike`, a signed
`review.spike` webhook whose id is stable per department and day). The pairs already announced are
carried across continue-as-new, so a department is told once per day.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from workflows.activity_interfaces import ActivityOptions, ReviewActivityInterface
    from workflows.review_messages import (
        FindSpikesInput,
        FindSpikesResult,
        SendSpikeInput,
        SpikeFound,
        SpikeWatchState,
    )

WATCH_ID = "review-spike-watch"
MAX_SENT = 500
CHECKS_PER_RUN = 96
FIND_OPTIONS = ActivityOptions(
    start_to_close_timeout=timedelta(minutes=5),
    retry_policy=RetryPolicy(maximum_interval=timedelta(minutes=5), maximum_attempts=5),
)
SEND_OPTIONS = ActivityOptions(
    start_to_close_timeout=timedelta(seconds=30),
    retry_policy=RetryPolicy(maximum_interval=timedelta(minutes=10), maximum_attempts=20),
)


@workflow.defn(name="ReviewSpikeWatch")
class ReviewSpikeWatch:
    """`set_interval` (sent by every worker at start, `review/watch.py`) changes how often it checks from
    the next wait on; it is carried across continue-as-new with the rest of the state."""

    def __init__(self) -> None:
        self._state: SpikeWatchState | None = None
        self._early: timedelta | None = None  # signalled before the run began (signal-with-start)

    @workflow.signal(name="set_interval")
    def set_interval(self, interval: timedelta) -> None:
        if not isinstance(interval, timedelta) or not timedelta(seconds=1) <= interval <= timedelta(days=7):
            return  # a signal never fails the task
        if self._state is None:
            self._early = interval
        else:
            self._state.interval = interval

    @workflow.query(name="interval")
    def interval(self) -> timedelta | None:
        return self._state.interval if self._state is not None else self._early

    @workflow.run
    async def run(self, state: SpikeWatchState) -> None:
        self._state = state
        if self._early is not None:
            state.interval = self._early
        for _ in range(CHECKS_PER_RUN):
            try:
                found = await workflow.execute_activity_method(
                    ReviewActivityInterface.find_spikes, FindSpikesInput(now=workflow.now()), **FIND_OPTIONS
                )
            except Exception as err:  # the store unreachable for long: try again at the next check
                workflow.logger.warning("review spike check failed: %s", err)
                found = FindSpikesResult()
            by_day: dict[str, list[SpikeFound]] = {}
            for spike in found.spikes:
                by_day.setdefault(f"{spike.department}|{spike.day}", []).append(spike)
            for key, spikes in sorted(by_day.items()):
                if key in state.sent:
                    continue
                try:
                    await workflow.execute_activity_method(
                        ReviewActivityInterface.send_spike,
                        SendSpikeInput(
                            department=spikes[0].department,
                            day=spikes[0].day,
                            spikes=spikes,
                            occurred_at=workflow.now(),
                        ),
                        **SEND_OPTIONS,
                    )
                except Exception as err:  # given up: the next check tries again (same webhook-id)
                    workflow.logger.warning("review.spike not delivered: %s", err)
                    continue
                state.sent = [*state.sent, key][-MAX_SENT:]
            await workflow.sleep(state.interval, summary="next spike check")
        workflow.continue_as_new(state)
