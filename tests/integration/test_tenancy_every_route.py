"""Tenancy for every operation of every service, read from the services' own OpenAPI documents.

Organization B gets one resource of every kind through the real APIs and the running pipeline:
the organization and its users, a number (and so a Meta app), a flow with a published version,
a chatbot, and a conversation whose messages went gateway → router → flow engine → sender →
Graph API and were audited. Organization A gets the same, and an admin, an agent and a viewer.

Then, for every operation whose path takes a parameter, each of A's three users calls it with
B's values (bodies built from the operation's request schema, so a write reaches the ownership
check): the answer must be 403 or 404, exactly what it is for values that exist nowhere, and
must carry nothing of B's. Every GET without path parameters must show A's rows and none of B's,
also when filtered by B's identifiers. Afterwards B's admin reads all of it exactly as before.

The operations are read at run time, so a new endpoint is covered without a new test; one whose
path parameter `VALUES` (or `LOOKUPS`) does not know fails until org B's value is added there.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import uuid4

import httpx
import jsonschema_rs
import pytest

from pytake_devstack import meta_payloads
from pytake_devstack.stack import SERVICE_MODULES, Stack, free_port

from .tenancy_support import PLATFORM_EMAIL, new_phone_number_id, pipeline_router
from .waiting import eventually

pytestmark = pytest.mark.integration

ROLES = ("org_admin", "agent", "viewer")
# Every process the stack runs is a service whose OpenAPI document is read.
SERVICES = tuple(SERVICE_MODULES)
# These must publish a document with operations that take an id: without it the run proves nothing.
MUST_TAKE_IDS = ("router", "flow-engine", "audit", "gateway")
REFUSED = {403, 404}
METHODS = ("get", "put", "post", "patch", "delete")


# --- organizations ---------------------------------------------------------------------------


@dataclass
class Org:
    label: str
    token: str  # in every name of the organization's, so one marker catches any of them
    org_id: str = ""
    slug: str = ""
    tokens: dict[str, str] = field(default_factory=dict)  # role → access token (A's users only)
    users: dict[str, dict[str, Any]] = field(default_factory=dict)  # role → user
    number: dict[str, Any] = field(default_factory=dict)
    secrets: dict[str, str] = field(default_factory=dict)
    flow: dict[str, Any] = field(default_factory=dict)
    flow_version: int = 0
    chatbot: dict[str, Any] = field(default_factory=dict)
    wa_id: str = ""
    inbound_wamid: str = ""
    outbound_wamid: str = ""
    conversation_id: str = ""
    looked_up: dict[str, str] = field(default_factory=dict)  # LOOKUPS resolved at setup

    @property
    def admin(self) -> str:
        return self.tokens["org_admin"]

    def markers(self) -> set[str]:
        """Strings that only this organization's data contains."""
        found = {self.token, self.org_id, self.slug, self.number["id"], self.number["phone_number_id"],
                 self.number["display_phone_number"], self.number["meta_app_id"], self.flow["id"],
                 self.chatbot["id"], self.wa_id, self.inbound_wamid, self.outbound_wamid, self.conversation_id,
                 *self.looked_up.values()}
        for user in self.users.values():
            found |= {user["id"], user["email"]}
        return found


# Parameter name → an organization's value for it. A path parameter missing here fails the test
# (naming the operation), so every new endpoint is forced into coverage: add its value here, or,
# for a resource created along with another one, a lookup below.
VALUES: dict[str, Callable[[Org], Any]] = {
    "organization_id": lambda o: o.org_id,
    "user_id": lambda o: o.users["agent"]["id"],
    "number_id": lambda o: o.number["id"],
    "phone_number_id": lambda o: o.number["phone_number_id"],
    "meta_app_id": lambda o: o.number["meta_app_id"],  # Meta's id of the number's app
    "chatbot_id": lambda o: o.chatbot["id"],
    "flow_id": lambda o: o.flow["id"],
    "version": lambda o: o.flow_version,
    "conversation_id": lambda o: o.conversation_id,
    "wamid": lambda o: o.outbound_wamid,
    "contact_key": lambda o: f"p:{o.wa_id}",
    "contact": lambda o: o.wa_id,
    "wa_id": lambda o: o.wa_id,
    "email": lambda o: o.users["agent"]["email"],
    "slug": lambda o: o.slug,
    "name": lambda o: o.token,  # name filters are substring searches; every name holds the token
}


