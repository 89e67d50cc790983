"""One delivery of a job, Celery-free: the state machine every backend worker shares.

A backend worker (``genstack-xtts worker``, ...) gives :mod:`genstack.core.worker` one
handler; :class:`JobRunner` does everything else the same way for every backend:

- skips jobs that were cancelled while queued, or finished by an earlier delivery;
- ``queued -> running``, a fresh ``OUTPUT_DIR/<job-id>/`` for the handler's files;
- progress and cancellation through :class:`JobContext` (the handler polls ``cancelled()``
  between steps and stops its backend);
- ``running -> uploading``: every file is handed to this host's uploader with the job id and
  the file count, and the uploader ends the job ``succeeded`` when the last one is verified;
- errors become ``failed`` with a code; :class:`JobFailedError` with ``retryable`` (a backend
  that is down or busy) is retried with backoff first.

A worker holds a lease on the job it runs (``genstack.core.leases``): if it dies, a reaper
in another (or the restarted) worker of the queue dispatches the job again within about a
minute, instead of after Celery's visibility timeout (hours). A new delivery runs the job
again from the start; one that comes after the hand-over finds the job ``uploading`` and
hands the same files over again, which the uploader's ledger makes a no-op. So every task
is idempotent, as Celery's ``acks_late`` redelivery needs.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC
from enum import StrEnum
from pathlib import Path
from typing import Any

from celery import Celery

from genstack.core.jobs import Job, JobError, JobStatus
from genstack.core.jobstore import InvalidTransitionError, JobNotFoundError, JobStore
from genstack.core.leases import JobLeases, LeaseHeldError
from genstack.core.uploads import enqueue_upload

log = logging.getLogger(__name__)

CANCEL_POLL_S = 0.5


class JobOutcome(StrEnum):
    """What one delivery of a job did: :meth:`JobRunner.run`'s answer."""

    HANDED_OVER = "handed_over"  # ran; its files went to the uploader (job `uploading`)
    HANDED_OVER_AGAIN = "handed_over_again"  # a redelivery after the hand-over: same files
    FAILED = "failed"  # the job is `failed` (now, or by an earlier delivery)
    CANCELLED = "cancelled"  # the job is `cancelled` (now, or before this delivery)
    SUCCEEDED = "succeeded"  # an earlier delivery's job had already succeeded: nothing to do
    MISSING = "missing"  # no record (expired or deleted): the task is dropped
    RUNNING_ELSEWHERE = "running_elsewhere"  # another worker holds the job's lease
    SUPERSEDED = "superseded"  # cancelled or deleted between the read and `running`
    LEASE_LOST = "lease_lost"  # another delivery took the job over mid-run: it finishes it


