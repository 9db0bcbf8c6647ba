"""The chaos run's short variant: two replicas of every service under steady load, one fault of each
kind (a replica SIGKILLed, Kafka SIGKILLed, PostgreSQL and the MongoDB server stopped, the Graph API
failing, an undecodable record on every consumed topic), every webhook delivered three times to two
gateways. Nothing may be lost, answered twice or out of order, and every poison record is dead-lettered.

It kills and restarts the local servers, so it runs last (see conftest.py), and it needs servers this
machine runs through scripts/servers.sh. Its recovery times are printed, not asserted: they are
benchmark figures (README, benchmarks/chaos.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pytake_devstack.servers import Servers

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.integration, pytest.mark.chaos, pytest.mark.timeout(900)]


def test_one_fault_of_each_kind_loses_and_repeats_nothing(servers: Servers, tmp_path: Path) -> None:
    if servers.cleanups or any(os.environ.get(key) for key in servers.env):
        pytest.skip("the servers are not this machine's scripts/servers.sh ones: chaos cannot kill them")
    out = tmp_path / "chaos.json"
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "chaos.py"), "--short", "--json", str(out)],
                         capture_output=True, text=True, timeout=840)
    print(run.stdout[-6000:])
    assert out.exists(), run.stderr[-4000:]
    summary = json.loads(out.read_text())
    assert summary["accepted"] > 0
    assert summary["lost"] == 0, summary
    assert summary["duplicates"] == 0, summary
    assert summary["order_violations"] == 0, summary
    assert summary["unexpected"] == 0, summary
    assert summary["poison_missing"] == [], summary["poison_dead_lettered"]
    assert all(letter["reason"].startswith("undecodable") for letter in summary["dead_letters"]), \
        summary["dead_letters"]
    recovered = {fault["fault"]: fault["recovery_s"] for fault in summary["faults"] if "undecodable" not in fault["fault"]}
    assert all(value is not None for value in recovered.values()), recovered
