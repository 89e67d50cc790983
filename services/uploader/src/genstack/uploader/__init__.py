"""genstack.uploader: drains every output to R2/S3, verified, exactly once.

- ``app``: wiring (Celery worker on ``upload.<NODE_ID>``, watcher, health port); ``cli``: run;
- ``upload``: ``FileUploader``, Celery-free: upload, verify, record; ``tasks``: the Celery task;
- ``watcher``: inotify + rescans of the output folders; ``paths``: which files may be sent;
- ``ledger``: ``UploadLedger``, what is already uploaded; ``metrics``, ``settings``.
"""
