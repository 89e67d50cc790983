"""ComfyUI (queue comfyui): image, video and workflow params, from its contract."""

from genstack.core.contracts.comfyui import PARAMS

__all__ = ["PARAMS"]
