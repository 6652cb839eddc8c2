"""What the admin API's answers and requests look like (OpenAPI comes from these)."""

from __future__ import annotations

from datetime import date, datetime

from ninja import Field, Schema


class Problem(Schema):
    """Every refusal: what is wrong, in a sentence."""

    detail: str


class TokenOut(Schema):
    id: int
    name: str
    prefix: str = Field(description="The first characters of the token, to tell tokens apart.")
    state: str = Field(description="active, revoked or expired")
    created_at: datetime
    last_used_at: datetime | None
    expires_at: datetime | None
    allowed_cidrs: str = Field(description="Networks callers must come from; empty: anyone.")
    rate_limit: int | None = Field(
        description="Requests per minute per tunnel; null: the server's default; 0: none."
    )


class TokenIn(Schema):
    name: str = Field(min_length=1, max_length=100)
    expires_at: datetime | None = None
    allowed_cidrs: str = Field("", max_length=10_000)
    rate_limit: int | None = Field(None, ge=0, le=1_000_000)


class IssuedToken(TokenOut):
    token: str = Field(description="The token itself: shown this once, never stored.")


class UsageOut(Schema):
    token_id: int
    token_name: str
    day: date
    requests: int
    bytes_in: int
    bytes_out: int
    refusals: int


class ReservationOut(Schema):
    subdomain: str
    token_id: int
    token_name: str
    created_at: datetime


class ReservationIn(Schema):
    subdomain: str = Field(min_length=1, max_length=63)
    token_id: int | None = Field(None, description="The token's id; or give token_name.")
    token_name: str | None = Field(None, max_length=100)


class LiveTunnelOut(Schema):
    subdomain: str
    token_id: int
    token_name: str
    client: str = Field(description="The client's address (host:port) as the server saw it.")
    since: datetime = Field(description="When the tunnel opened.")
    requests: int = Field(description="As of the tunnel's last heartbeat, as are the bytes.")
    bytes_in: int
    bytes_out: int
    rules: list[str] = Field(description="The rules in force, by name; never a credential.")
    connections: int = Field(description="WebSockets serving the tunnel (--connections).")
    nodes: list[str] = Field(description="The server processes holding them (LUMINET_NODE).")
