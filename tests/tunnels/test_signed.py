"""Holding a signed request's body at the edge until its signature checks out."""

import asyncio
import hashlib
import hmac

from tunnels.edge.budget import BudgetLimits, MemoryBudget
from tunnels.edge.signed import HeldBody, hold_signed_body
from tunnels.edge.webhooks import Refusal, parse_spec

SECRET = "hold-secret"
HOST = b"hooks.localhost"


def body_message(data: bytes, more: bool) -> dict:
    return {"type": "http.request", "body": data, "more_body": more}


class Caller:
    """The public side, scripted: what it sends, and what it got back."""

    def __init__(self, *messages: dict) -> None:
        self.queue = list(messages)
        self.received = 0
        self.sent: list[dict] = []

    async def receive(self) -> dict:
        self.received += 1
        return self.queue.pop(0)

    async def send(self, message: dict) -> None:
        self.sent.append(message)

    @property
    def answer(self) -> tuple[int, dict[bytes, bytes], bytes]:
        start, body = self.sent
        return start["status"], {k.lower(): v for k, v in start["headers"]}, body["body"]


def scope(signature: str, budget: MemoryBudget | None = None) -> dict:
    headers = [(b"host", HOST), (b"x-hub-signature-256", signature.encode())]
    result = {"type": "http", "headers": headers}
    if budget is not None:
        result["luminet.budget"] = budget
    return result


def github_signature(body: bytes) -> str:
    return "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()


def hold(caller: Caller, request_scope: dict):
    specs = [parse_spec(f"github:{SECRET}")]
    return asyncio.run(hold_signed_body(specs, request_scope, caller.receive, caller.send))


def test_a_passing_body_is_replayed_as_it_came_then_the_disconnect():
    parts = [body_message(b"ab", True), body_message(b"", True), body_message(b"cd", False)]
    disconnect = {"type": "http.disconnect"}
    caller = Caller(*parts, disconnect)
    held = hold(caller, scope(github_signature(b"abcd")))
    assert isinstance(held, HeldBody) and caller.sent == []

    async def replay():
        return [await held.receive() for _ in range(4)]

    assert asyncio.run(replay()) == [*parts, disconnect]


def test_a_bad_signature_is_answered_and_nothing_goes_on():
    caller = Caller(body_message(b"abcd", False))
    refused = hold(caller, scope(github_signature(b"abce")))
    assert isinstance(refused, Refusal) and refused.code == "webhook-signature"
    status, headers, page = caller.answer
    assert (status, headers[b"luminet-error"]) == (403, b"webhook-signature")
    assert b"signature does not match" in page


def test_a_missing_signature_is_answered_before_the_body_is_read():
    caller = Caller(body_message(b"abcd", False))
    request_scope = scope("")
    request_scope["headers"] = request_scope["headers"][:1]
    refused = hold(caller, request_scope)
    assert isinstance(refused, Refusal) and "X-Hub-Signature-256" in refused.reason
    assert caller.received == 0
    status, headers, page = caller.answer
    assert (status, headers[b"luminet-error"]) == (403, b"webhook-signature")
    assert b"missing X-Hub-Signature-256" in page


def test_a_caller_leaving_mid_body_gets_no_answer():
    caller = Caller(body_message(b"ab", True), {"type": "http.disconnect"})
    assert hold(caller, scope(github_signature(b"abcd"))) is None
    assert caller.sent == []


def test_held_bytes_count_against_the_memory_budget_until_read_or_closed():
    budget = MemoryBudget(BudgetLimits(total=0, per_tunnel=0))
    caller = Caller(body_message(b"ab", True), body_message(b"cd", False))
    held = hold(caller, scope(github_signature(b"abcd"), budget))
    assert isinstance(held, HeldBody) and budget.total == 4
    asyncio.run(held.receive())
    assert budget.total == 2
    held.close()
    assert budget.total == 0


def test_past_the_memory_budget_a_signed_request_is_turned_away():
    budget = MemoryBudget(BudgetLimits(total=0, per_tunnel=3))
    caller = Caller(body_message(b"ab", True), body_message(b"cd", False))
    assert hold(caller, scope(github_signature(b"abcd"), budget)) is None
    status, headers, _ = caller.answer
    assert (status, headers[b"luminet-error"]) == (503, b"tunnel-busy")
    assert budget.total == 0
