"""genstack.testing: real parts for tests — redis-server, an S3 server, a fault proxy, service
processes, a test job worker and speech backend, audio and SSE decoding (pytest plugin)."""
