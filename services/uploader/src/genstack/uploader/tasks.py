"""The Celery task around FileUploader: queue, retries with backoff and jitter, requeue on
shutdown."""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery, Task
from celery.exceptions import Reject
from pydantic import ValidationError
from redis.exceptions import RedisError

from genstack.core.backoff import backoff_s
from genstack.core.storage import StorageError, UploadInterruptedError
from genstack.core.uploads import UPLOAD_TASK, UploadRequest
from genstack.uploader.paths import PathRefusedError
from genstack.uploader.upload import FileUploader, RetryableUploadError

log = logging.getLogger(__name__)


def register_upload_task(
    app: Celery,
    uploader: FileUploader,
    *,
    max_retries: int,
    retry_base_s: float,
    retry_max_s: float,
) -> Task[Any, Any]:
    @app.task(name=UPLOAD_TASK, bind=True, max_retries=max_retries)
    def upload_file(self: Task[Any, Any], request: dict[str, Any]) -> dict[str, Any]:
        try:
            req = UploadRequest.model_validate(request)
        except ValidationError as exc:
            log.error(  # noqa: TRY400 - the validation message says it all
                "malformed upload task dropped", extra={"err": str(exc)}
            )
            uploader.metrics.failures.labels("refused").inc()
            return {"result": "refused", "error": str(exc)}
        try:
            outcome = uploader.upload(req)
        except PathRefusedError as exc:
            uploader.report_failure(req, exc, final=True)
            return {"result": "refused", "error": str(exc)}
        except UploadInterruptedError as exc:
            # Shutting down: hand the message back untouched for the next worker.
            log.info("upload interrupted by shutdown, requeued", extra={"path": req.path})
            raise Reject(str(exc), requeue=True) from exc
        except (RetryableUploadError, StorageError, RedisError, OSError) as exc:
            attempt = self.request.retries
            if attempt >= max_retries:
                uploader.report_failure(req, exc, final=True, attempts=attempt + 1)
                return {"result": "failed", "error": str(exc)}
            uploader.report_failure(req, exc, final=False)
            raise self.retry(
                exc=exc, countdown=backoff_s(attempt, retry_base_s, retry_max_s)
            ) from exc
        return {"result": outcome.result, "key": outcome.key, "sha256": outcome.sha256}

    return upload_file
