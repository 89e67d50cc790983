"""genstack.comfyui: ComfyUI start-up and the bridge that runs API-format workflows as jobs.

- ``settings``: ``ComfyUISettings`` (COMFYUI_*, the job worker's, provisioning's);
- ``start``: ``genstack-comfyui start`` (GPU flags, models, extra model paths, exec ComfyUI);
- ``client``: ComfyUI's HTTP + websocket protocol (submit, follow, cancel, upload), typed errors;
- ``workflow``: graph rewrites (save prefixes under the job id, inputs by URL) and outputs;
- ``inputs``: input files by URL (genstack.core.remote_files) or by stored object key;
- ``handler``: ``ComfyJobHandler``, one `workflow` job; ``worker``: the `comfyui` queue worker;
- ``catalogue``: publishes ComfyUI's node catalogue to Redis for the gateway's check;
- ``recorder``: records model-free exchanges (and node catalogue entries) with a real
  ComfyUI as replay fixtures;
- ``cli``: start | worker | settings | record.
"""