class JobFailedError(Exception):
    """The job cannot succeed; ``code`` and ``message`` are shown to the client.

    ``retryable``: the cause may pass (backend down, busy, loading its model); the task is
    retried with backoff before the job is failed."""

    def __init__(self, code: str, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retryable = retryable


class JobCancelledError(Exception):
    """Raised by a handler (or :meth:`JobContext.check_cancelled`) to stop a cancelled job."""


class LeaseLostError(Exception):
    """This worker lost the job's lease (another delivery took it over): stop, change nothing."""


class JobContext:
    """What a handler gets: the job, a folder for its files, progress and cancellation."""

    def __init__(
        self, job: Job, output_dir: Path, store: JobStore, lost: threading.Event | None = None
    ) -> None:
        self.job = job
        self.output_dir = output_dir
        self._store = store
        self._lost = lost or threading.Event()
        self._checked_at = 0.0
        self._cancelled = False

    @property
    def params(self) -> dict[str, Any]:
        return self.job.params

    def progress(self, fraction: float, message: str | None = None) -> None:
        self._store.set_progress(self.job.id, fraction, message)

    def cancelled(self) -> bool:
        """Whether the handler should stop: a cancel was requested (Redis is asked at most
        every CANCEL_POLL_S), or this worker lost the job's lease."""
        if self._cancelled or self._lost.is_set():
            return True
        now = time.monotonic()
        if now - self._checked_at >= CANCEL_POLL_S:
            self._checked_at = now
            self._cancelled = self._store.cancel_requested(self.job.id)
        return self._cancelled

    def check_cancelled(self) -> None:
        if self._lost.is_set():
            raise LeaseLostError(self.job.id)
        if self.cancelled():
            raise JobCancelledError(self.job.id)


JobHandler = Callable[[JobContext], Sequence[Path]]
# (path, job_id, job_files, date) -> hand one file to this host's uploader
HandOver = Callable[[str, str, int, str], None]


class JobRunner:
    """One job delivery, Celery-free (``register_job_task`` adds the queue and retries)."""

    def __init__(
        self,
        *,
        store: JobStore,
        handler: JobHandler,
        output_dir: Path,
        hand_over: HandOver,
        leases: JobLeases,
    ) -> None:
        self.store = store
        self.handler = handler
        self.output_dir = output_dir
        self.hand_over = hand_over
        self.leases = leases

    def run(self, job_id: str, *, final_attempt: bool = True) -> JobOutcome:
        """Run the job; returns what happened. Raises JobFailedError (retryable) only when
        not ``final_attempt``: the caller retries it later."""
        job = self.store.get(job_id)
        if job is None:
            log.warning(
                "job not found (expired or deleted), task dropped", extra={"job_id": job_id}
            )
            return JobOutcome.MISSING
        if job.status.terminal:
            return JobOutcome(job.status.value)
        try:
            with self.leases.held(job_id) as lost:
                return self._run_held(job, lost, final_attempt)
        except LeaseHeldError:
            log.info("job is running on another worker", extra={"job_id": job_id})
            return JobOutcome.RUNNING_ELSEWHERE

    def _run_held(self, job: Job, lost: threading.Event, final_attempt: bool) -> JobOutcome:
        job_id = job.id
        folder = self.output_dir / job_id
        if job.status == JobStatus.UPLOADING:
            self._hand_over(job, self._files_in(folder))
            return JobOutcome.HANDED_OVER_AGAIN
        if self.store.cancel_requested(job_id):
            return self._cancel(job_id, folder)
        try:
            job = self.store.set_status(job_id, JobStatus.RUNNING)
        except (InvalidTransitionError, JobNotFoundError):
            return JobOutcome.SUPERSEDED  # cancelled or deleted between the read and now
        shutil.rmtree(folder, ignore_errors=True)  # what an interrupted earlier try left
        folder.mkdir(parents=True, exist_ok=True)
        context = JobContext(job, folder, self.store, lost)
        started = time.monotonic()
        try:
            files = list(self.handler(context))
            context.check_cancelled()
        except LeaseLostError:
            log.warning("job taken over by another delivery", extra={"job_id": job_id})
            return JobOutcome.LEASE_LOST
        except JobCancelledError:
            return self._cancel(job_id, folder)
        except JobFailedError as exc:
            if exc.retryable and not final_attempt:
                raise
            return self._fail(job_id, exc.code, exc.message)
        except Exception as exc:
            log.exception("job handler crashed", extra={"job_id": job_id})
            return self._fail(job_id, "internal_error", f"{type(exc).__name__}: {exc}")
        outside = [f for f in files if folder.resolve() not in f.resolve().parents]
        if outside:
            return self._fail(
                job_id, "internal_error", f"handler wrote outside its folder: {outside}"
            )
        if not files:
            return self._fail(job_id, "no_output", "the backend produced no file")
        log.info(
            "job produced its files",
            extra={"job_id": job_id, "files": len(files), "seconds": time.monotonic() - started},
        )
        try:
            job = self.store.set_status(job_id, JobStatus.UPLOADING)
        except InvalidTransitionError:
            return self._cancel(job_id, folder)  # cancelled in the last instant
        self._hand_over(job, files)
        return JobOutcome.HANDED_OVER

    def _files_in(self, folder: Path) -> list[Path]:
        if not folder.is_dir():
            return []
        return sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))

    def _hand_over(self, job: Job, files: Sequence[Path]) -> None:
        if not files:
            self._fail(job.id, "upload_failed", "the job's files are gone from the output folder")
            return
        date = job.created_at.astimezone(UTC).strftime("%Y-%m-%d")
        for path in files:
            self.hand_over(str(path.resolve()), job.id, len(files), date)

    def _cancel(self, job_id: str, folder: Path) -> JobOutcome:
        shutil.rmtree(folder, ignore_errors=True)
        with contextlib.suppress(InvalidTransitionError, JobNotFoundError):
            self.store.set_status(job_id, JobStatus.CANCELLED)  # unless it finished already
        log.info("job cancelled", extra={"job_id": job_id})
        return JobOutcome.CANCELLED

    def _fail(self, job_id: str, code: str, message: str) -> JobOutcome:
        with contextlib.suppress(InvalidTransitionError, JobNotFoundError):
            self.store.set_status(
                job_id, JobStatus.FAILED, error=JobError(code=code, message=message)
            )
        log.warning("job failed", extra={"job_id": job_id, "code": code, "err": message})
        return JobOutcome.FAILED


def uploader_hand_over(app: Celery, node_id: str) -> HandOver:
    def hand_over(path: str, job_id: str, job_files: int, date: str) -> None:
        enqueue_upload(app, path, node_id=node_id, job_id=job_id, job_files=job_files, date=date)

    return hand_over
