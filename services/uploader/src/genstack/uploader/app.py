"""Wire the uploader together: Celery worker on upload.<NODE_ID>, watcher, health port."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from celery import signals
from redis.exceptions import RedisError

from genstack.core.celery_app import create_celery_app, run_celery_worker
from genstack.core.health import OK, HealthServer, redis_check
from genstack.core.jobstore import JobStore
from genstack.core.redis_client import connect
from genstack.core.storage import StorageError, storage_from_settings
from genstack.core.uploads import enqueue_upload, upload_queue
from genstack.uploader.ledger import UploadLedger
from genstack.uploader.metrics import UploaderMetrics
from genstack.uploader.paths import AllowedRoots
from genstack.uploader.settings import UploaderSettings
from genstack.uploader.tasks import register_upload_task
from genstack.uploader.upload import FileUploader
from genstack.uploader.watcher import Source, Watcher

log = logging.getLogger(__name__)

GiB = 1024**3
STORAGE_CHECK_TTL_S = 15.0


class UploaderApp:
    def __init__(self, settings: UploaderSettings) -> None:
        self.settings = settings
        self.queue = upload_queue(settings.node_id)
        self.redis = connect(settings.redis_url)
        self.storage = storage_from_settings(settings, parallel_files=settings.upload_workers)
        self.metrics = UploaderMetrics()
        self.ledger = UploadLedger(self.redis, settings.node_id)
        self.roots = AllowedRoots(settings.roots, settings.upload_extensions)
        self.stopping = threading.Event()
        self.worker_ready = threading.Event()
        self.celery = create_celery_app("genstack-uploader", settings.redis_url, settings)
        self.uploader = FileUploader(
            roots=self.roots,
            storage=self.storage,
            ledger=self.ledger,
            jobs=JobStore(self.redis, ttl_s=settings.job_ttl_s),
            metrics=self.metrics,
            key_prefix=settings.upload_key_prefix,
            max_file_bytes=int(settings.upload_max_file_gb * GiB),
            url_expiry_s=settings.presign_expiry_s,
            delete_after_verify=settings.upload_delete_after_verify,
            should_stop=self.stopping.is_set,
        )
        register_upload_task(
            self.celery,
            self.uploader,
            max_retries=settings.upload_max_retries,
            retry_base_s=settings.upload_retry_base_s,
            retry_max_s=settings.upload_retry_max_s,
        )
        self.watcher = Watcher(
            self.roots,
            self.ledger,
            self._enqueue,
            settle_s=settings.upload_settle_s,
            stable_s=settings.upload_stable_s,
            rescan_interval_s=settings.upload_rescan_interval_s,
            requeue_after_s=settings.upload_requeue_after_s,
        )
        self.health = HealthServer(
            settings.upload_metrics_host,
            settings.upload_metrics_port,
            self.metrics.registry,
            self.readiness,
        )
        self._redis_check = redis_check(settings.redis_url)
        self.metrics.track_pending(self._pending)
        self.metrics.track_failed(self._failed)
        self._storage_checked = (0.0, "not checked yet")

    # the process --------------------------------------------------------------------------
    def run(self) -> int:
        log.info(
            "uploader starting",
            extra={
                "node_id": self.settings.node_id,
                "queue": self.queue,
                "storage": self.storage.kind,
                "roots": [str(r) for r in self.roots.configured],
            },
        )
        signals.worker_ready.connect(self._on_ready, weak=False)
        signals.worker_shutting_down.connect(self._on_shutdown, weak=False)
        # The previous process's queued-marks are void: whatever it left unfinished is
        # queued again by the first rescan (the ledger skips what it did finish).
        self.ledger.clear_pending()
        self.ledger.clear_locks()
        self.health.start()
        threading.Thread(target=self._recover, name="recover", daemon=True).start()
        self.watcher.start()
        try:
            code = run_celery_worker(
                self.celery,
                hostname=f"uploader@{self.settings.node_id}",
                queues=[self.queue],
                concurrency=self.settings.upload_workers,
                loglevel=self.settings.log_level,
            )
        finally:
            self.stopping.set()
            self.watcher.stop()
            self.health.stop()
        log.info("uploader stopped", extra={"exit_code": code})
        return code

    def _recover(self) -> None:
        """Abort multipart uploads the previous process of this node left behind (it was
        killed before it could); retried until the store answers."""
        while not self.stopping.is_set():
            left = 0
            try:
                for upload_id, key in list(self.ledger.multipart_in_flight()):
                    if self.storage.abort_multipart(key, upload_id):
                        self.ledger.multipart_finished(upload_id)
                        log.info("aborted a multipart upload left by a crash", extra={"key": key})
                    else:
                        left += 1
            except (RedisError, StorageError, OSError) as exc:
                log.warning("recovery deferred", extra={"err": str(exc)})
                left = 1
            if not left:
                return
            self.stopping.wait(5)

    def _on_ready(self, **_: Any) -> None:
        self.worker_ready.set()
        log.info("uploader ready", extra={"queue": self.queue})

    def _on_shutdown(self, **_: Any) -> None:
        # Running uploads may finish during the soft-shutdown window; just before it ends they
        # stop between parts, abort their multipart upload and go back to the queue.
        window = max(0.0, self.settings.celery_soft_shutdown_s - 1.0)
        timer = threading.Timer(window, self.stopping.set)
        timer.daemon = True
        timer.start()
        log.info("shutting down", extra={"grace_s": self.settings.celery_soft_shutdown_s})

    def _enqueue(self, path: str, source: Source) -> None:
        enqueue_upload(self.celery, path, node_id=self.settings.node_id, source=source)

    # observability ------------------------------------------------------------------------
    def readiness(self) -> dict[str, str]:
        checks = {"redis": self._redis_check()}
        checked_at, status = self._storage_checked
        if time.monotonic() - checked_at > STORAGE_CHECK_TTL_S or status != OK:
            try:
                self.storage.check()
                status = OK
            except StorageError as exc:
                status = str(exc)
            self._storage_checked = (time.monotonic(), status)
        checks["storage"] = status
        checks["worker"] = OK if self.worker_ready.is_set() else "starting"
        return checks

    def _pending(self) -> float:
        try:
            return float(self.ledger.pending_count() + self.watcher.waiting)
        except RedisError:
            return float("nan")

    def _failed(self) -> float:
        try:
            return float(self.ledger.failed_count())
        except RedisError:
            return float("nan")
