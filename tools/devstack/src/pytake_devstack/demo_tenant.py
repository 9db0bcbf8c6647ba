"""The demo tenant: one organization, one number, one chatbot and its flow."""

from __future__ import annotations

from .stack import Tenant

DEMO_FLOW = {
    "nodes": [
        {"id": "start", "type": "start", "next": "ask_name"},
        {"id": "ask_name", "type": "question", "variable": "name",
         "text": "Hi! I'm the PyTake demo bot. What's your name?", "next": "greet"},
        {"id": "greet", "type": "message", "text": "Nice to meet you, {{name}}! Your message went through all five "
                                                    "PyTake services.", "next": "end"},
        {"id": "end", "type": "end"},
    ]
}

DEMO_TENANT = Tenant(
    organization_id="0a7d1c36-5f0e-4d4c-9a53-5a0c2f6f0001",
    organization_name="Demo Bakery",
    slug="demo-bakery",
    number_id="0a7d1c36-5f0e-4d4c-9a53-5a0c2f6f0002",
    phone_number_id="100000000000001",
    display_phone_number="+1 555 0100",
    meta_app_id="900000000000001",
    verify_token="demo-verify-token",
    app_secret="demo-app-secret",
    access_token="demo-access-token",
    chatbot_id="0a7d1c36-5f0e-4d4c-9a53-5a0c2f6f0003",
    chatbot_name="Greeter",
    flow_id="0a7d1c36-5f0e-4d4c-9a53-5a0c2f6f0004",
    flow_name="Ask the name",
    flow=DEMO_FLOW,
)
