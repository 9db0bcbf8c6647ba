"""Starts PyTake's five services and the fake Graph API as real processes."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from pytake_plumbing.messaging import ensure_topics
from pytake_plumbing.settings import CommonSettings

SERVICE_MODULES = {
    "router": "pytake_router.main",
    "flow-engine": "pytake_flow_engine.main",
    "sender": "pytake_sender.main",
    "audit": "pytake_audit.main",
    "gateway-forwarder": "pytake_gateway.main",
    "gateway": "pytake_gateway.main",
}
# The command each process runs; `run` unless named here.
SERVICE_COMMANDS = {"gateway-forwarder": "forward"}
PORT_ENV = {
    "gateway": "GATEWAY_HTTP_PORT",
    "gateway-forwarder": "GATEWAY_FORWARDER_HTTP_PORT",
    "router": "ROUTER_HTTP_PORT",
    "flow-engine": "FLOW_ENGINE_HTTP_PORT",
    "sender": "SENDER_HTTP_PORT",
    "audit": "AUDIT_HTTP_PORT",
}
DEFAULT_PORTS = {"gateway": 8080, "router": 8081, "flow-engine": 8082, "sender": 8083, "audit": 8084,
                 "gateway-forwarder": 8085,
                 "fake-graph-api": 8090}


def service_of(process: str) -> str:
    """A process is named after its service, with `@n` for one of several replicas ("router@2")."""
    return process.split("@", 1)[0]


def free_port() -> int:
    """A free loopback port below the ephemeral range.

    The kernel gives outgoing connections ports from the ephemeral range; a port picked there
    (bind to 0) could be taken by a client's connection before the server it was picked for
    binds it (seen: a router failing with "address already in use" while migrations ran).
    """
    for _ in range(200):
        port = random.randint(LISTEN_PORTS_FROM, _ephemeral_ports_start() - 1)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port below the ephemeral range")


LISTEN_PORTS_FROM = 20_000


def _ephemeral_ports_start() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768  # Linux's default


def free_ports() -> dict[str, int]:
    """A free loopback port for every process a Stack may start."""
    return {name: free_port() for name in DEFAULT_PORTS}


@dataclass
class Tenant:
    """A tenant to seed: organization, one number, its default chatbot and flow."""

    organization_id: str
    organization_name: str
    slug: str
    number_id: str
    phone_number_id: str
    display_phone_number: str
    meta_app_id: str
    verify_token: str
    app_secret: str
    access_token: str
    chatbot_id: str
    chatbot_name: str
    flow_id: str
    flow_name: str
    flow: dict[str, Any]


@dataclass
class Stack:
    env: dict[str, str]
    log_dir: Path
    ports: dict[str, int]
    run_dir: Path | None = None
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"

    def _env(self) -> dict[str, str]:
        env = {**os.environ, **self.env}
        for service, key in PORT_ENV.items():
            env[key] = str(self.ports[service])
        env["GRAPH_API_BASE_URL"] = self.url("fake-graph-api")
        env["ROUTER_INTERNAL_URL"] = self.url("router")
        env["FLOW_ENGINE_INTERNAL_URL"] = self.url("flow-engine")
        return env

    def run_cli(self, module: str, *args: str, stdin: str | None = None) -> str:
        result = subprocess.run([sys.executable, "-m", module, *args], env=self._env(), input=stdin, text=True,
                                capture_output=True)
        if result.returncode != 0:
            raise RuntimeError(f"{module} {' '.join(args)} failed:\n{result.stderr[-3000:]}")
        return result.stdout

    def prepare(self, tenants: list[Tenant]) -> None:
        """Topics from the catalog, migrations of every schema, then the tenants."""
        asyncio.run(ensure_topics(CommonSettings.model_validate(self.env)))
        for module in ("pytake_router.main", "pytake_flow_engine.main", "pytake_sender.main", "pytake_gateway.main"):
            self.run_cli(module, "migrate")
        for tenant in tenants:
            self.seed(tenant)

    def seed(self, tenant: Tenant) -> None:
        # The router's seed-tenant CLI writes the chatbot without asking the flow engine whether its
        # flow exists (no flow engine need run yet): that is sound here because the same tenant's
        # flow is published right after, under the same organization.
        router_seed = {k: v for k, v in tenant.__dict__.items() if k not in {"flow", "flow_name"}}
        self.run_cli("pytake_router.main", "seed-tenant", stdin=json.dumps(router_seed))
        self.run_cli("pytake_flow_engine.main", "publish-flow", stdin=json.dumps({
            "organization_id": tenant.organization_id, "flow_id": tenant.flow_id, "name": tenant.flow_name,
            "definition": tenant.flow}))

    def start(self, services: list[str] | None = None) -> None:
        """Starts processes by name: a service's, or one of its replicas' ("router@2"). A replica has a
        port of its own and its name as PYTAKE_REPLICA_ID (a static consumer-group member)."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        wanted = services or ["fake-graph-api", *SERVICE_MODULES]
        for name in wanted:
            service = service_of(name)
            env = self._env()
            if name != service:
                self.ports.setdefault(name, free_port())
                env[PORT_ENV[service]] = str(self.ports[name])
                env["PYTAKE_REPLICA_ID"] = name.replace("@", "-")
            if name == "fake-graph-api":
                command = [sys.executable, "-m", "pytake_fake_graph.main", "--port", str(self.ports[name])]
            else:
                command = [sys.executable, "-m", SERVICE_MODULES[service], SERVICE_COMMANDS.get(service, "run")]
            log = open(self.log_dir / f"{name}.log", "ab")  # noqa: SIM115 - owned by the child
            self.processes[name] = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT,
                                                    start_new_session=True)
            if self.run_dir:
                self.run_dir.mkdir(parents=True, exist_ok=True)
                (self.run_dir / f"{name}.pid").write_text(str(self.processes[name].pid))
        for name in wanted:
            self.wait_healthy(name)

    def wait_healthy(self, name: str, timeout_s: float = 60.0) -> None:
        path = "/_fake/health" if name == "fake-graph-api" else "/api/v1/ready"
        deadline = time.monotonic() + timeout_s
        last = ""
        while time.monotonic() < deadline:
            process = self.processes.get(name)
            if process is not None and process.poll() is not None:
                raise RuntimeError(f"{name} exited with {process.returncode}; see {self.log_dir / (name + '.log')}")
            try:
                if httpx.get(self.url(name) + path, timeout=2.0).status_code == 200:
                    return
            except httpx.HTTPError as exc:
                last = repr(exc)
            time.sleep(0.2)
        raise TimeoutError(f"{name} not ready after {timeout_s}s ({last}); see {self.log_dir / (name + '.log')}")

    def stop(self, services: list[str] | None = None, timeout_s: float = 20.0) -> None:
        for name in services or list(self.processes):
            process = self.processes.pop(name, None)
            if process is None:
                continue
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout_s)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            if self.run_dir:
                (self.run_dir / f"{name}.pid").unlink(missing_ok=True)


def stop_pid_files(run_dir: Path, timeout_s: float = 20.0) -> list[str]:
    """Stop services started by an earlier command (the demo) from their PID files."""
    stopped = []
    for pid_file in sorted(run_dir.glob("*.pid")):
        try:
            pid = int(pid_file.read_text())
            os.kill(pid, signal.SIGTERM)
        except (ValueError, ProcessLookupError):
            pid_file.unlink(missing_ok=True)
            continue
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        else:
            os.kill(pid, signal.SIGKILL)
        pid_file.unlink(missing_ok=True)
        stopped.append(pid_file.stem)
    return stopped
