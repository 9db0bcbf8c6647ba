from __future__ import annotations

from ..settings import GatewaySettings


class DemoSecretSource:
    """App secret and verify token from settings: the local demo and tests only."""

    def __init__(self, settings: GatewaySettings) -> None:
        self._secret = settings.demo_app_secret
        self._token = settings.demo_verify_token

    async def app_secrets(self) -> list[str]:
        return [self._secret.get_secret_value()] if self._secret else []

    async def verify_tokens(self) -> list[str]:
        return [self._token.get_secret_value()] if self._token else []
