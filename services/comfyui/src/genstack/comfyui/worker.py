"""``genstack-comfyui worker``: runs `workflow` jobs and the typed templates' `image`, `video`
and `tts` jobs of queue comfyui against COMFYUI_URL, and publishes that ComfyUI's node
catalogue and templates for the gateway's checks at submission."""

from __future__ import annotations

from genstack.comfyui.catalogue import CataloguePublisher
from genstack.comfyui.client import ComfyUIClient
from genstack.comfyui.handler import ComfyJobHandler
from genstack.comfyui.inputs import InputFetcher, StoredInputs, VoiceFiles
from genstack.comfyui.settings import ComfyUISettings
from genstack.comfyui.template_registry import TemplateRegistry
from genstack.comfyui.templates import load_templates
from genstack.comfyui.warmup import Warmup
from genstack.core.contracts.comfyui import QUEUE
from genstack.core.health import http_check
from genstack.core.redis_client import connect
from genstack.core.ssrf import UrlPolicy
from genstack.core.storage import storage_from_settings
from genstack.core.worker import serve_jobs


def run(settings: ComfyUISettings) -> int:
    client = ComfyUIClient(settings.comfyui_url, grace_s=settings.comfyui_unavailable_grace_s)
    policy = UrlPolicy(
        settings.comfyui_input_allow_networks, allow_variable="COMFYUI_INPUT_ALLOW_NETWORKS"
    )
    fetcher = InputFetcher(
        policy,
        max_bytes=settings.comfyui_input_max_mb * 2**20,
        timeout_s=settings.comfyui_input_timeout_s,
        user_agent="genstack-comfyui",
    )
    templates = load_templates()
    if settings.comfyui_templates_dir is not None:
        templates |= load_templates(settings.comfyui_templates_dir)  # a user's own win
    registry = TemplateRegistry(templates)
    handler = ComfyJobHandler(
        client,
        fetcher,
        output_dir=settings.output_dir,
        job_timeout_s=settings.comfyui_job_timeout_s,
        templates=registry,
        stored=StoredInputs(
            storage_from_settings(settings), max_bytes=settings.comfyui_input_max_mb * 2**20
        ),
        voices=VoiceFiles(settings.tts_voices_dir),
    )
    warmup = Warmup(
        client,
        registry,
        settings.output_dir,
        enabled=settings.comfyui_warmup,
        timeout_s=settings.comfyui_warmup_timeout_s,
    )
    warmup.start()
    publisher = None
    if settings.comfyui_catalogue_refresh_s > 0:
        publisher = CataloguePublisher(
            client,
            connect(settings.redis_url),
            field=f"{settings.node_id} {settings.comfyui_url}",
            refresh_s=settings.comfyui_catalogue_refresh_s,
            templates=registry,
        )
        publisher.start()
    try:
        return serve_jobs(
            settings,
            name="comfyui",
            queues=[QUEUE],
            handler=handler,
            concurrency=settings.comfyui_worker_concurrency,
            checks={
                "comfyui": http_check(f"{settings.comfyui_url.rstrip('/')}/system_stats"),
                "warmup": warmup.readiness,
            },
        )
    finally:
        if publisher is not None:
            publisher.stop()
