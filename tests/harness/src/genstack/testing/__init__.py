"""genstack.testing: real parts for tests — redis-server, an S3 server, a fault proxy, service
processes, a test job worker and speech backend, audio, SSE and PNG decoding, the ComfyUI
replay, and full-size Stable Diffusion checkpoints with random weights (pytest plugin)."""
