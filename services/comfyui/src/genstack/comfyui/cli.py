"""``genstack-comfyui start | settings``."""

from __future__ import annotations

import argparse
import sys

from pydantic import ValidationError

from genstack.core.logging import configure_logging


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="genstack-comfyui", description="ComfyUI start-up and its job bridge."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("start", help="GPU flags, models, extra model paths, then exec ComfyUI")
    sub.add_parser("settings", help="print the effective settings (secrets masked) and exit")
    args = parser.parse_args(argv)

    from genstack.comfyui.settings import ComfyUISettings

    try:
        settings = ComfyUISettings()
    except ValidationError as exc:
        print(f"genstack-comfyui: bad configuration: {exc}", file=sys.stderr)
        return 2
    if args.command == "settings":
        print(settings.model_dump_json(indent=2))
        return 0
    configure_logging("comfyui-start", settings.log_level, settings.log_format)
    from genstack.comfyui.start import start

    return start(settings)


if __name__ == "__main__":
    sys.exit(main())
