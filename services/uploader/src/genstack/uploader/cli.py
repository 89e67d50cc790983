"""``genstack-uploader run``."""

from __future__ import annotations

import argparse
import sys

from pydantic import ValidationError

from genstack.core.logging import configure_logging


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="genstack-uploader",
        description="Upload every output of this host to R2/S3 (or local storage), verified.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("run", help="run the upload worker and the output-folder watcher")
    sub.add_parser("settings", help="print the effective settings (secrets masked) and exit")
    args = parser.parse_args(argv)

    from genstack.uploader.settings import UploaderSettings

    try:
        settings = UploaderSettings()
        settings.storage_backend()
    except (ValidationError, ValueError) as exc:
        print(f"genstack-uploader: bad configuration: {exc}", file=sys.stderr)
        return 2
    if args.command == "settings":
        print(settings.model_dump_json(indent=2))
        return 0
    configure_logging("uploader", settings.log_level, settings.log_format)
    from genstack.uploader.app import UploaderApp

    return UploaderApp(settings).run()


if __name__ == "__main__":
    sys.exit(main())
