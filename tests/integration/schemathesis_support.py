"""Schemathesis (the `st` CLI) against a running service's OpenAPI schema, as the router's suite runs it:
every check, a fixed seed, a few examples per operation."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from uuid import UUID, uuid4

from pytake_plumbing.auth import AuthSettings, Principal, Role, issue_access_token

ST = str(Path(sys.executable).parent / "st")
SEED = "20261129"


def token_for(stack, organization_id: UUID | None = None, role: Role = Role.ORG_ADMIN) -> str:
    """An access token the running services accept (they share the stack's JWT secret)."""
    auth = AuthSettings.model_validate({"JWT_SECRET": stack.env["JWT_SECRET"]})
    return issue_access_token(Principal(user_id=uuid4(), organization_id=organization_id or uuid4(), role=role), auth)


def schemathesis(url: str, token: str, workdir: Path, *options: str, max_examples: int = 12,
                 config: str = "") -> subprocess.CompletedProcess[str]:
    """`config`: the run's schemathesis.toml (per-operation settings), written to `workdir`, where `st` looks."""
    (workdir / "schemathesis.toml").write_text(config)
    return subprocess.run(
        [ST, "run", f"{url}/api/v1/openapi.json", "--checks", "all", "--max-examples", str(max_examples),
         "--seed", SEED, "--workers", "1", "--request-timeout", "30", "-H", f"Authorization: Bearer {token}",
         *options],
        cwd=workdir, capture_output=True, text=True, timeout=900)
