"""The worker's policy file: read when it changes, the last good policy kept when it turns invalid,
and frozen into the snapshot a new ticket carries in its history.

Apart from the activities that use it (`activities/ticket_activities.py`) because the worker's
start (`workers/main.py`) runs the same check.
"""

from __future__ import annotations

import contextlib
from datetime import datetime, timedelta
from pathlib import Path

import structlog
from temporalio import activity
from temporalio.exceptions import ApplicationError

from config.loading import PolicyError, load_policy_file
from config.model import Policy
from config.settings import Settings
from config.snapshots import frozen_policy
from config.urls import endpoint_problems
from workflows.messages import PolicySnapshot
from workflows.metrics import DESCRIPTIONS, POLICY_INVALID

log = structlog.get_logger("activities")


def count_invalid_policy() -> None:
    """The SDK's metric meter when called inside an activity; a no-op elsewhere (start-up)."""
    with contextlib.suppress(RuntimeError):
        activity.metric_meter().create_counter(POLICY_INVALID, DESCRIPTIONS[POLICY_INVALID]).add(1)


def load_checked_policy(path: Path, settings: Settings) -> Policy:
    """The policy file as the worker takes it: valid, and every endpoint URL it names allowed by
    `ESCALATIONS_ALLOWED_ENDPOINT_HOSTS`. Raises `PolicyError` naming each problem."""
    policy = load_policy_file(path)
    problems = endpoint_problems(
        [(f"notifications.endpoints.{e.name}.url", e.url) for e in policy.notifications.endpoints if e.url],
        settings.endpoint_hosts,
    )
    if problems:
        raise PolicyError(str(path), problems)
    return policy


class PolicyFile:
    """The settings' policy file as it is now, or the last good one."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._file_key: tuple[str, int, int] | None = None
        self._good: Policy | None = None

    def current(self) -> Policy:
        """The policy file as it is now, or the last good one if it has turned invalid.

        Re-read only when the file changes (path, modification time, size). A file that fails to
        load (half-written, invalid) never fails a ticket: the last good policy stays in force,
        and the failure is logged and counted (`escalations_policy_invalid`) once per change.
        """
        path = self._settings.policy_path
        try:
            stat = path.stat()
            key = (str(path), stat.st_mtime_ns, stat.st_size)
        except OSError:
            key = (str(path), 0, 0)
        if key != self._file_key:
            self._file_key = key
            try:
                policy = load_checked_policy(path, self._settings)
                if self._good is None or policy.fingerprint() != self._good.fingerprint():
                    log.info("policy.loaded", path=str(path), version=policy.version_label(path))
                self._good = policy
            except PolicyError as err:
                count_invalid_policy()
                log.error(
                    "policy.invalid",
                    path=str(path),
                    problems=err.problems,
                    kept=self._good.version_label(path) if self._good else None,
                )
        if self._good is None:
            # Retried by Temporal without limit: the ticket waits for a valid file, it does not fail.
            raise ApplicationError(f"no valid policy at {path} yet; fix the file", type="PolicyInvalid")
        return self._good


def freeze(policy: Policy, settings: Settings, year: int) -> PolicySnapshot:
    """The snapshot a ticket opened in `year` carries (`config.snapshots.frozen_policy`)."""
    version = policy.version_label(settings.policy_path)  # of the file, as `policy check` prints it
    policy = frozen_policy(policy, year, webhook_url_set=bool(settings.webhook_url))
    return PolicySnapshot(
        version=version,
        fingerprint=policy.fingerprint(),
        source=settings.policy_path.name,
        document=policy.model_dump(mode="json"),
        store_events=settings.store_events,
    )


# A policy load measured from the workflow's request when that is longer than from its own first
# schedule by more than this (the default workflow task timeout): it was re-run after a crash.
RERUN_GAP_SECONDS = 10.0


def loaded_at(requested_at: datetime, first_scheduled: datetime, now: datetime) -> datetime:
    """When the policy loaded, on the workflow's clock (the workflow decides what follows the load
    at that time): the request's time plus how long the ticket waited (retries of a broken file
    included), measured from the first try's schedule on this worker's clock alone, so a skew with
    the server's cancels out. From the request only when that is a workflow task's timeout longer
    ago: a load re-run by another worker after a crash is scheduled anew."""
    waited = (now - first_scheduled).total_seconds()
    since_request = (now - requested_at).total_seconds()
    if since_request - waited > RERUN_GAP_SECONDS:
        waited = since_request
    return requested_at + timedelta(seconds=max(waited, 0.0))
