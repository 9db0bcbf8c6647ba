"""pytake-dev: the developer's entry to the local stack."""

from __future__ import annotations

import argparse
import os

from .demo import RUN_DIR, run_demo
from .servers import servers_script
from .demo_tenant import DEMO_TENANT
from .paths import STATE_DIR
from .stack import DEFAULT_PORTS, Stack, stop_pid_files


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="pytake-dev")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("demo", help="start everything and drive a demo conversation")
    sub.add_parser("stop", help="stop the demo's services and the local servers")
    prepare = sub.add_parser("prepare", help="create topics and run every migration on the configured servers")
    prepare.add_argument("--seed-demo", action="store_true", help="also seed the demo tenant")
    args = parser.parse_args(argv)
    if args.command == "demo":
        run_demo()
    elif args.command == "prepare":
        stack = Stack(env=dict(os.environ), log_dir=STATE_DIR / "logs", ports=dict(DEFAULT_PORTS))
        stack.prepare([DEMO_TENANT] if args.seed_demo else [])
        print("topics created, schemas migrated" + (", demo tenant seeded" if args.seed_demo else ""))
    else:
        stopped = stop_pid_files(RUN_DIR)
        print(f"stopped services: {', '.join(stopped) or 'none running'}", flush=True)
        servers_script("down")


if __name__ == "__main__":
    main()
