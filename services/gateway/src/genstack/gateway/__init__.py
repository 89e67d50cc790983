"""genstack.gateway: the one authenticated HTTP API in front of every backend.

- ``app``: ``create_app`` (the edge from genstack.http, routers, lifespan); ``cli``: serve;
- ``settings``: ``GatewaySettings``; ``services``: what a request uses (Redis, storage, ...);
- ``routes/``: ``jobs``, ``openai_audio``, ``openai_images``, ``files``, ``ops``;
- ``backends/``: the backend registry; each backend's params come from genstack.core.contracts;
- ``submit`` + ``messages``: a submission in one Redis round trip (record, event, Celery message);
- ``events``: server-sent job events; ``webhooks/``: signed, retried webhooks;
- ``proxy``: streaming proxy to the model servers; ``links``: signed file links;
- ``metrics``: the gateway's own Prometheus registry.
"""
