"""Requests, responses and the route table of the inspector's server. No I/O.

``server`` turns each HTTP request into a :class:`Request`, asks the
:class:`Router` for a :class:`Response` and writes it. Handlers raise
:class:`ApiError` for every expected failure; the router answers it in
ngrok's error shape, and anything else as a 500 (logged: it is our bug).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from . import agent
from .agent import ErrorCode

logger = logging.getLogger(__name__)

#: One encoder for every document: compact, as ngrok's (scripts grep the raw body).
_ENCODER = json.JSONEncoder(separators=(",", ":"))


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    #: Header names lower-cased; a repeated header keeps its first value.
    headers: dict[str, str]
    body: bytes = b""

    def param(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None

    def json(self) -> dict[str, Any]:
        """The body as a JSON object; an empty body is an empty object."""
        if not self.body.strip():
            return {}
        try:
            data = json.loads(self.body)
        except ValueError as exc:
            raise ApiError(
                400, ErrorCode.BAD_REQUEST, "the body is not valid JSON", str(exc)
            ) from exc
        if not isinstance(data, dict):
            raise ApiError(400, ErrorCode.BAD_REQUEST, "the body must be a JSON object")
        return data


@dataclass(frozen=True)
class Response:
    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    headers: list[tuple[str, str]] = field(default_factory=list)
    #: A stream of chunks written as they come, instead of ``body`` (Server-Sent Events).
    stream: Iterator[bytes] | None = None

    @classmethod
    def json(cls, document: Any, status: int = 200) -> Response:
        return cls(status, _ENCODER.encode(document).encode("utf-8"))


class ApiError(Exception):
    """An answer in ngrok's error shape: ``{"error_code","status_code","msg","details"}``."""

    def __init__(self, status: int, code: int, msg: str, err: str = "") -> None:
        super().__init__(msg)
        self.status, self.code, self.msg, self.err = status, code, msg, err

    def response(self) -> Response:
        return Response.json(agent.error(self.status, self.code, self.msg, self.err), self.status)


Handler = Callable[..., Response]


class Router:
    """Routes by method and path pattern; a pattern's groups are the handler's arguments."""

    def __init__(self) -> None:
        self._routes: list[tuple[str, re.Pattern[str], Handler]] = []

    def add(self, method: str, pattern: str, handler: Handler) -> None:
        self._routes.append((method, re.compile(pattern), handler))

    def handle(self, request: Request) -> Response:
        try:
            return self._dispatch(request)
        except ApiError as exc:
            return exc.response()
        except Exception:
            logger.exception("inspector: bug while answering %s %s", request.method, request.path)
            error = ApiError(500, ErrorCode.INTERNAL, "internal error")
            return error.response()

    def _dispatch(self, request: Request) -> Response:
        allowed = []
        for method, pattern, handler in self._routes:
            match = pattern.fullmatch(request.path)
            if match is None:
                continue
            if method == request.method or (method == "GET" and request.method == "HEAD"):
                return handler(request, *match.groups())
            allowed.append(method)
        if allowed:
            raise ApiError(
                405,
                ErrorCode.METHOD_NOT_ALLOWED,
                f"{request.method} is not allowed on {request.path}",
                f"allowed: {', '.join(sorted(set(allowed)))}",
            )
        raise ApiError(404, ErrorCode.NOT_FOUND, f"{request.path} not found")