@dataclass(frozen=True)
class Lookup:
    """A value found in a list the organization's admin reads: the item whose `match` field
    equals the organization's `VALUES[match]`, e.g. PyTake's id of the number's Meta app."""

    service: str
    path: str
    match: str
    take: str = "id"


LOOKUPS: dict[str, Lookup] = {
    "app_id": Lookup("router", "/api/v1/meta-apps", match="meta_app_id"),
}


def value_of(org: Org, name: str) -> Any:
    if name in org.looked_up:
        return org.looked_up[name]
    return VALUES[name](org)


def knows(org: Org, name: str) -> bool:
    return name in org.looked_up or name in VALUES


class Ghost:
    """Values shaped like B's that exist nowhere: what A gets for B's must be what it gets for these."""

    def __init__(self, like: Org) -> None:
        self._like = like
        self._made: dict[str, Any] = {}

    def __call__(self, name: str) -> Any:
        if name not in self._made:
            self._made[name] = _ghost(value_of(self._like, name))
        return self._made[name]


def _ghost(real: Any) -> Any:
    if isinstance(real, int):
        return real  # a version: it is the flow id beside it that exists nowhere
    text = str(real)
    if re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", text):
        return str(uuid4())
    if text.isdigit():
        return "9" + "".join(secrets.choice("0123456789") for _ in range(len(text) - 1))
    if text.startswith("wamid."):
        return "wamid.ghost" + secrets.token_hex(12)
    if text.startswith("p:"):
        return "p:1999" + "".join(secrets.choice("0123456789") for _ in range(7))
    if "@" in text:
        return f"ghost-{secrets.token_hex(4)}@ghost.test"
    return "ghost" + secrets.token_hex(5)


# --- the documents ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Operation:
    service: str
    method: str
    path: str
    spec: dict[str, Any]
    doc: dict[str, Any]

    @property
    def name(self) -> str:
        return f"{self.service}: {self.method.upper()} {self.path}"

    @property
    def path_names(self) -> list[str]:
        return re.findall(r"\{([^}]+)\}", self.path)

    @property
    def takes_id(self) -> bool:
        return bool(self.path_names)

    def parameters(self, where: str) -> list[dict[str, Any]]:
        return [p for p in self.spec.get("parameters", []) if p.get("in") == where]

    def body_schema(self) -> dict[str, Any] | None:
        body = self.spec.get("requestBody")
        if not body:
            return None
        content = body.get("content", {})
        assert "application/json" in content, f"{self.name}: only JSON request bodies are built ({list(content)})"
        return content["application/json"].get("schema", {})

    def lists_rows(self) -> bool:
        """Its 200 answer is a list: an array, or an object with an `items` array."""
        ok = self.spec.get("responses", {}).get("200", {}).get("content", {}).get("application/json", {})
        schema = resolve(self.doc, ok.get("schema", {}))
        if schema.get("type") == "array":
            return True
        items = resolve(self.doc, schema.get("properties", {}).get("items", {}))
        return items.get("type") == "array"


def operations(service: str, doc: dict[str, Any]) -> list[Operation]:
    found = []
    for path, item in doc.get("paths", {}).items():
        shared = item.get("parameters", [])
        for method in METHODS:
            if method in item:
                spec = {**item[method], "parameters": [*shared, *item[method].get("parameters", [])]}
                found.append(Operation(service, method, path, spec, doc))
    return found


