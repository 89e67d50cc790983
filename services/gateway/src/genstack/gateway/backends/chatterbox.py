"""Chatterbox (queue tts.chatterbox, model server on :8004): its params, from its contract."""

from genstack.core.contracts.chatterbox import PARAMS

__all__ = ["PARAMS"]
