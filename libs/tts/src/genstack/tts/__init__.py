"""genstack.tts: the HTTP model server every TTS service shares, and its job handler.

- ``app``: ``create_app(engine, settings, routers=...)``, the ASGI app of one TTS server;
- ``routes/``: its APIRouters (``speech``, ``voices``, ``ops``);
- ``server``: ``TTSServer`` (lifecycle, request checks, the audio answer), ``get_server``;
- ``schemas``: the speech request and voice ids (limits from genstack.core.contracts);
- ``responses``: whole-file, streamed and SSE answers;
- ``engine``: the protocol a model implements, ``SynthesisParams``;
- ``model_thread``: the one thread that runs the model, with a bounded queue;
- ``synthesis``, ``audio``, ``text``, ``voices``, ``cache``: from text and voice to encoded audio;
- ``job``: the queue worker's handler; ``tone``: a weightless engine for tests and trials.
The HTTP edge (errors, auth, limits, uvicorn) is ``genstack.http``'s.
"""
