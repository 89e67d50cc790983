"""genstack.xtts: XTTS v2 as a genstack TTS server, and its queue worker.

- ``engine``: ``XttsEngine`` (coqui-tts; torch imported in ``load()``);
- ``checkpoint``: a complete checkpoint folder used as is, else provisioned;
- ``app``: the server (genstack.tts ``create_app`` + the compat router); ``compat``:
  xtts-api-server's routes for SillyTavern;
- ``worker``: the `tts.xtts` queue worker (genstack.core ``serve_jobs``);
- ``settings``, ``cli`` (serve | worker | settings | make-tiny-checkpoint), ``tiny``: a tiny
  random-weight checkpoint in the real layout, for tests.
"""
