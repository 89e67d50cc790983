"""``genstack-gateway serve``."""

from __future__ import annotations

import argparse
import sys

from pydantic import ValidationError

from genstack.core.logging import configure_logging


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="genstack-gateway",
        description="One authenticated HTTP API for genstack's speech, image and video backends.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    serve_parser = sub.add_parser("serve", help="serve the HTTP API")
    serve_parser.add_argument("--host", help="bind address (default GATEWAY_HOST, 0.0.0.0)")
    serve_parser.add_argument("--port", type=int, help="port (default GATEWAY_PORT, 8080)")
    sub.add_parser("settings", help="print the effective settings (secrets masked) and exit")
    args = parser.parse_args(argv)

    from genstack.gateway.app import create_app
    from genstack.gateway.backends import build_registry
    from genstack.gateway.settings import GatewaySettings

    try:
        settings = GatewaySettings()
        overrides = {
            name: value
            for name, value in (
                ("gateway_host", getattr(args, "host", None)),
                ("gateway_port", getattr(args, "port", None)),
            )
            if value is not None
        }
        settings = settings.model_copy(update=overrides)
        settings.storage_backend()
        build_registry(settings)  # fail here, with a sentence, not in the server's start-up
        app = create_app(settings)
    except (ValidationError, ValueError, OSError) as exc:
        print(f"genstack-gateway: bad configuration: {exc}", file=sys.stderr)
        return 2
    if args.command == "settings":
        print(settings.model_dump_json(indent=2))
        return 0
    configure_logging("gateway", settings.log_level, settings.log_format)
    from genstack.http.serve import ServeOptions, serve

    options = ServeOptions(
        host=settings.gateway_host,
        port=settings.gateway_port,
        loop="uvloop" if sys.platform != "win32" else "asyncio",
        http="httptools",
        workers=settings.gateway_workers,
        forwarded_allow_ips=settings.gateway_forwarded_allow_ips,
        limit_concurrency=settings.gateway_max_concurrency,
        graceful_shutdown_s=10,  # open SSE streams are cut after this
    )
    # Several processes each build their own app from the environment.
    target = "genstack.gateway.app:app_from_env" if settings.gateway_workers > 1 else app
    return serve(target, options)


if __name__ == "__main__":
    sys.exit(main())
