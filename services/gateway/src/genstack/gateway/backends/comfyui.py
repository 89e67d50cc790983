"""ComfyUI (queue comfyui): image, video, tts (VibeVoice) and workflow params, from its
contract; ``vibevoice`` is its speech model, ``comfyui`` its image model."""

from genstack.core.contracts.comfyui import PARAMS, SPEECH_MODELS

__all__ = ["PARAMS", "SPEECH_MODELS"]
