"""Meta Graph API client: POST /{version}/{phone_number_id}/messages."""

from __future__ import annotations

from typing import Any

import httpx

from pytake_contracts import ContactRef

from ..domain.meta_errors import MetaApiError


class GraphApiClient:
    def __init__(self, base_url: str, version: str, timeout_s: float) -> None:
        self._client = httpx.AsyncClient(base_url=base_url.rstrip("/"), timeout=timeout_s)
        self._version = version

    async def send_text(self, phone_number_id: str, access_token: str, to: ContactRef, body: str) -> str:
        message: dict[str, Any] = {
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "type": "text",
            "text": {"body": body, "preview_url": False},
        }
        # A contact known only by its business-scoped id is addressed with it.
        if to.wa_id:
            message["to"] = to.wa_id
        else:
            message["recipient"] = to.user_id
        try:
            response = await self._client.post(
                f"/{self._version}/{phone_number_id}/messages",
                json=message,
                headers={"Authorization": f"Bearer {access_token}"},
            )
        except httpx.TransportError as exc:
            raise MetaApiError(http_status=503, code=None, message=f"transport: {type(exc).__name__}") from exc
        if response.status_code >= 400:
            try:
                error = response.json().get("error", {})
            except ValueError:
                error = {}
            raise MetaApiError(response.status_code, error.get("code"), str(error.get("message", response.text[:200])))
        return str(response.json()["messages"][0]["id"])

    async def close(self) -> None:
        await self._client.aclose()
