"""Extra gateway processes for the gateway's integration tests (replicas, forwarders, own Kafka, registry mode)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from pytake_devstack.stack import free_port


@dataclass
class GatewayProcess:
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self, timeout_s: float = 30.0) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_gateway(env: dict[str, str], log_dir: Path, name: str, timeout_s: float = 90.0) -> GatewayProcess:
    """A `pytake-gateway run` process (the front door) with `env` on top of ours; returns once it is ready."""
    return _start("run", "GATEWAY_HTTP_PORT", env, log_dir, name, timeout_s)


def start_forwarder(env: dict[str, str], log_dir: Path, name: str, timeout_s: float = 90.0) -> GatewayProcess:
    """A `pytake-gateway forward` process (intake topic -> dedup -> inbound topic); returns once it is ready.

    Ready means Kafka is reachable: it may still be joining its consumer group.
    """
    return _start("forward", "GATEWAY_FORWARDER_HTTP_PORT", env, log_dir, name, timeout_s)


def _start(command: str, port_env: str, env: dict[str, str], log_dir: Path, name: str,
           timeout_s: float) -> GatewayProcess:
    log_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log_path = log_dir / f"{name}.log"
    full_env = {**os.environ, **env, port_env: str(port)}
    with open(log_path, "ab") as log:
        process = subprocess.Popen([sys.executable, "-m", "pytake_gateway.main", command], env=full_env, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    gateway = GatewayProcess(process, port, log_path)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode}; see {log_path}")
        try:
            if httpx.get(gateway.url + "/api/v1/ready", timeout=2.0).status_code == 200:
                return gateway
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    gateway.stop()
    raise TimeoutError(f"{name} not ready after {timeout_s}s; see {log_path}")
