"""``genstack-xtts serve | worker | settings | make-tiny-checkpoint``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pydantic import ValidationError

from genstack.core.logging import configure_logging


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="genstack-xtts", description="XTTS v2 model server and its queue worker."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", help="serve the speech API (OpenAI + xtts-api-server routes)")
    sub.add_parser("worker", help="run tts jobs from queue tts.xtts against the server")
    sub.add_parser("settings", help="print the effective settings (secrets masked) and exit")
    tiny = sub.add_parser(
        "make-tiny-checkpoint",
        help="write a tiny random XTTS v2 checkpoint (tests, smoke tests; it speaks noise)",
    )
    tiny.add_argument("directory", type=Path)
    args = parser.parse_args(argv)

    if args.command == "make-tiny-checkpoint":
        from genstack.xtts.tiny import build_tiny_checkpoint

        print(build_tiny_checkpoint(args.directory))
        return 0

    from genstack.xtts.settings import XttsSettings

    try:
        settings = XttsSettings()
    except ValidationError as exc:
        print(f"genstack-xtts: bad configuration: {exc}", file=sys.stderr)
        return 2
    if args.command == "settings":
        print(settings.model_dump_json(indent=2))
        return 0
    if args.command == "serve":
        configure_logging("xtts", settings.log_level, settings.log_format)
        from genstack.http.serve import ServeOptions, serve
        from genstack.xtts.app import build_app

        options = ServeOptions(host=settings.xtts_host, port=settings.xtts_port)
        return serve(build_app(settings), options)
    configure_logging("xtts-worker", settings.log_level, settings.log_format)
    from genstack.xtts.worker import run

    return run(settings)


if __name__ == "__main__":
    sys.exit(main())
