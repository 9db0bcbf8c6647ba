from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(os.environ.get("PYTAKE_ROOT", Path(__file__).resolve().parents[4]))
STATE_DIR = Path(os.environ.get("PYTAKE_STATE_DIR", REPO_ROOT / ".local"))
SERVERS_SCRIPT = REPO_ROOT / "scripts" / "servers.sh"
