"""pytake-fake-graph-api [--host H] [--port P] [--token T] [--latency-ms N] [--webhook-url U --app-secret S]"""

from __future__ import annotations

import argparse
import os

import uvicorn

from .app import create_app


def cli(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="pytake-fake-graph-api")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--token", default=None, help="the only access token accepted (any Bearer when unset)")
    parser.add_argument("--latency-ms", type=float, default=float(os.environ.get("FAKE_GRAPH_LATENCY_MS", "0")),
                        help="time taken to answer each send, like Meta's own latency")
    parser.add_argument("--webhook-url", default=os.environ.get("FAKE_GRAPH_WEBHOOK_URL"),
                        help="post Meta's `sent` status webhook here for every accepted message")
    parser.add_argument("--app-secret", default=os.environ.get("FAKE_GRAPH_APP_SECRET"),
                        help="the app secret that signs those webhooks")
    args = parser.parse_args(argv)
    app = create_app(args.token, latency_s=args.latency_ms / 1000, webhook_url=args.webhook_url,
                     app_secret=args.app_secret)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    cli()
