"""pytake-fake-graph-api [--host H] [--port P] [--token T]"""

from __future__ import annotations

import argparse

import uvicorn

from .app import create_app


def cli(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="pytake-fake-graph-api")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--token", default=None, help="the only access token accepted (any Bearer when unset)")
    args = parser.parse_args(argv)
    uvicorn.run(create_app(args.token), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    cli()
