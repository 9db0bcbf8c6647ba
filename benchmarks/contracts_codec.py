"""Encode and decode rates of a typical event (envelope + routed inbound text message).

    uv run python benchmarks/contracts_codec.py [--seconds 3]
"""

from __future__ import annotations

import argparse
import time
from uuid import uuid4

from pytake_contracts import InboundMessageRouted, decode_event, encode_event


def typical_event() -> InboundMessageRouted:
    org = uuid4()
    return InboundMessageRouted(
        correlation_id=str(uuid4()), causation_id=str(uuid4()), producer="router", organization_id=org,
        traceparent="00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        payload={
            "phone_number_id": "106540352242922", "display_phone_number": "15550100",
            "contact": {"wa_id": "15551234567", "user_id": "US.13491208655302741918", "profile_name": "Ada"},
            "message": {"wamid": "wamid.HBgLMTU1NTEyMzQ1NjcVAgASGBQzQTk5", "type": "text", "timestamp": 1764000000,
                        "text": "I'd like to order two croissants for tomorrow morning, please.",
                        "raw": {"from": "15551234567", "id": "wamid.HBgLMTU1NTEyMzQ1NjcVAgASGBQzQTk5",
                                "timestamp": "1764000000", "type": "text",
                                "text": {"body": "I'd like to order two croissants for tomorrow morning, please."}}},
            "route": {"organization_id": str(org), "chatbot_id": str(uuid4()), "flow_id": str(uuid4())},
        },
    )


def rate(fn, seconds: float) -> float:
    count, start = 0, time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        for _ in range(500):
            fn()
        count += 500
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=3.0)
    seconds = parser.parse_args().seconds
    event = typical_event()
    raw = encode_event(event)
    assert decode_event(raw) == event
    encode = rate(lambda: encode_event(event), seconds)
    decode = rate(lambda: decode_event(raw), seconds)
    print(f"event size: {len(raw)} bytes ({type(event).__name__})")
    print(f"encode: {encode:,.0f} events/s")
    print(f"decode: {decode:,.0f} events/s")


if __name__ == "__main__":
    main()