def resolve(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        node: Any = doc
        for part in schema["$ref"].removeprefix("#/").split("/"):
            node = node[part]
        schema = node
    return schema


# --- request bodies and parameters from the schemas -------------------------------------------


def generate(doc: dict[str, Any], schema: dict[str, Any], name: str, own: Org) -> Any:
    """A valid value for `schema`, with every optional property present (so a write that got
    through would change something). A uuid field the table knows gets A's own value: an
    attacker points B's resource at its own (A's flow, A's number)."""
    schema = resolve(doc, schema)
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return schema["enum"][0]
    for combined in ("anyOf", "oneOf"):
        if combined in schema:
            options = [s for s in schema[combined] if resolve(doc, s).get("type") != "null"]
            return generate(doc, options[0], name, own) if options else None
    if "allOf" in schema:
        return generate(doc, schema["allOf"][0], name, own)
    kind = schema.get("type", "object" if "properties" in schema else "string")
    if kind == "object":
        return {prop: generate(doc, sub, prop, own) for prop, sub in schema.get("properties", {}).items()}
    if kind == "array":
        count = max(1, schema.get("minItems", 1))
        return [generate(doc, schema.get("items", {}), name, own) for _ in range(count)]
    if kind == "boolean":
        return False  # deactivating is a change worth refusing
    if kind in ("integer", "number"):
        if "minimum" in schema:
            return int(schema["minimum"])
        if "exclusiveMinimum" in schema:
            return int(schema["exclusiveMinimum"]) + 1
        return 1
    if kind == "null":
        return None
    return _string(schema, name, own)


def _string(schema: dict[str, Any], name: str, own: Org) -> str:
    fmt = schema.get("format")
    if fmt == "uuid":
        return str(value_of(own, name)) if knows(own, name) else str(uuid4())
    if fmt == "date-time":
        return datetime.now(UTC).isoformat()
    probe = secrets.token_hex(4)
    candidates = [f"probe-{probe}", "9" + "".join(secrets.choice("0123456789") for _ in range(14)),
                  f"probe-{probe}@probe.test", f"Probe {probe}"]
    if fmt == "email":
        candidates.insert(0, candidates.pop(2))
    low, high = schema.get("minLength", 0), schema.get("maxLength", 10_000)
    pattern = schema.get("pattern")
    for candidate in candidates:
        candidate = candidate[:high]
        if len(candidate) >= low and (pattern is None or re.search(pattern, candidate)):
            return candidate
    raise AssertionError(f"no generated string fits {schema} (field {name}): extend _string")


def valid_body(op: Operation, own: Org) -> Any:
    schema = op.body_schema()
    if schema is None:
        return None
    body = generate(op.doc, schema, "body", own)
    validator = jsonschema_rs.Draft202012Validator({**schema, "components": op.doc.get("components", {})},
                                                   validate_formats=True)
    errors = [e.message for e in validator.iter_errors(body)]
    assert not errors, f"{op.name}: the generated body {body} is not valid: {errors}"
    return body


# --- requests ----------------------------------------------------------------------------------


@dataclass
class Prepared:
    op: Operation
    path: str
    params: dict[str, Any] = field(default_factory=dict)
    body: Any = None
    content: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def sent(self) -> list[str]:
        """Every string this request carried: an answer may echo them without leaking anything."""
        found: list[str] = []

        def walk(node: Any) -> None:
            if isinstance(node, dict):
                for item in node.values():
                    walk(item)
            elif isinstance(node, list):
                for item in node:
                    walk(item)
            elif node is not None:
                found.append(str(node))

        walk([self.params, self.body, self.path.split("/")])
        if self.content:
            walk(json.loads(self.content))
        return [s for s in found if len(s) >= 4]


class Http:
    def __init__(self, urls: dict[str, str]) -> None:
        self.clients = {service: httpx.AsyncClient(base_url=url, timeout=30.0) for service, url in urls.items()}
        self.count = 0

    async def call(self, service: str, method: str, path: str, token: str | None = None, **kwargs: Any
                   ) -> httpx.Response:
        headers = dict(kwargs.pop("headers", None) or {})
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self.count += 1
        return await self.clients[service].request(method, path, headers=headers, **kwargs)

    async def send(self, request: Prepared, token: str | None) -> httpx.Response:
        missing = [p["name"] for p in request.op.parameters("header")
                   if p.get("required") and p["name"] not in request.headers]
        assert not missing, f"{request.op.name}: no value for required headers {missing}: add a builder"
        extra: dict[str, Any] = {"params": request.params, "headers": request.headers}
        if request.content is not None:
            extra["content"] = request.content
        elif request.body is not None:
            extra["json"] = request.body
        return await self.call(request.op.service, request.op.method.upper(), request.path, token, **extra)

    async def close(self) -> None:
        for client in self.clients.values():
            await client.aclose()


def prepare(op: Operation, values: Callable[[str], Any], own: Org, window: dict[str, str], *,
            body: Any = None, filters: bool = False) -> Prepared:
    """The operation with its path parameters, its required query parameters (with `filters`, every
    query parameter the table knows) from `values`; what the table does not know from the schema."""
    path = op.path
    for name in op.path_names:
        path = path.replace("{" + name + "}", str(values(name)))
    params: dict[str, Any] = {}
    for parameter in op.parameters("query"):
        name = parameter["name"]
        schema = resolve(op.doc, parameter.get("schema", {}))
        if "date-time" in json.dumps(schema):
            params[name] = window["since" if "since" in name or "from" in name else "until"]
        elif (filters or parameter.get("required")) and knows(own, name):
            params[name] = values(name)
        elif parameter.get("required"):
            params[name] = generate(op.doc, schema, name, own)
    return Prepared(op, path, params, body)


# Public operations (the webhook): Meta authenticates with the app's verify token or signature,
# not with a user's token. A's users call them with A's own credentials on B's app.
WEBHOOK_APP_PATH = "/api/v1/webhooks/whatsapp/{meta_app_id}"


def _webhook_verify(request: Prepared, attacker: Org, target: Org) -> None:
    request.params.update({"hub.mode": "subscribe", "hub.verify_token": attacker.secrets["verify_token"],
                           "hub.challenge": "challenge-" + secrets.token_hex(6)})


def _webhook_post(request: Prepared, attacker: Org, target: Org) -> None:
    payload = meta_payloads.text_message(target.number["phone_number_id"], f"injected {secrets.token_hex(4)}",
                                         wa_id=target.wa_id)
    request.content = meta_payloads.encode(payload)
    request.headers.update({"Content-Type": "application/json",
                            "X-Hub-Signature-256": meta_payloads.sign(request.content, attacker.secrets["app_secret"])})


PUBLIC: dict[tuple[str, str], Callable[[Prepared, Org, Org], None]] = {
    ("get", WEBHOOK_APP_PATH): _webhook_verify,
    ("post", WEBHOOK_APP_PATH): _webhook_post,
}
PUBLIC_REFUSED = {401, 403, 404}  # 401 is the webhook's answer to a wrong signature


def normalized(response: httpx.Response, replacements: dict[str, str]) -> tuple[int, str]:
    text = response.text
    for value, placeholder in sorted(replacements.items(), key=lambda kv: -len(kv[0])):
        text = text.replace(value, placeholder)
    return response.status_code, text


def mentions(response: httpx.Response, markers: set[str], sent: list[str]) -> list[str]:
    """The markers in the answer, but for those the request itself carried."""
    text = response.text.lower()
    return sorted(m for m in markers - set(sent) if m and m.lower() in text)


def shown(response: httpx.Response) -> str:
    return f"{response.status_code} {response.text[:400]}"


# --- the world ---------------------------------------------------------------------------------


QUESTION = "Which order is it about, {token}?"


def question_flow(token: str) -> dict[str, Any]:
    return {"nodes": [{"id": "start", "type": "start", "next": "ask"},
                      {"id": "ask", "type": "question", "variable": "order", "text": QUESTION.format(token=token),
                       "next": "end"},
                      {"id": "end", "type": "end"}]}


@dataclass
class World:
    http: Http
    docs: dict[str, dict[str, Any] | None]
    a: Org
    b: Org
    ghost: Ghost
    window: dict[str, str]
    ledger: dict[str, dict[str, int]] = field(default_factory=dict)

    def operations(self, service: str) -> list[Operation]:
        doc = self.docs.get(service)
        return operations(service, doc) if doc else []

    async def read_as_b(self) -> dict[str, tuple[int, str]]:
        """Every GET that takes an id, as B's admin with B's values."""
        seen = {}
        for service in self.docs:
            for op in self.operations(service):
                if op.method == "get" and op.takes_id and (op.method, op.path) not in PUBLIC \
                        and all(knows(self.b, n) for n in op.path_names):
                    request = prepare(op, lambda n: value_of(self.b, n), self.b, self.window)
                    response = await self.http.send(request, self.b.admin)
                    seen[op.name] = (response.status_code, response.text)
        return seen


async def login(http: Http, email: str, password: str) -> str:
    """Once per user: the router throttles rapid logins from one address."""
    response = await http.call("router", "POST", "/api/v1/auth/login", json={"email": email, "password": password})
    assert response.status_code != 429, (f"login of {email}: the router's login throttle refused it (failed "
                                         f"logins from this address earlier in the run?): {shown(response)}")
    assert response.status_code == 200, f"login of {email}: {shown(response)}"
    return str(response.json()["access_token"])


def _digits(n: int) -> str:
    return "".join(secrets.choice("0123456789") for _ in range(n))


async def build_org(http: Http, platform: str, label: str, fake_graph: str) -> Org:
    """An organization with a user of every role, a number, a published flow, a default chatbot,
    and a customer conversation driven through the whole pipeline."""
    org = Org(label=label, token=f"{label.lower()}x{secrets.token_hex(5)}")
    org.slug = f"tenancy-{org.token}"
    email, password = f"admin-{org.token}@tenancy.test", secrets.token_urlsafe(12)
    created = await http.call("router", "POST", "/api/v1/organizations", platform, json={
        "name": f"Tenancy {org.token}", "slug": org.slug,
        "admin": {"email": email, "password": password, "name": f"Admin {org.token}"}})
    assert created.status_code == 201, shown(created)
    org.org_id = created.json()["id"]
    org.tokens["org_admin"] = await login(http, email, password)
    admins = await http.call("router", "GET", "/api/v1/users", org.admin, params={"role": "org_admin"})
    org.users["org_admin"] = admins.json()["items"][0]
    for role in ("agent", "viewer"):
        user_email, user_password = f"{role}-{org.token}@tenancy.test", secrets.token_urlsafe(12)
        user = await http.call("router", "POST", "/api/v1/users", org.admin, json={
            "email": user_email, "password": user_password, "role": role, "name": f"{role} {org.token}"})
        assert user.status_code == 201, shown(user)
        org.users[role] = user.json()
        if label == "A":
            org.tokens[role] = await login(http, user_email, user_password)

    org.secrets = {"verify_token": "vt-" + secrets.token_hex(12), "app_secret": "as-" + secrets.token_hex(12),
                   "access_token": "at-" + secrets.token_hex(12)}
    number = await http.call("router", "POST", "/api/v1/numbers", org.admin, json={
        "phone_number_id": new_phone_number_id(), "display_phone_number": f"+1 555 {_digits(3)} {_digits(4)}",
        "meta_app_id": "6" + _digits(13), **org.secrets})
    assert number.status_code == 201, shown(number)
    org.number = number.json()

    flow = await http.call("flow-engine", "POST", "/api/v1/flows", org.admin, json={
        "name": f"Flow {org.token}", "definition": question_flow(org.token)})
    assert flow.status_code == 201, shown(flow)
    org.flow = flow.json()
    published = await http.call("flow-engine", "POST", f"/api/v1/flows/{org.flow['id']}/publish", org.admin)
    assert published.status_code == 201, shown(published)
    org.flow_version = published.json()["version"]
    chatbot = await http.call("router", "POST", "/api/v1/chatbots", org.admin, json={
        "number_id": org.number["id"], "name": f"Bot {org.token}", "flow_id": org.flow["id"], "is_default": True})
    assert chatbot.status_code == 201, shown(chatbot)
    org.chatbot = chatbot.json()

    # A customer writes to the number through the webhook of its Meta app, signed with its secret.
    org.wa_id = "1555" + _digits(7)
    org.inbound_wamid = "wamid.in" + secrets.token_hex(12)
    body = meta_payloads.encode(meta_payloads.text_message(
        org.number["phone_number_id"], f"Hello from {org.token}", wa_id=org.wa_id, name=f"Customer {org.token}",
        wamid=org.inbound_wamid))
    signed = {"Content-Type": "application/json",
              "X-Hub-Signature-256": meta_payloads.sign(body, org.secrets["app_secret"])}
    posted = await http.call("gateway", "POST", f"/api/v1/webhooks/whatsapp/{org.number['meta_app_id']}",
                             content=body, headers=signed)
    assert posted.status_code == 200 and posted.json()["stored"] == 1, shown(posted)

    async with httpx.AsyncClient(base_url=fake_graph, timeout=40.0) as graph:
        async def replies() -> list[dict[str, Any]]:
            calls = (await graph.get("/_fake/calls", params={"phone_number_id": org.number["phone_number_id"],
                                                             "min_count": 1, "wait_s": 5})).json()
            return [c for c in calls if c["body"].get("to") == org.wa_id and c["status"] == 200]

        (reply,) = await eventually(replies, lambda found: len(found) == 1, timeout_s=60)
    assert reply["body"]["text"]["body"] == QUESTION.format(token=org.token)
    org.outbound_wamid = reply["response"]["messages"][0]["id"]

    async def conversations() -> list[dict[str, Any]]:
        found = await http.call("flow-engine", "GET", "/api/v1/conversations", org.admin,
                                params={"contact_key": f"p:{org.wa_id}"})
        return found.json() if found.status_code == 200 else []

    (conversation,) = await eventually(conversations, lambda c: len(c) == 1 and c[0]["status"] == "waiting")
    org.conversation_id = conversation["id"]

    # Everything of this conversation is audited before anyone looks (B's answers must not move).
    async def delivery() -> int:
        return (await http.call("audit", "GET", f"/api/v1/audit/messages/{org.outbound_wamid}/status",
                                org.admin)).status_code

    await eventually(delivery, lambda status: status == 200, timeout_s=60)

    async def timeline() -> set[str]:
        found = await http.call("audit", "GET", f"/api/v1/audit/conversations/{org.conversation_id}/timeline",
                                org.admin)
        return {e["event_type"] for e in found.json().get("entries", [])} if found.status_code == 200 else set()

    await eventually(timeline, lambda types: types >= {"message.inbound_routed", "conversation.started",
                                                        "message.outbound_requested", "message.sent"}, timeout_s=60)

    async def searchable() -> int:
        found = await http.call("audit", "GET", "/api/v1/audit/messages", org.admin, params={"contact": org.wa_id})
        return found.json().get("total", 0) if found.status_code == 200 else 0

    await eventually(searchable, lambda total: total >= 2, timeout_s=60)
    return org


async def look_up(http: Http, org: Org, docs: dict[str, dict[str, Any] | None]) -> None:
    for name, lookup in LOOKUPS.items():
        doc = docs.get(lookup.service) or {}
        if "get" not in doc.get("paths", {}).get(lookup.path, {}):
            continue  # no such list yet: an operation needing `name` then fails as unknown
        listed = await http.call(lookup.service, "GET", lookup.path, org.admin, params={"limit": 200})
        assert listed.status_code == 200, f"{lookup.path} as {org.label}'s admin: {shown(listed)}"
        body = listed.json()
        items = body["items"] if isinstance(body, dict) else body
        wanted = str(value_of(org, lookup.match))
        matching = [item for item in items if str(item.get(lookup.match)) == wanted]
        assert len(matching) == 1, f"{lookup.path}: no single item with {lookup.match}={wanted} for {org.label}"
        org.looked_up[name] = str(matching[0][lookup.take])


@pytest.fixture(scope="module")
async def world(pipeline, request) -> AsyncIterator[World]:
    # A gateway that checks webhooks against the registry (the pipeline's runs in demo mode, with
    # one secret for every app): the webhook's per-app operations then really belong to tenants.
    gateway = Stack(env={**pipeline.env, "GATEWAY_SECRETS_SOURCE": "registry"},
                    log_dir=Path(pipeline.log_dir) / f"tenancy-gateway-{secrets.token_hex(3)}",
                    ports={**pipeline.ports, "gateway": free_port()})
    starting = asyncio.create_task(asyncio.to_thread(gateway.start, ["gateway"]))
    urls = {service: pipeline.url(service) for service in SERVICES}
    urls["gateway"] = gateway.url("gateway")
    http = Http(urls)
    try:
        async with pipeline_router(pipeline) as router:
            platform = await login(http, PLATFORM_EMAIL, router.platform_password)
            await starting
            docs: dict[str, dict[str, Any] | None] = {}
            for service in SERVICES:
                answer = await http.call(service, "GET", "/api/v1/openapi.json")
                docs[service] = answer.json() if answer.status_code == 200 else None
            fake_graph = pipeline.url("fake-graph-api")
            a, b = await asyncio.gather(build_org(http, platform, "A", fake_graph),
                                        build_org(http, platform, "B", fake_graph))
            for org in (a, b):
                await look_up(http, org, docs)
            now = datetime.now(UTC)
            window = {"since": (now - timedelta(hours=1)).isoformat(), "until": (now + timedelta(hours=1)).isoformat()}
            world = World(http, docs, a, b, Ghost(b), window)
            yield world
            report(request, world)
    finally:
        if not starting.done():
            await asyncio.gather(starting, return_exceptions=True)
        await http.close()
        await asyncio.to_thread(gateway.stop)


def report(request: pytest.FixtureRequest, world: World) -> None:
    lines = ["", "tenancy of every route: operations checked × A's roles (admin, agent, viewer)"]
    for service, counts in world.ledger.items():
        lines.append(f"  {service:18} " + ", ".join(f"{k}={v}" for k, v in counts.items()))
    lines.append(f"  HTTP requests in this module: {world.http.count}")
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is None or capture is None:
        print("\n".join(lines))
        return
    with capture.global_and_fixture_disabled():  # shown even when output is captured
        for line in lines:
            reporter.write_line(line)


# --- the tests ---------------------------------------------------------------------------------


def document(world: World, service: str) -> dict[str, Any]:
    doc = world.docs.get(service)
    if doc is None:
        assert service not in MUST_TAKE_IDS, f"{service} serves no /api/v1/openapi.json"
        pytest.skip(f"{service} serves no OpenAPI document")
    return doc


@pytest.mark.parametrize("service", SERVICES)
async def test_every_operation_that_takes_an_id_refuses_another_organization(world: World, service: str) -> None:
    document(world, service)
    ops = [op for op in world.operations(service) if op.takes_id]
    if service in MUST_TAKE_IDS:
        assert ops, f"{service}'s document has no operation that takes an id: was it served in full?"
    unknown = [f"{op.name} {{{name}}}" for op in ops for name in op.path_names if not knows(world.b, name)]
    assert not unknown, ("path parameters with no value for org B (add them to VALUES or LOOKUPS in this "
                         "file): " + "; ".join(unknown))
    a, b, problems = world.a, world.b, []
    b_markers = b.markers()

    # Controls: B's values really name B's resources, so A's refusals are about tenancy.
    before = await world.read_as_b()
    for op in ops:
        if (op.method, op.path) in PUBLIC:
            if op.method == "get":
                request = prepare(op, lambda n: value_of(b, n), b, world.window)
                PUBLIC[(op.method, op.path)](request, b, b)
                own = await world.http.send(request, None)
                if own.status_code != 200 or own.text != request.params["hub.challenge"]:
                    problems.append(f"control: {op.name} with B's own credentials: {shown(own)}")
        # (The POST's control is the setup's: B's own signed webhook was accepted.)
        elif op.method == "get":
            status, text = before[op.name]
            if status != 200:
                problems.append(f"control: {op.name} as B's admin with B's values: {status} {text[:300]}")

    checked = ghosts = 0
    # Reads, then writes, deletes last: should one get through, the others still meet live resources.
    for op in sorted(ops, key=lambda o: (["get", "put", "patch", "post", "delete"].index(o.method), o.path)):
        public = PUBLIC.get((op.method, op.path))
        body = valid_body(op, a) if public is None else None
        for role in ROLES:
            attack = prepare(op, lambda n: value_of(b, n), a, world.window, body=body)
            if public:
                public(attack, a, b)
            response = await world.http.send(attack, a.tokens[role])
            checked += 1
            where = f"{op.name} as A's {role} on B's values"
            if response.status_code == 401 and public is None:
                problems.append(f"{where}: 401 — A's token was refused, the test itself is broken")
            elif response.status_code not in (PUBLIC_REFUSED if public else REFUSED):
                problems.append(f"{where}: expected 403/404, got {shown(response)}")
            if found := mentions(response, b_markers, attack.sent()):
                problems.append(f"{where}: the answer contains B's {found}: {shown(response)}")
            if public:
                continue  # a Meta app's existence is no tenant's secret: 404 vs 403 is by design
            # B's ids must be indistinguishable from ids that exist nowhere.
            ghost = prepare(op, world.ghost, a, world.window, body=body)
            other = await world.http.send(ghost, a.tokens[role])
            ghosts += 1
            names = {str(value_of(b, n)): f"<{n}>" for n in op.path_names if not isinstance(value_of(b, n), int)}
            names |= {str(world.ghost(n)): f"<{n}>" for n in op.path_names if not isinstance(world.ghost(n), int)}
            if normalized(response, names) != normalized(other, names):
                problems.append(f"{where}: answers {shown(response)} but for ids that exist nowhere "
                                f"{shown(other)}: B's resource can be told to exist")

    # Nothing was changed: B's admin reads everything (of every service) exactly as before.
    after = await world.read_as_b()
    for name, (status, text) in before.items():
        if after[name] != (status, text):
            problems.append(f"B's data changed by {service}'s operations: {name} answered {status} {text[:300]} "
                            f"before, now {after[name][0]} {after[name][1][:300]}")

    world.ledger.setdefault(service, {}).update({"id_operations": len(ops), "id_checks": checked,
                                                 "ghost_checks": ghosts})
    print(f"{service}: {len(ops)} operations taking an id × {len(ROLES)} roles = {checked} checks")
    assert checked >= len(ops) * len(ROLES)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("service", SERVICES)
async def test_lists_and_searches_show_only_the_callers_rows(world: World, service: str) -> None:
    document(world, service)
    ops = [op for op in world.operations(service) if op.method == "get" and not op.takes_id]
    a, b, problems = world.a, world.b, []
    a_markers, b_markers = a.markers(), b.markers()
    checked = filtered = 0
    for op in ops:
        plain = prepare(op, lambda n: value_of(a, n), a, world.window)
        for role in ROLES:
            response = await world.http.send(plain, a.tokens[role])
            checked += 1
            where = f"{op.name} as A's {role}"
            if response.status_code >= 500 or response.status_code == 401:
                problems.append(f"{where}: {shown(response)}")
            if found := mentions(response, b_markers, plain.sent()):
                problems.append(f"{where}: shows B's {found}: {shown(response)}")
            if response.is_success and op.lists_rows() and not mentions(response, a_markers, plain.sent()):
                problems.append(f"{where}: a list without any of A's own rows (so it proves nothing): "
                                f"{shown(response)}")

        # Filtered by B's identifiers, A must get what it gets for identifiers that exist nowhere.
        if not any(knows(b, p["name"]) for p in op.parameters("query")):
            continue
        by_b = prepare(op, lambda n: value_of(b, n), a, world.window, filters=True)
        by_ghost = prepare(op, world.ghost, a, world.window, filters=True)
        names = {str(v): f"<{k}>" for k, v in by_b.params.items() if len(str(v)) >= 4 and k not in world.window}
        names |= {str(v): f"<{k}>" for k, v in by_ghost.params.items() if len(str(v)) >= 4 and k not in world.window}
        own, none = await world.http.send(by_b, b.admin), await world.http.send(by_ghost, b.admin)
        if own.is_success and normalized(own, names) == normalized(none, names):
            problems.append(f"control: {op.name} filtered by B's {by_b.params} finds nothing for B's admin either")
        for role in ROLES:
            response = await world.http.send(by_b, a.tokens[role])
            other = await world.http.send(by_ghost, a.tokens[role])
            filtered += 1
            where = f"{op.name} as A's {role} filtered by B's {sorted(by_b.params)}"
            if response.status_code >= 500 or response.status_code == 401:
                problems.append(f"{where}: {shown(response)}")
            if found := mentions(response, b_markers, by_b.sent()):
                problems.append(f"{where}: shows B's {found}: {shown(response)}")
            if normalized(response, names) != normalized(other, names):
                problems.append(f"{where}: answers {shown(response)}, but {shown(other)} for values that "
                                f"exist nowhere")

    world.ledger.setdefault(service, {}).update({"list_operations": len(ops), "list_checks": checked,
                                                 "filtered_checks": filtered})
    print(f"{service}: {len(ops)} GET operations without an id × {len(ROLES)} roles = {checked} checks, "
          f"{filtered} filtered by B's values")
    assert checked >= len(ops) * len(ROLES)
    assert not problems, "\n".join(problems)
