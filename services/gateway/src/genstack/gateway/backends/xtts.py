"""XTTS v2 (queue tts.xtts, model server on :8020): its params, from its contract."""

from genstack.core.contracts.xtts import PARAMS

__all__ = ["PARAMS"]
