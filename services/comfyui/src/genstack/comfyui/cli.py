"""``genstack-comfyui start | worker | settings | record``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pydantic import ValidationError

from genstack.core.logging import configure_logging


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="genstack-comfyui", description="ComfyUI start-up and its job bridge."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("start", help="GPU flags, models, extra model paths, then exec ComfyUI")
    sub.add_parser("worker", help="run workflow jobs from queue comfyui against COMFYUI_URL")
    sub.add_parser("settings", help="print the effective settings (secrets masked) and exit")
    record = sub.add_parser(
        "record",
        help="run the recorder's workflows against a ComfyUI and write its HTTP and websocket "
        "exchanges as JSON (the replay stand-in's fixtures)",
    )
    record.add_argument("--url", required=True, help="ComfyUI's base URL")
    record.add_argument("--out", required=True, type=Path, help="folder for the recordings")
    record.add_argument(
        "--output-dir",
        required=True,
        type=Path,
        help="that ComfyUI's --output-directory (the files are recorded too)",
    )
    record.add_argument(
        "--only",
        action="append",
        metavar="NAME",
        help="record only this (repeatable): system_stats, object_info or a scenario's name",
    )
    args = parser.parse_args(argv)

    if args.command == "record":
        configure_logging("comfyui-record", "INFO", "text")
        from genstack.comfyui.recorder import record_all

        try:
            written = record_all(args.url, args.out, args.output_dir, args.only)
        except ValueError as exc:
            print(f"genstack-comfyui record: {exc}", file=sys.stderr)
            return 2
        for path in written:
            print(path)
        return 0

    from genstack.comfyui.settings import ComfyUISettings

    try:
        settings = ComfyUISettings()
    except ValidationError as exc:
        print(f"genstack-comfyui: bad configuration: {exc}", file=sys.stderr)
        return 2
    if args.command == "settings":
        print(settings.model_dump_json(indent=2))
        return 0
    if args.command == "start":
        configure_logging("comfyui-start", settings.log_level, settings.log_format)
        from genstack.comfyui.start import start

        return start(settings)
    configure_logging("comfyui-worker", settings.log_level, settings.log_format)
    from genstack.comfyui.worker import run

    return run(settings)


if __name__ == "__main__":
    sys.exit(main())
