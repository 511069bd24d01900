"""Jobs whose broker message is gone are sent again: no accepted job waits forever.

A job is recorded, then its message is put on the Redis queue. When Redis loses that message (restarted
without its AOF, evicted, failed over), the record says `queued` (or `running`, with a dead worker) and
nothing would ever run it. The gateway looks every so often for such jobs and submits them again; the
job lease makes a copy that races a live one harmless, and a terminal job's copy returns at once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta

from services.common.jobs import Job, JobRepository, JobState, now
from services.common.storage import ObjectStore

log = logging.getLogger(__name__)


def jobs_to_resend(
    jobs: Iterable[Job],
    has_message: Callable[[Job], bool],
    at: datetime,
    queued_for: timedelta,
    silent_for: timedelta,
) -> list[Job]:
    """Queued longer than `queued_for`, or running without a heartbeat for `silent_for`, and not in the broker."""
    candidates = [
        job
        for job in jobs
        if (job.state == JobState.queued and at - job.created_at > queued_for)
        or (job.state == JobState.running and at - (job.heartbeat_at or job.created_at) > silent_for)
    ]
    return [job for job in candidates if not has_message(job)]


class LostJobSweeper:
    """A daemon thread of the gateway that resends lost jobs every `interval_s`."""

    def __init__(
        self,
        store: ObjectStore,
        has_message: Callable[[Job], bool],
        submit: Callable[[Job], None],
        queued_for_s: float,
        silent_for_s: float,
        interval_s: float,
    ) -> None:
        self.store, self.has_message, self.submit = store, has_message, submit
        self.queued_for, self.silent_for = timedelta(seconds=queued_for_s), timedelta(seconds=silent_for_s)
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="lost-job-sweeper", daemon=True)

    def sweep(self) -> list[Job]:
        """Resend what is lost now; return those jobs."""
        jobs = JobRepository(self.store).list()
        lost = jobs_to_resend(jobs, self.has_message, now(), self.queued_for, self.silent_for)
        for job in lost:
            log.warning("job %s (%s) has no broker message: sending it again", job.id, job.state.value)
            self.submit(job)
        return lost

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.sweep()
            except Exception:  # the broker or the store is down: the next round tries again
                log.warning("looking for lost jobs failed", exc_info=True)
