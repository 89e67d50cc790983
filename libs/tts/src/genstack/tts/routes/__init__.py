"""The routes every TTS server has, one APIRouter per area: ``speech`` (OpenAI's
/v1/audio/speech and /v1/models), ``voices`` (the voice library), ``ops`` (health, readiness,
metrics). Each takes its server through ``genstack.tts.server.get_server``."""
