"""pytake-sender run | migrate | set-rate | resume-number"""

from __future__ import annotations

import gc

# No cyclic collection while the process starts: imports alone ran it hundreds of times, a fifth
# of a restarted replica's start-up CPU. The service turns it back on, tuned, once it has started
# (pytake_plumbing.service_app.tune_garbage_collector); a CLI command is short-lived.
gc.disable()

import argparse
import asyncio
from uuid import UUID

import uvicorn

from pytake_plumbing.database import make_engine, make_session_factory, run_migrations

from .adapters.db.permits import PermitStore
from .app import MIGRATIONS, SERVICE, create_app
from .settings import SenderSettings


def cli(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="pytake-sender")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("run", help="serve the sending consumer")
    sub.add_parser("migrate", help="upgrade the sender's schema")
    rate = sub.add_parser("set-rate", help="a number's throughput limit, in messages per second")
    rate.add_argument("organization_id", type=UUID)
    rate.add_argument("phone_number_id")
    rate.add_argument("messages_per_second", type=int)
    resume = sub.add_parser("resume-number", help="send again from a number paused by Meta's spam limit")
    resume.add_argument("organization_id", type=UUID)
    resume.add_argument("phone_number_id")
    args = parser.parse_args(argv)
    settings = SenderSettings()
    if args.command == "migrate":
        run_migrations(MIGRATIONS, settings.database_url, settings.db_schema(SERVICE))
    elif args.command == "set-rate":
        asyncio.run(_with_permits(settings, lambda p: p.set_rate(args.organization_id, args.phone_number_id,
                                                                  args.messages_per_second)))
    elif args.command == "resume-number":
        asyncio.run(_with_permits(settings, lambda p: p.resume(args.organization_id, args.phone_number_id)))
    else:
        uvicorn.run(create_app(settings), host=settings.http_host, port=settings.http_port, log_config=None)


async def _with_permits(settings: SenderSettings, action) -> None:  # type: ignore[no-untyped-def]
    engine = make_engine(settings.database_url, settings.db_schema(SERVICE))
    try:
        await action(PermitStore(make_session_factory(engine), settings.default_messages_per_second,
                                 settings.max_messages_per_second))
    finally:
        await engine.dispose()


if __name__ == "__main__":
    cli()
