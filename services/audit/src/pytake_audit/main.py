"""pytake-audit run"""

from __future__ import annotations

import gc

# No cyclic collection while the process starts: imports alone ran it hundreds of times, a fifth
# of a restarted replica's start-up CPU. The service turns it back on, tuned, once it has started
# (pytake_plumbing.service_app.tune_garbage_collector); a CLI command is short-lived.
gc.disable()

import argparse

import uvicorn

from .app import create_app
from .settings import AuditSettings


def cli(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="pytake-audit")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("run", help="serve the audit consumer")
    args = parser.parse_args(argv)
    settings = AuditSettings()
    if args.command == "run":
        uvicorn.run(create_app(settings), host=settings.http_host, port=settings.http_port, log_config=None)


if __name__ == "__main__":
    cli()
