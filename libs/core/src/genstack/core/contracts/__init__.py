"""Each backend's contract, written once: its queue, model names, limits and the pydantic
models that validate its jobs' ``params``. The gateway validates a job with these models
and the backend's worker validates it again with the very same class, so a job the gateway
accepts is a job the worker takes.

Pure pydantic (no FastAPI, no torch), one module per backend (``xtts``, ``chatterbox``,
``comfyui``) over the shared pieces in ``common`` and ``speech``. Each backend module
exposes ``QUEUE``, ``MODELS`` and ``PARAMS`` (job type -> params model).
"""
