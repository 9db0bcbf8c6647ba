"""The project's server script beside servers it did not start: another clone's servers,
or any process holding a default port. `up` moves to a free port and `env` reports it;
a port fixed with PYTAKE_<NAME>_PORT is never moved, and a clash gives a clear error.

Runs a FerretDB of its own (SQLite storage: no second PostgreSQL) in a state dir of its own."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytake_devstack.paths import SERVERS_SCRIPT
from pytake_plumbing.mongo import make_mongo_client

pytestmark = pytest.mark.integration

DEFAULT_MONGO_PORT = 27117


@pytest.fixture
def state_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="pytake-servers-script-"))
    yield path
    script(path, "down", "mongo")
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def default_port_held() -> Iterator[None]:
    """Holds the default port unless a server (the suite's own FerretDB, say) already does."""
    holder = socket.socket()
    try:
        holder.bind(("127.0.0.1", DEFAULT_MONGO_PORT))
        holder.listen()
    except OSError:
        pass  # already held by another process: just as good
    yield
    holder.close()


def script(state: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("PYTAKE_")}
    environment |= {"PYTAKE_STATE_DIR": str(state), "PYTAKE_MONGO_BACKEND": "sqlite", **env}
    return subprocess.run(["bash", str(SERVERS_SCRIPT), *args], env=environment, text=True,
                          capture_output=True, timeout=300)


async def test_up_moves_off_a_port_another_process_holds_and_env_reports_it(
        state_dir: Path, default_port_held: None) -> None:
    started = script(state_dir, "up", "mongo")
    assert started.returncode == 0, started.stderr
    assert f"port 127.0.0.1:{DEFAULT_MONGO_PORT} is in use" in started.stderr

    env = script(state_dir, "env").stdout
    url = next(line.split("=", 1)[1] for line in env.splitlines() if "MONGODB_URL=" in line)
    port = int(url.rstrip("/").rsplit(":", 1)[1])
    assert port != DEFAULT_MONGO_PORT
    assert f"port {port}" in script(state_dir, "status").stdout

    client = make_mongo_client(url)
    try:
        assert (await client.admin.command("ping"))["ok"] == 1
    finally:
        await client.close()


def test_a_port_set_by_the_operator_is_never_moved(state_dir: Path, default_port_held: None) -> None:
    refused = script(state_dir, "up", "mongo", PYTAKE_MONGO_PORT=str(DEFAULT_MONGO_PORT))
    assert refused.returncode != 0
    assert f"port 127.0.0.1:{DEFAULT_MONGO_PORT} (PYTAKE_MONGO_PORT) is already in use" in refused.stderr
    assert "stopped" in script(state_dir, "status").stdout.splitlines()[2]
