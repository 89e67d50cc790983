"""Settings from the environment, the Celery defaults, and log redaction."""

from __future__ import annotations

import io
import json
import logging

import pytest

from genstack.core.celery_app import create_celery_app
from genstack.core.logging import configure_logging
from genstack.core.settings import CelerySettings, CoreSettings, StorageSettings
from genstack.core.uploads import UploadRequest, date_of, object_key

R2 = {
    "R2_ENDPOINT": "https://acct.r2.cloudflarestorage.com",
    "R2_BUCKET": "outputs",
    "R2_ACCESS_KEY_ID": "AKIDEXAMPLE",
    "R2_SECRET_ACCESS_KEY": "very-secret-value",
}


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    for name in [*R2, "ENABLE_R2_SYNC", "NODE_ID", "LOG_LEVEL"]:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # no stray .env


def test_storage_is_local_until_r2_is_complete(monkeypatch: pytest.MonkeyPatch) -> None:
    assert StorageSettings().storage_backend() == "local"
    for name, value in R2.items():
        monkeypatch.setenv(name, value)
    assert StorageSettings().storage_backend() == "s3"
    monkeypatch.setenv("ENABLE_R2_SYNC", "false")
    assert StorageSettings().storage_backend() == "local"


def test_r2_required_but_incomplete_names_what_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENABLE_R2_SYNC", "true")
    monkeypatch.setenv("R2_ENDPOINT", R2["R2_ENDPOINT"])
    with pytest.raises(ValueError, match="R2_ACCESS_KEY_ID, R2_SECRET_ACCESS_KEY not set"):
        StorageSettings().storage_backend()


def test_secrets_never_print(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in R2.items():
        monkeypatch.setenv(name, value)
    dumped = StorageSettings().model_dump_json()
    assert "very-secret-value" not in dumped
    assert "AKIDEXAMPLE" not in dumped


def test_core_settings_validate(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOG_LEVEL", "debug")
    assert CoreSettings().log_level == "DEBUG"
    monkeypatch.setenv("NODE_ID", "bad id/with slash")
    with pytest.raises(ValueError, match="node_id"):
        CoreSettings()


def test_celery_reliability_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CELERY_VISIBILITY_TIMEOUT_S", "7200")
    app = create_celery_app("t", "redis://127.0.0.1:1/0", CelerySettings())
    conf = app.conf
    assert conf.task_acks_late is True
    assert conf.task_reject_on_worker_lost is True
    assert conf.worker_prefetch_multiplier == 1
    assert conf.broker_transport_options["visibility_timeout"] == 7200
    assert conf.broker_connection_retry_on_startup is True
    assert conf.worker_soft_shutdown_timeout == 30.0
    with pytest.raises(ValueError):
        CelerySettings(celery_visibility_timeout_s=10)


def test_json_logs_redact_secret_fields() -> None:
    configure_logging("test", "INFO", "json")
    stream = io.StringIO()
    root = logging.getLogger()
    root.handlers[0].stream = stream  # type: ignore[attr-defined]
    logging.getLogger("genstack.x").info(
        "hello", extra={"r2_secret_access_key": "s3cr3t", "api_key": "k", "bytes": 5}
    )
    line = json.loads(stream.getvalue())
    assert line["msg"] == "hello"
    assert line["service"] == "test"
    assert line["bytes"] == 5
    assert line["r2_secret_access_key"] == "***"
    assert line["api_key"] == "***"
    assert "s3cr3t" not in stream.getvalue()


def test_object_keys_follow_the_seed_layout() -> None:
    assert object_key("outputs", "2026-01-17", "job1/a.png") == "outputs/2026-01-17/job1/a.png"
    assert object_key("", "2026-01-17", "a.png") == "2026-01-17/a.png"
    with pytest.raises(ValueError):
        object_key("outputs", "17-01-2026", "a.png")
    assert date_of(0) == "1970-01-01"


@pytest.mark.parametrize(
    "bad",
    [
        {"path": ""},
        {"path": "/x", "job_id": "../etc"},
        {"path": "/x", "date": "yesterday"},
        {"path": "/x", "job_files": 0},
    ],
)
def test_upload_requests_are_validated(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        UploadRequest.model_validate(bad)
