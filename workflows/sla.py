"""SLA clocks and breach ladders as pure state transitions.

A clock is a `Clock` model: business time consumed while it ran, plus the running segment. Every
function here takes `now` explicitly; the workflow passes `workflow.now()`. Nothing here sleeps:
the workflow asks `next_due` when to wake up, and `due_steps` what to do when it does.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from config.policy import Calendar, LadderStep
from workflows.clock import add_business_time, business_time_between
from workflows.models import ClockName, ClockStatus
from workflows.state import Clock


def start_clock(name: ClockName, calendar_name: str, cal: Calendar, target: timedelta, now: datetime) -> Clock:
    clock = Clock(name=name, calendar=calendar_name, target=target, started_at=now, running_since=now)
    return _with_deadline(clock, cal)


def consumed(clock: Clock, cal: Calendar, now: datetime) -> timedelta:
    """Business time the clock has counted up to `now`."""
    running = business_time_between(cal, clock.running_since, now) if clock.running_since else timedelta(0)
    return clock.consumed + running


def _with_deadline(clock: Clock, cal: Calendar) -> Clock:
    if clock.running_since is None:
        return clock.model_copy(update={"deadline": None})
    left = max(clock.target - clock.consumed, timedelta(0))
    return clock.model_copy(update={"deadline": add_business_time(cal, clock.running_since, left)})


def pause(clock: Clock, cal: Calendar, now: datetime) -> Clock:
    if clock.running_since is None:
        return clock
    return clock.model_copy(
        update={"consumed": consumed(clock, cal, now), "running_since": None, "paused_since": now, "deadline": None}
    )


def resume(clock: Clock, cal: Calendar, now: datetime) -> Clock:
    """Carry on with the remaining business time; the wall time spent paused is recorded."""
    if clock.paused_since is None:
        return clock
    paused = clock.paused_total + (now - clock.paused_since)
    resumed = clock.model_copy(update={"running_since": now, "paused_since": None, "paused_total": paused})
    return _with_deadline(resumed, cal)


def stop(clock: Clock, cal: Calendar, now: datetime) -> Clock:
    if clock.stopped_at is not None:
        return clock
    return clock.model_copy(update={"consumed": consumed(clock, cal, now), "running_since": None, "stopped_at": now})


def retarget(clock: Clock, cal: Calendar, target: timedelta) -> Clock:
    """A new target counted from the clock's start (priority change): the deadline moves accordingly."""
    return _with_deadline(clock.model_copy(update={"target": target}), cal)


def is_running(clock: Clock) -> bool:
    return clock.running_since is not None and clock.stopped_at is None


def step_time(clock: Clock, cal: Calendar, step: LadderStep) -> datetime | None:
    """When `step` fires next on this clock, or None (clock not running, or the step is spent)."""
    if not is_running(clock) or clock.deadline is None or clock.running_since is None:
        return None
    fired = clock.fired.get(step.id, 0)
    if fired and (step.repeat is None or (step.repeat.count is not None and fired > step.repeat.count)):
        return None
    if step.at_percent is not None and step.at_percent < 100:
        offset = clock.target * (step.at_percent / 100)
        if offset <= clock.consumed:
            base = clock.running_since
        else:
            base = add_business_time(cal, clock.running_since, offset - clock.consumed)
    else:
        base = clock.deadline + (step.after_breach or timedelta(0))
    interval = step.repeat.interval if step.repeat else timedelta(0)
    return base + interval * fired


@dataclass(frozen=True)
class Due:
    """Something a clock needs done at `at`: a ladder step, or (step None) marking the breach."""

    at: datetime
    clock: ClockName
    step: LadderStep | None


def pending(clock: Clock, cal: Calendar, steps: list[LadderStep]) -> list[Due]:
    """Everything still to come on this clock, soonest first; breach marking before same-time steps."""
    items: list[Due] = []
    if is_running(clock) and clock.deadline is not None and clock.breached_at is None:
        items.append(Due(clock.deadline, clock.name, None))
    for step in steps:
        at = step_time(clock, cal, step)
        if at is not None:
            items.append(Due(at, clock.name, step))
    return sorted(items, key=lambda d: (d.at, d.step is not None, d.step.sort_key() if d.step else (0, 0.0)))


def mark_fired(clock: Clock, step: LadderStep) -> Clock:
    fired = dict(clock.fired)
    fired[step.id] = fired.get(step.id, 0) + 1
    return clock.model_copy(update={"fired": fired})


def status(clock: Clock, cal: Calendar, now: datetime) -> ClockStatus:
    state = "stopped" if clock.stopped_at else ("paused" if clock.running_since is None else "running")
    paused = clock.paused_total + (now - clock.paused_since if clock.paused_since else timedelta(0))
    return ClockStatus(
        name=clock.name,
        state=state,
        target=clock.target,
        started_at=clock.started_at,
        deadline=clock.deadline,
        elapsed=consumed(clock, cal, now),
        paused=paused,
        breached=clock.breached_at is not None,
        breached_at=clock.breached_at,
    )
