"""``genstack-chatterbox serve | worker | settings | make-test-checkpoint``."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from pydantic import ValidationError

from genstack.core.logging import configure_logging


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="genstack-chatterbox", description="Chatterbox model server and its queue worker."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", help="serve the speech API (OpenAI + chatterbox-tts-api routes)")
    sub.add_parser("worker", help="run tts jobs from queue tts.chatterbox against the server")
    sub.add_parser("settings", help="print the effective settings (secrets masked) and exit")
    test = sub.add_parser(
        "make-test-checkpoint",
        help="write a full-size random-weight checkpoint (tests, benchmarks; it speaks noise)",
    )
    test.add_argument("directory", type=Path, nargs="?")
    test.add_argument("--variant", choices=("english", "multilingual", "turbo"), default="english")
    test.add_argument(
        "--print-key",
        action="store_true",
        help="print the key of the checkpoint this build makes (for caches) and exit",
    )
    args = parser.parse_args(argv)
    # chatterbox-tts asks the Hugging Face Hub for one file as a multilingual model loads (the
    # Cangjie table, which the catalogue provisions next to the weights): offline that costs
    # about 20 s of retries. Nothing here needs the Hub (provisioning has its own client), so
    # it is off unless the environment says otherwise; huggingface_hub reads it at import.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    if args.command == "make-test-checkpoint":
        from genstack.chatterbox import testweights

        if args.print_key:
            print(testweights.cache_key(args.variant))
            return 0
        if args.directory is None:
            parser.error("make-test-checkpoint needs a DIRECTORY")
        print(testweights.build_test_checkpoint(args.directory, variant=args.variant))
        return 0

    from genstack.chatterbox.settings import ChatterboxSettings

    try:
        settings = ChatterboxSettings()
    except ValidationError as exc:
        print(f"genstack-chatterbox: bad configuration: {exc}", file=sys.stderr)
        return 2
    if args.command == "settings":
        print(settings.model_dump_json(indent=2))
        return 0
    if args.command == "serve":
        configure_logging("chatterbox", settings.log_level, settings.log_format)
        from genstack.chatterbox.app import build_app
        from genstack.http.serve import ServeOptions, serve

        options = ServeOptions(host=settings.chatterbox_host, port=settings.chatterbox_port)
        return serve(build_app(settings), options)
    configure_logging("chatterbox-worker", settings.log_level, settings.log_format)
    from genstack.chatterbox.worker import run

    return run(settings)


if __name__ == "__main__":
    sys.exit(main())
