"""libs/contracts stands alone: an analytics team installs it (and a Kafka client) in a
clean virtual environment and reads PyTake's topics with the example consumer."""

from __future__ import annotations

import secrets
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from pytake_contracts.topics import MESSAGES_ROUTED
from pytake_devstack import meta_payloads
from pytake_devstack.demo_tenant import DEMO_TENANT
from pytake_devstack.paths import REPO_ROOT

from .waiting import eventually

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def contracts_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    venv = tmp_path_factory.mktemp("analytics") / "venv"
    uv = shutil.which("uv")
    package = f"{REPO_ROOT / 'libs' / 'contracts'}[kafka]"
    if uv:
        subprocess.run([uv, "venv", "--quiet", "--python", sys.executable, str(venv)], check=True)
        subprocess.run([uv, "pip", "install", "--quiet", "--python", str(venv / "bin" / "python"), package],
                       check=True)
    else:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", package], check=True)
    return venv / "bin" / "python"


def test_contracts_install_alone_in_a_clean_environment(contracts_python: Path) -> None:
    probe = ("import importlib.util, pytake_contracts as c; "
             "print(len(c.Event.registry)); "
             "print(*[m for m in ('faststream', 'sqlalchemy', 'fastapi', 'pytake_plumbing') "
             "if importlib.util.find_spec(m)])")
    out = subprocess.run([str(contracts_python), "-c", probe], check=True, capture_output=True, text=True).stdout
    count, others = (out.splitlines() + [""])[:2]
    assert int(count) >= 15
    assert others == "", f"the contracts pulled in service dependencies: {others}"


async def test_example_consumer_reads_the_pipelines_events(contracts_python: Path, pipeline, settings) -> None:
    wa_id = "1555" + "".join(secrets.choice("0123456789") for _ in range(7))
    body = meta_payloads.encode(meta_payloads.text_message(DEMO_TENANT.phone_number_id, "Hi", wa_id=wa_id))
    async with httpx.AsyncClient() as client:
        response = await client.post(f"{pipeline.url('gateway')}/api/v1/webhooks/whatsapp", content=body, headers={
            "Content-Type": "application/json",
            "X-Hub-Signature-256": meta_payloads.sign(body, DEMO_TENANT.app_secret)})
    assert response.status_code == 200

    def read() -> str:
        return subprocess.run(
            [str(contracts_python), "-m", "pytake_contracts.example_consumer",
             "--bootstrap", settings.kafka_bootstrap_servers, "--topic", settings.topic(MESSAGES_ROUTED),
             "--from-beginning", "--idle-timeout", "3"],
            check=True, capture_output=True, text=True, timeout=120).stdout

    async def routed_lines() -> list[str]:
        return [line for line in read().splitlines() if "message.inbound_routed v1" in line]

    lines = await eventually(routed_lines, lambda found: len(found) >= 1, timeout_s=60, interval_s=1)
    assert any("InboundMessageRouted" in line and f"org={DEMO_TENANT.organization_id}" in line for line in lines)
