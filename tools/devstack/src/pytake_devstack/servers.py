"""Real Kafka, PostgreSQL and MongoDB-compatible servers for the demo and the tests.

Precedence: servers named by KAFKA_BOOTSTRAP_SERVERS / DATABASE_URL / MONGODB_URL are
used as they are; else, where a Docker engine runs, testcontainers; else the project's
own scripts start local servers on loopback (scripts/servers.sh).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field

from .paths import SERVERS_SCRIPT

ENV_KEYS = {"kafka": "KAFKA_BOOTSTRAP_SERVERS", "postgres": "DATABASE_URL", "mongo": "MONGODB_URL"}


@dataclass
class Servers:
    env: dict[str, str]
    started_locally: list[str] = field(default_factory=list)
    cleanups: list[Callable[[], None]] = field(default_factory=list)

    def stop_started(self) -> None:
        """Stop only what this run started; servers found running are left running."""
        for cleanup in reversed(self.cleanups):
            cleanup()
        if self.started_locally:
            servers_script("down", *self.started_locally)
        self.cleanups.clear()
        self.started_locally = []


def servers_script(*args: str, capture: bool = False) -> str:
    result = subprocess.run(["bash", str(SERVERS_SCRIPT), *args], check=True, text=True,
                            stdout=subprocess.PIPE if capture else None)
    return result.stdout if capture else ""


def local_status() -> dict[str, bool]:
    out = servers_script("status", capture=True)
    running: dict[str, bool] = {}
    for line in out.splitlines():
        parts = line.split()
        if parts and parts[0] in ENV_KEYS:
            running[parts[0]] = "running" in parts
    return running


def local_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for line in servers_script("env", capture=True).splitlines():
        line = line.removeprefix("export ").strip()
        if "=" in line:
            key, value = line.split("=", 1)
            env[key] = value.strip("'\"")
    return env


def docker_engine_available() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "info"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0


def ensure_servers() -> Servers:
    given = {key: os.environ[key] for key in ENV_KEYS.values() if os.environ.get(key)}
    missing = [name for name, key in ENV_KEYS.items() if key not in given]
    if not missing:
        return Servers(env=given)
    if docker_engine_available() and os.environ.get("PYTAKE_USE_LOCAL_SERVERS") != "1":
        return _testcontainers(given, missing)
    before = local_status()
    servers_script("up", *missing)
    env = {**local_env(), **given}
    return Servers(env={k: env[k] for k in ENV_KEYS.values()},
                   started_locally=[name for name in missing if not before.get(name)])


def _testcontainers(given: dict[str, str], missing: list[str]) -> Servers:
    servers = Servers(env=dict(given))
    if "kafka" in missing:
        from testcontainers.kafka import KafkaContainer

        kafka = KafkaContainer("confluentinc/cp-kafka:7.7.1").with_kraft()
        kafka.start()
        servers.cleanups.append(kafka.stop)
        servers.env["KAFKA_BOOTSTRAP_SERVERS"] = kafka.get_bootstrap_server()
    if "postgres" in missing:
        from testcontainers.postgres import PostgresContainer

        pg = PostgresContainer("postgres:15", username="pytake", password="pytake", dbname="pytake",
                               driver="asyncpg")
        pg.start()
        servers.cleanups.append(pg.stop)
        servers.env["DATABASE_URL"] = pg.get_connection_url()
    if "mongo" in missing:
        from testcontainers.mongodb import MongoDbContainer

        mongo = MongoDbContainer("mongo:7")
        mongo.start()
        servers.cleanups.append(mongo.stop)
        servers.env["MONGODB_URL"] = mongo.get_connection_url()
    return servers
