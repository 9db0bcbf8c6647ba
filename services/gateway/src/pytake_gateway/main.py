"""pytake-gateway run | forward | migrate"""

from __future__ import annotations

import gc

# No cyclic collection while the process starts: imports alone ran it hundreds of times, a fifth
# of a restarted replica's start-up CPU. The service turns it back on, tuned, once it has started
# (pytake_plumbing.service_app.tune_garbage_collector); a CLI command is short-lived.
gc.disable()

import argparse

import uvicorn

from pytake_plumbing.database import run_migrations

from .app import MIGRATIONS, SERVICE, create_app, create_forwarder_app, serving_app
from .settings import GatewaySettings


def cli(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="pytake-gateway")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("run", help="serve Meta's webhook: store each signed POST in the intake topic")
    sub.add_parser("forward", help="split stored webhooks into events and pass each downstream once")
    sub.add_parser("migrate", help="upgrade the gateway's schema (deduplication receipts)")
    args = parser.parse_args(argv)
    settings = GatewaySettings()
    if args.command == "migrate":
        run_migrations(MIGRATIONS, settings.database_url, settings.db_schema(SERVICE))
    elif args.command == "forward":
        uvicorn.run(create_forwarder_app(settings), host=settings.http_host, port=settings.forwarder_http_port,
                    log_config=None)
    else:
        # No access log: every webhook is counted and timed in the metrics, and logged when refused.
        uvicorn.run(serving_app(create_app(settings)), host=settings.http_host, port=settings.http_port,
                    log_config=None, access_log=False)


if __name__ == "__main__":
    cli()
