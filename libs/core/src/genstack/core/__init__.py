"""genstack.core: what every genstack process shares; no FastAPI, no torch.

- ``settings``: the settings mixins every service's one settings class is made of;
- ``logging``: JSON logs with secrets redacted;
- ``jobs``: the job record and its states; ``jobstore``: its Redis layout (``JobStore``,
  ``AsyncJobStore`` for the gateway), events and cancellation;
- ``contracts/``: each backend's queue, model names, limits and job params, written once;
- ``celery_app``: the Celery app with its reliability defaults, and the worker start-up;
- ``job_task``: the job task's wire contract (``dispatch_job``, ``job_message``);
- ``job_runner``: one job delivery (``JobRunner``, ``JobContext``, ``JobOutcome``);
- ``worker``: ``serve_jobs``, the runtime every job worker is started with;
- ``leases``: job leases and the reaper; ``health``: the health port of CPU processes;
- ``uploads``: handing a file to this host's uploader; ``storage/``: S3/R2 and local storage;
- ``redis_client``, ``backoff``: Redis connections and retry delays;
- ``ssrf``: ``UrlPolicy``, the guard on URLs fetched or called for a client (webhooks,
  inputs by URL): no loopback, private or link-local address unless allowed.
"""
