"""genstack.http: the HTTP edge every genstack server shares (the gateway, the TTS servers).

- ``errors``: OpenAI's error shape, the one status -> type map, ``ApiError``, the handlers;
- ``auth``: API keys held as digests, the bearer token of a request;
- ``middleware``: the one ASGI middleware (request id, auth, body limits, metrics, access log);
- ``cors``: CORS for browser clients, the same way everywhere;
- ``readiness``: the ``{ready, checks}`` answer of ``/readyz``;
- ``serve``: uvicorn, run the same way by every service (graceful drain, our logging).
"""
